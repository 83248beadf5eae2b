#!/usr/bin/env bash
# The whole test suite from a fresh machine: set-up, build (native + wasm + dist/), the engine
# tests (CPU + wgpu/Vulkan) and the end-to-end tests in headless Chromium (WebGPU + CPU fallback).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build.sh"
cd "$ROOT"
echo "[test] engine tests: cargo test --release" >&2
cargo test --release --locked
echo "[test] browser tests: node --test tests/browser/*.test.mjs (screenshots in test-output/)" >&2
node --test tests/browser/heldout.test.mjs tests/browser/app.test.mjs tests/browser/demo.test.mjs tests/browser/robustness.test.mjs tests/browser/hub.test.mjs
