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

# wasm_engine OUT TARGET_DIR TOOLCHAIN RUSTFLAGS [cargo args...]: one wasm build of the engine,
# bound into OUT/. TOOLCHAIN "debian": Debian's rust-web toolchain, std built from source for
# wasm32 (-Zbuild-std); "rustup": rustup's prebuilt wasm32 std.
wasm_engine() {
  local out=$1 dir=$2 toolchain=$3 flags=$4; shift 4
  log "wasm engine -> $out/ ($toolchain toolchain, target dir $dir)"
  if [ "$toolchain" = debian ]; then
    PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$flags" \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-22/bin/wasm-ld CARGO_TARGET_DIR="$dir" \
      /usr/bin/cargo build --release --locked --lib --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort "$@"
  else
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" \
      cargo build --release --locked --lib --target wasm32-unknown-unknown "$@"
  fi
  rm -rf "$out"
  wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir "$out" \
    "$dir/wasm32-unknown-unknown/release/kto_studio.wasm"
  # The static-constructor trap (notes): every export must not be wrapped in a ctor-running stub.
  if [ "$(strings "$out/kto_studio_bg.wasm" | grep -c command_export || true)" != "0" ]; then
    echo "$out/kto_studio_bg.wasm still wraps exports in command_export stubs (static constructors re-run per call)" >&2
    exit 1
  fi
}
# 128-bit SIMD (every browser with WebGPU has it): burn-flex's gemm matmuls and elementwise kernels
# use it, ~2x on the CPU backend. Set per build, not in .cargo/config.toml, so native builds keep theirs.
wasm_engine pkg "$WASM_TARGET_DIR" "$([ -f "$CACHE/.debian-wasm" ] && echo debian || echo rustup)" "-C target-feature=+simd128"
# The threaded build (the CPU backend of cross-origin isolated pages; no WebGPU, see Cargo.toml):
# std with atomics, and a memory each thread imports, shared, up to wasm32's 4 GiB (SmolLM2
# training needs more than 1 GiB), with the thread-local-storage symbols wasm-bindgen sets up per
# thread (rustc 1.96 passes none of these linker flags by itself). Only a std built from source
# has atomics: always Debian's toolchain (rustup's here have no rust-src).
link="--shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base"
wasm_engine pkg-threads "$WASM_THREADS_TARGET_DIR" debian \
  "-C target-feature=+simd128,+atomics,+bulk-memory $(printf -- ' -C link-arg=%s' $link)" --no-default-features --features threads,relaxed-simd

log "assembling dist/"
rm -rf dist
mkdir -p dist/models/stories260K dist/data
cp -r www/. dist/
cp -r pkg dist/pkg
cp -r pkg-threads dist/pkg-threads
cp "$MODEL_DIR/stories260K.bin" "$MODEL_DIR/tok512.bin" dist/models/stories260K/
[ -f "$MODEL_DIR/LICENSE" ] && cp "$MODEL_DIR/LICENSE" dist/models/stories260K/
"$CARGO_TARGET_DIR/release/kto" prompts --stories "$DATA_FILE" > dist/data/prompts.json
# The sentiment judge's lexicon (AFINN-165 + emoji + negators) from the npm package `sentiment`.
mkdir -p dist/data/sentiment
cp node_modules/sentiment/languages/en/labels.json node_modules/sentiment/languages/en/negators.json \
   node_modules/sentiment/build/emoji.json node_modules/sentiment/LICENSE.md dist/data/sentiment/
log "done: dist/ ($(du -sh dist | cut -f1))"
