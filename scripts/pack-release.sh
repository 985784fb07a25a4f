#!/usr/bin/env bash
# Makes, from a clean clone, every tarball a release publishes, so that anyone can reproduce one:
# a single package (easyroutine-<version>.tgz) carrying one small prebuild per libtorch variant.
# libtorch is never shipped: users have pip's torch, LIBTORCH or Debian's, and the package picks the
# binary built for it (lib/core/addon-loader.ts). Variants (EASYROUTINE_RELEASE_VARIANTS to choose):
#   system      Debian's libtorch-dev (1.13 on Debian 12), when installed here
#   2.13-cpu    pip's torch 2.13.0+cpu
#   2.14-cuda   pip's torch 2.14.1 with CUDA 13 (installed --no-deps with its nvidia-* wheels: its
#               cuda-bindings dependency serves Python only); builds as C++20, loads without a GPU
# A pip variant whose torch is not importable by a venv under release/venvs is installed there.
# Each variant builds into release/build-<variant>; the tarball lands in release/.
set -euo pipefail
cd "$(dirname "$0")/.."
variants=${EASYROUTINE_RELEASE_VARIANTS:-system 2.13-cpu 2.14-cuda}
mkdir -p release/venvs
pip_flags=(--quiet --retries 0 --disable-pip-version-check)
CUDA_WHEELS=(nvidia-cublas nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-curand nvidia-cusolver nvidia-cusparse
  nvidia-cusparselt-cu13 nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx nvidia-cufile nvidia-cuda-nvrtc
  nvidia-cuda-cupti filelock typing-extensions sympy networkx jinja2 fsspec numpy)

venv_for() {  # variant -> a Python with that torch
  local variant=$1 venv="release/venvs/$1"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    case "$variant" in
      2.13-cpu) "$venv/bin/pip" install "${pip_flags[@]}" torch==2.13.0+cpu numpy >&2 ;;
      2.14-cuda) "$venv/bin/pip" install "${pip_flags[@]}" "${CUDA_WHEELS[@]}" >&2
                 "$venv/bin/pip" install "${pip_flags[@]}" --no-deps torch==2.14.1 >&2 ;;
      *) echo "pack-release: unknown variant '$variant'" >&2; exit 2 ;;
    esac
  fi
  echo "$PWD/$venv/bin/python"
}

[ -d node_modules ] || npm ci --no-audit --no-fund --ignore-scripts
rm -rf prebuilds/*-*/
for variant in $variants; do
  echo "== prebuild: $variant"
  if [ "$variant" = system ]; then
    if ! ls /usr/lib/*/libtorch_cpu.so.* >/dev/null 2>&1; then echo "   no Debian libtorch here: skipped"; continue; fi
    PYTHON=/nonexistent EASYROUTINE_BUILD_DIR="release/build-$variant" bash scripts/prebuild.sh
  else
    python=$(venv_for "$variant")
    LIBTORCH_USE_PYTORCH=1 PYTHON="$python" EASYROUTINE_BUILD_DIR="release/build-$variant" bash scripts/prebuild.sh
  fi
done
npm run build:ts --silent
tarball=$(npm pack --silent --pack-destination release | tail -1)
echo "== release/$tarball ($(du -k "release/$tarball" | cut -f1) KiB)"
tar -tzf "release/$tarball" | grep 'prebuilds/.*\.node' | sed 's/^/   /'
