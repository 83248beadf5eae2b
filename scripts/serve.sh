#!/usr/bin/env bash
# Builds everything, then serves the app with the built-in model on http://127.0.0.1:${PORT:-8080}/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$ROOT/scripts/build.sh"
exec node "$ROOT/scripts/serve.mjs" "$ROOT/dist" "${PORT:-8080}"
