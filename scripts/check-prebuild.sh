#!/usr/bin/env bash
# Builds the prebuild (scripts/prebuild.sh) and checks that the package loads from it alone: a copy
# of the package without build/ (as npm installs it) chooses the binary named for this libtorch from
# prebuilds/, preloads the libtorch, and runs a model.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf prebuilds/*-*/
binary=$(bash scripts/prebuild.sh)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/node_modules/easyroutine"
cp -r package.json dist prebuilds "$stage/node_modules/easyroutine/"
mkdir -p "$stage/node_modules/easyroutine/scripts" && cp scripts/libtorch.js "$stage/node_modules/easyroutine/scripts/"
cp models/tiny-gpt.pt "$stage/"
(cd "$stage" && EASYROUTINE_CACHE_DIR="$stage/cache" node -e "
  const er = require('easyroutine');
  const m = er.loadModel('tiny-gpt.pt');
  const out = m.forward(er.tensor([[1, 2, 3]], { dtype: 'int64' }));
  const file = require.resolve('easyroutine/package.json').replace('package.json', '');
  if (require('fs').existsSync(file + 'build')) throw new Error('build/ must not be there');
  const chosen = require('path').relative(process.cwd(), er.runtimeInfo().binary);
  if (!chosen.endsWith('$(basename "$binary")')) throw new Error('chose ' + chosen);
  console.log('prebuild loaded:', chosen, 'for libtorch', er.runtimeInfo().libtorch.version, '-> forward', out.shape.join('x'));
")
