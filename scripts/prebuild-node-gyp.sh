#!/usr/bin/env bash
# prebuildify runs "node-gyp rebuild ..." and takes the .node it finds in build/Release. cmake-js is
# our primary build and writes to the same place, so this stands in for node-gyp (its arguments,
# which name Node's version and headers, do not apply to a Node-API build).
set -euo pipefail
cd "$(dirname "$0")/.."
exec npx --no-install cmake-js compile
