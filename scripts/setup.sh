#!/usr/bin/env bash
# Sets up easyroutine on Debian/Ubuntu: system packages (build tools; Debian's libtorch, OpenBLAS and
# Python's torch for fixtures when no libtorch is found), npm dependencies, the native addon, the
# TypeScript build and the test fixtures. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make python3)
# libtorch: LIBTORCH, or a Python's torch (pip's, in the active environment), else Debian's
# libtorch-dev with OpenBLAS (without it matmuls take the reference BLAS, 10x slower) and
# python3-torch for the fixtures
if [ -z "${LIBTORCH:-}" ] && ! node scripts/libtorch.js --json >/dev/null 2>&1; then
  packages+=(libtorch-dev libopenblas0-pthread python3-torch)
fi
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "easyroutine: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "easyroutine: missing system packages. Run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "or point LIBTORCH at a libtorch directory (see README)." >&2
    exit 1
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # --ignore-scripts: npm would otherwise run node-gyp for binding.gyp; the cmake-js build below is ours
  npm ci --no-audit --no-fund --ignore-scripts
fi
# every core (make, unlike ninja, builds one file at a time otherwise)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
if [ ! -f build/Release/easyroutine.node ] || [ -n "$(find cpp CMakeLists.txt scripts/libtorch.js -newer build/Release/easyroutine.node -print -quit)" ]; then
  npm run build:native
fi
npm run build:ts --silent
npm run fixtures --silent
