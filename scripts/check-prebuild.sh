#!/usr/bin/env bash
# Builds the prebuild with prebuildify and checks that the package loads from it alone: a copy of
# the package without build/ (as npm installs it) loads the addon from prebuilds/ and runs a model.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf prebuilds/linux-x64
npm run prebuild --silent >/dev/null
ls prebuilds/linux-x64/easyroutine.napi*.node >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/node_modules/easyroutine"
cp -r package.json dist prebuilds "$stage/node_modules/easyroutine/"
cp -r node_modules/node-gyp-build "$stage/node_modules/"
cp models/tiny-gpt.pt "$stage/"
(cd "$stage" && node -e "
  const er = require('easyroutine');
  const m = er.loadModel('tiny-gpt.pt');
  const out = m.forward(er.tensor([[1, 2, 3]], { dtype: 'int64' }));
  const file = require.resolve('easyroutine/package.json').replace('package.json', '');
  if (require('fs').existsSync(file + 'build')) throw new Error('build/ must not be there');
  console.log('prebuild loaded from', require('path').join(require('path').relative(process.cwd(), file), 'prebuilds'), '-> forward', out.shape.join('x'));
")
