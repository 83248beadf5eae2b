#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, native build, engine tests (CPU + wgpu).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
echo "[test] engine tests (cargo test --release; target dir $CARGO_TARGET_DIR)" >&2
cargo test --release --locked
