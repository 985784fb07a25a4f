#!/usr/bin/env bash
# The CUDA check, prepared for a GPU machine that has PyTorch with CUDA, g++ and cmake but no Node and
# no registry. Here, first:   bash scripts/gpu-check.sh --pack
#   (Node and its headers into .gpu/ by ../shared/tools/gpu/pack.sh, plus the build's npm packages
#   and the TypeScript build, all git-ignored; under the 64 MiB the working tree may carry)
# There, from the project root, with .gpu carried:   bash scripts/gpu-check.sh
#   builds the CUDA variant against the wheel's libtorch (C++20 from torch 2.14), checks that it
#   loads and sees the device, runs the hook, extraction and intervention checks on device 'cuda'
#   against the CPU, and the GPU figures (scripts/gpu-check.mjs); the report goes to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --pack ]; then
  bash ../shared/tools/gpu/pack.sh >/dev/null
  npm run build:ts --silent
  # cmake-js with its dependencies, and node-addon-api: what the build needs
  packages=$(npm ls --omit=dev --all --parseable 2>/dev/null | grep node_modules | sed "s|^$PWD/||")
  tar -cf .gpu/node_modules.tar $packages
  tar -cf .gpu/dist.tar dist
  du -sh .gpu
  exit 0
fi
bash .gpu/unpack.sh && export PATH=/tmp/node/bin:$PATH
tar -xf .gpu/node_modules.tar
tar -xf .gpu/dist.tar
out=${OUT:-/tmp}
python=$(command -v python3)
LIBTORCH_USE_PYTORCH=1 PYTHON=$python node scripts/libtorch.js --report | tee "$out/gpu-check.txt"
LIBTORCH_USE_PYTORCH=1 PYTHON=$python CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) node node_modules/cmake-js/bin/cmake-js compile --out build-gpu >"$out/gpu-build.log" 2>&1 ||
  { tail -30 "$out/gpu-build.log"; exit 1; }
EASYROUTINE_ADDON=build-gpu/Release/easyroutine.node node scripts/gpu-check.mjs cuda | tee -a "$out/gpu-check.txt"
