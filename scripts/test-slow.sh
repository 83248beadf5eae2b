#!/usr/bin/env bash
# The slow suite: SmolLM2-135M-Instruct in headless Chromium on WebGPU (SwiftShader on a CPU-only
# machine: ~10-20 min), and the k-quant rewrite of it natively (scripts/make_kquant_smollm2.sh). Not part of scripts/test.sh; run it before changing model loading, LoRA or
# the page's training path.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
cd "$ROOT"
KTO_SMOLLM2_KQUANT=$("$ROOT/scripts/make_kquant_smollm2.sh") cargo test --release --locked -- --ignored kquant
node --test --test-concurrency=1 tests/browser/smollm2.test.mjs
