#!/usr/bin/env bash
# Generates the test fixtures into test/fixtures/generated with the local Python torch, unless
# they are already there for this torch version.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(node scripts/libtorch.js --python)
out=test/fixtures/generated
version=$("$python" -c 'import torch; print(torch.__version__)')
if [ -f "$out/STAMP" ] && [ "$(cat "$out/STAMP")" = "$version" ] && [ "$out/STAMP" -nt scripts/make_fixtures.py ] && [ "$out/STAMP" -nt scripts/reference_models.py ]; then
  exit 0
fi
echo "easyroutine: generating test fixtures with torch $version ($python)"
rm -rf "$out"
"$python" scripts/make_fixtures.py "$out"
