"""Golden values for GGUF dequantization: random blocks of every type the engine reads (any bytes
are a valid block) dequantized by llama.cpp's `gguf` Python package. Writes
tests/golden/kquants.json ({type: {id, blocks_hex, values}}; NaN/inf from random f16 scales are
written as strings) and the same blocks as one GGUF file written by `gguf`'s writer,
tests/golden/gguf/kquant_types.gguf (tensor `test.<type>`, 6 blocks in one row; also a fuzz seed).

    /root/refenv/bin/python tests/reference/kquants.py
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(__file__), "..", "golden", "kquants.json")
GGUF_OUT = os.path.join(os.path.dirname(__file__), "..", "golden", "gguf", "kquant_types.gguf")
TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
rng = np.random.default_rng(20261127)


def f16_scale(rng):
    """A finite, moderate f16 scale (random bytes are valid too; a few blocks keep them raw)."""
    return np.frombuffer(np.float16(rng.uniform(-0.1, 0.1)).tobytes(), dtype=np.uint8)


def number(x):
    return float(x) if np.isfinite(x) else str(x)


golden = {}
writer = GGUFWriter(GGUF_OUT, arch="llama")
writer.add_name("kto-studio k-quant fixture")
for t in TYPES:
    block_len, block_bytes = GGML_QUANT_SIZES[t]
    blocks = []
    for i in range(6):
        b = rng.integers(0, 256, size=block_bytes, dtype=np.uint8)
        if i < 4:
            # Most blocks get sane f16 scales where the format has them (d, dmin / m), so the
            # values are the ones real files hold; the last two keep raw random bytes.
            name = t.name
            for off in {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
                        "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[name]:
                b[off:off + 2] = f16_scale(rng)
        blocks.append(b)
    data = np.concatenate(blocks)
    values = dequantize(data, t).astype(np.float32).reshape(-1)
    golden[t.name] = {"id": int(t.value), "blocks_hex": data.tobytes().hex(), "values": [number(v) for v in values]}
    assert len(values) == 6 * block_len
    writer.add_tensor(f"test.{t.name}", data.reshape(1, -1), raw_shape=(1, data.size), raw_dtype=t)

writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()

with open(OUT, "w") as f:
    json.dump(golden, f)
print("wrote", OUT, {k: len(v["values"]) for k, v in golden.items()})
