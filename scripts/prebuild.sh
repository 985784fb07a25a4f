#!/usr/bin/env bash
# Builds the prebuilt binary for the libtorch that scripts/libtorch.js finds (LIBTORCH, a Python's
# torch, or Debian's) and puts it where lib/core/addon-loader.ts looks for it:
#   prebuilds/<platform>-<arch>/easyroutine.torch-<major.minor>-<cpu|cuda>.node
#   prebuilds/<platform>-<arch>/easyroutine_preload.node   (the same for every libtorch)
# The name carries the libtorch, which prebuildify's tags (Node-API version, libc) cannot, so this
# copies the cmake-js build itself, stripped.
set -euo pipefail
cd "$(dirname "$0")/.."
info=$(node scripts/libtorch.js --json)
version=$(node -e "const i = JSON.parse(process.argv[1]); console.log(i.version.split('.').slice(0, 2).join('.'))" "$info")
variant=$(node -e "console.log(JSON.parse(process.argv[1]).cuda ? 'cuda' : 'cpu')" "$info")
[ "$version" != unknown ] || { echo "prebuild: the libtorch version is unknown; see node scripts/libtorch.js --report" >&2; exit 1; }
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
npx --no-install cmake-js compile ${EASYROUTINE_BUILD_DIR:+--out "$EASYROUTINE_BUILD_DIR"} >/dev/null
build=${EASYROUTINE_BUILD_DIR:-build}/Release
out="prebuilds/$(node -p 'process.platform + "-" + process.arch')"
mkdir -p "$out"
name="easyroutine.torch-$version-$variant.node"
cp "$build/easyroutine.node" "$out/$name"
cp "$build/easyroutine_preload.node" "$out/easyroutine_preload.node"
strip --strip-unneeded "$out/$name" "$out/easyroutine_preload.node"
echo "$out/$name"
