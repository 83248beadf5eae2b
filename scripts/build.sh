#!/usr/bin/env bash
# Builds everything: the native CLI, the wasm engine (pkg/), and the static app in dist/
# (www/ + pkg/ + the built-in model + demo prompts).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
log() { echo "[build] $*" >&2; }

log "native CLI (target dir $CARGO_TARGET_DIR)"
cargo build --release --locked --bin kto

log "wasm engine (target dir $WASM_TARGET_DIR)"
# 128-bit SIMD (every browser with WebGPU has it): burn-flex's gemm matmuls and elementwise kernels
# use it, ~2x on the CPU backend. Set here, not in .cargo/config.toml, so native builds keep theirs.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128"
if [ -f "$CACHE/.debian-wasm" ]; then
  # Debian's rust-web toolchain: std is built from source for wasm32.
  PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-22/bin/wasm-ld CARGO_TARGET_DIR="$WASM_TARGET_DIR" \
    /usr/bin/cargo build --release --locked --lib --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
else
  CARGO_TARGET_DIR="$WASM_TARGET_DIR" cargo build --release --locked --lib --target wasm32-unknown-unknown
fi
rm -rf pkg
wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir pkg \
  "$WASM_TARGET_DIR/wasm32-unknown-unknown/release/kto_studio.wasm"
# The static-constructor trap (notes): every export must not be wrapped in a ctor-running stub.
if [ "$(strings pkg/kto_studio_bg.wasm | grep -c command_export || true)" != "0" ]; then
  echo "pkg/kto_studio_bg.wasm still wraps exports in command_export stubs (static constructors re-run per call)" >&2
  exit 1
fi

log "assembling dist/"
rm -rf dist
mkdir -p dist/models/stories260K dist/data
cp -r www/. dist/
cp -r pkg dist/pkg
cp "$MODEL_DIR/stories260K.bin" "$MODEL_DIR/tok512.bin" dist/models/stories260K/
[ -f "$MODEL_DIR/LICENSE" ] && cp "$MODEL_DIR/LICENSE" dist/models/stories260K/
"$CARGO_TARGET_DIR/release/kto" prompts --stories "$DATA_FILE" > dist/data/prompts.json
# The sentiment judge's lexicon (AFINN-165 + emoji + negators) from the npm package `sentiment`.
mkdir -p dist/data/sentiment
cp node_modules/sentiment/languages/en/labels.json node_modules/sentiment/languages/en/negators.json \
   node_modules/sentiment/build/emoji.json node_modules/sentiment/LICENSE.md dist/data/sentiment/
log "done: dist/ ($(du -sh dist | cut -f1))"
