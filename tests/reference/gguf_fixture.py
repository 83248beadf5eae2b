"""A small GGUF fixture written by llama.cpp's own Python package (`gguf`), with a tensor of each
type the engine dequantizes (F32, F16, Q8_0, Q4_0, Q4_1) and the values `gguf` dequantizes them to.
tests/engine/gguf.rs checks the engine's reader against them.

Run (needs `pip install gguf numpy`):  python tests/reference/gguf_fixture.py
"""

import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "gguf")
TYPES = {"f32": T.F32, "f16": T.F16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1}


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    path = os.path.join(OUT, "quant_types.gguf")
    w = GGUFWriter(path, arch="llama")
    w.add_name("kto-studio quantization fixture")
    golden = {}
    for name, ty in TYPES.items():
        x = (rng.standard_normal((3, 64)) * np.array([[0.1], [1.0], [7.5]])).astype(np.float32)
        x[0, :5] = [0.0, -0.0, 1e-3, -2.5, 3.25]
        if ty == T.F32:
            w.add_tensor(f"test.{name}", x)
        elif ty == T.F16:
            w.add_tensor(f"test.{name}", x.astype(np.float16))
        else:
            q = quantize(x, ty)
            w.add_tensor(f"test.{name}", q, raw_shape=q.shape, raw_dtype=ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    # Read back with gguf's reader and dequantize with gguf's reference code.
    for t in GGUFReader(path).tensors:
        ty = T(t.tensor_type)
        vals = dequantize(t.data, ty).reshape(-1).astype(np.float32)
        golden[t.name] = {"type": ty.name, "shape": [int(d) for d in reversed(t.shape)], "values": vals.tolist()}
    with open(os.path.join(OUT, "quant_types.json"), "w") as f:
        json.dump(golden, f)
    print("wrote", path, {k: v["type"] for k, v in golden.items()})


if __name__ == "__main__":
    main()
