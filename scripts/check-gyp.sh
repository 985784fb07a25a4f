#!/usr/bin/env bash
# Builds the addon with node-gyp from binding.gyp (the path @electron/rebuild and source installs
# take) into a scratch copy, and checks that it loads and runs the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r package.json binding.gyp cpp scripts "$stage/"
ln -s "$PWD/node_modules" "$stage/node_modules"
(cd "$stage" && npx --no-install node-gyp rebuild --nodedir=/usr -j 2 >/dev/null)
EASYROUTINE_ADDON="$stage/build/Release/easyroutine.node" node -e "
  const er = require('./dist');
  const out = er.loadModel('models/tiny-gpt.pt').forward(er.tensor([[1, 2, 3]], { dtype: 'int64' }));
  console.log('node-gyp build: forward ->', out.shape.join('x'));
"
