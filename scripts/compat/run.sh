#!/usr/bin/env bash
# npm run compat [-- TYPE ...]: the compatibility sweep (scripts/compat/sweep.py, with the Python
# whose torch the addon uses, or EASYROUTINE_PYTHON) and its check through the engine and HookedModel
# (scripts/compat/check.mjs), which writes docs/compat.md and the README's table. COMPAT_OUT (default
# build/compat) keeps the exports; naming model types sweeps only those and leaves the docs alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${EASYROUTINE_PYTHON:-$(node scripts/libtorch.js --python)}
out=${COMPAT_OUT:-build/compat}
rm -rf "$out"
"$python" scripts/compat/sweep.py "$out" --jobs "$(nproc)" "$@"
if [ "$#" -gt 0 ]; then
  node scripts/compat/check.mjs "$out" --table none --readme none
else
  node scripts/compat/check.mjs "$out"
fi
