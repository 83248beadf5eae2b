# Shared paths for the project's scripts (sourced, not run).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KTO_CACHE:-$HOME/.cache/kto-studio}"
# One cargo target dir per target, outside the clone, so repeated runs (and CI) build incrementally.
export CARGO_TARGET_DIR="$CACHE/target-native"
WASM_TARGET_DIR="$CACHE/target-wasm"
WASM_THREADS_TARGET_DIR="$CACHE/target-wasm-threads"
export PATH="$HOME/.cargo/bin:$PATH"
WASM_BINDGEN_VERSION=0.2.130
# The built-in model: ../shared beside the checkout, else the copy setup.sh downloaded.
if [ -f "$ROOT/../shared/models/stories260K/stories260K.bin" ]; then
  MODEL_DIR="$ROOT/../shared/models/stories260K"
else
  MODEL_DIR="$CACHE/models/stories260K"
fi
DATA_FILE="$ROOT/../shared/data/tinystories_validation_100.txt"
export KTO_MODEL_DIR="$MODEL_DIR"
