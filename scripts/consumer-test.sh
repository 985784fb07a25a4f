#!/usr/bin/env bash
# The package as a user gets it: `npm pack` of this checkout, with the prebuild for the libtorch found
# here, installed into a fresh folder with install scripts refused (--strict-allow-scripts: the
# package has none and compiles nothing), then an ESM, a CommonJS and a tsc-compiled TypeScript
# script run there, and the README's own TypeScript examples, compiled by tsc and run; a libtorch
# that matches no binary gives the typed
# error; arethetypeswrong checks the types for import and require. Prints the tarball's size and the
# time from npm install to the first forward.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
npm run build:ts --silent
bash scripts/prebuild.sh >/dev/null
tarball="$repo/$(npm pack --silent | tail -1)"
echo "tarball: $(basename "$tarball"), $(du -k "$tarball" | cut -f1) KiB: $(tar -tzf "$tarball" | grep -c .) files, prebuilds: $(tar -tzf "$tarball" | grep 'prebuilds/.*\.node' | xargs -n1 basename | tr '\n' ' ')"
# the types are right for both import and require (arethetypeswrong)
npx --yes @arethetypeswrong/cli@0.18 --format ascii "$tarball" | grep -q "No problems found" || { npx --yes @arethetypeswrong/cli@0.18 "$tarball"; exit 1; }
echo "types: arethetypeswrong finds no problems"
consumer=$(mktemp -d)
trap 'rm -rf "$consumer" "$tarball"' EXIT
cp models/tiny-gpt.pt models/induction-2l.pt "$consumer/"
cd "$consumer"
npm init -y >/dev/null
npm pkg set type=commonjs >/dev/null
start=$(date +%s.%N)
npm install --no-audit --no-fund --strict-allow-scripts "$tarball" >/dev/null
[ ! -d node_modules/easyroutine/build ] || { echo "consumer: npm install compiled something (build/ exists)" >&2; exit 1; }
cat > cjs.js <<'JS'
const { loadModel, tensor, runtimeInfo } = require('easyroutine');
const model = loadModel('tiny-gpt.pt');
const seen = [];
const logits = model.forward(tensor([[1, 2, 3]], { dtype: 'int64' }), { hooks: { 'transformer.h.0:output': (v) => void seen.push(v.shape.join('x')) } });
console.log(`cjs: forward ${logits.shape.join('x')}, hook saw ${seen}, binary ${require('path').basename(runtimeInfo().binary)}, libtorch ${runtimeInfo().libtorch.version} (${runtimeInfo().libtorch.source})`);
JS
node cjs.js
# the command that builds from source resolves its cmake-js from the installed package
build_help=$(npx --no-install easyroutine build --help)
grep -q "cmake-js compile" <<<"$build_help" || { echo "consumer: npx easyroutine build does not reach cmake-js" >&2; exit 1; }
echo "time from npm install to the first forward: $(node -e "console.log((Date.now() / 1000 - $start).toFixed(1))") s (the first load probes the binary in a child process and caches it)"
cat > esm.mjs <<'JS'
import { HookedModel, describeArchitecture } from 'easyroutine';
const model = HookedModel.load('tiny-gpt.pt');
const cache = await model.forwardAsync([[3, 14, 15, 9, 26]], { targetTokenPositions: ['last'], extractionConfig: { extractResidOut: true, extractAttnPattern: true } });
console.log(`esm: ${describeArchitecture(model.architecture).split('\n')[1]}; resid_out_1 ${cache.tensor('resid_out_1').shape.join('x')}, ${[...cache.keys()].filter((k) => k.startsWith('pattern_')).length} patterns`);
JS
node esm.mjs
npm install --no-audit --no-fund --strict-allow-scripts typescript@5.9 @types/node@20 >/dev/null
cat > main.ts <<'TS'
import { loadModel, tensor, type Tensor, type HookContext } from 'easyroutine';
const model = loadModel('tiny-gpt.pt');
const norms: number[] = [];
const out = model.forward(tensor([[1, 2, 3]], { dtype: 'int64' }), {
  hooks: { 'transformer.h.1:output': (value: Tensor, context: HookContext) => void norms.push(context.layer ?? -1) },
}) as Tensor;
console.log(`ts: forward ${out.shape.join('x')}, hook at layer ${norms}`);
TS
# the README's own TypeScript examples, as they stand in the installed package (ES modules: they await)
mkdir -p models && cp tiny-gpt.pt induction-2l.pt models/
cat > extract.cjs <<'JS'
const fs = require('fs');
const text = fs.readFileSync('node_modules/easyroutine/README.md', 'utf8');
const blocks = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
if (blocks.length < 3) throw new Error(`expected the README's TypeScript examples, found ${blocks.length}`);
blocks.forEach((code, i) => fs.writeFileSync(`readme-${i + 1}.mts`, code));
console.log(`README: ${blocks.length} TypeScript examples`);
JS
node extract.cjs
cat > tsconfig.json <<'JSON'
{ "compilerOptions": { "target": "ES2022", "module": "nodenext", "moduleResolution": "nodenext", "strict": true, "lib": ["ES2022", "ESNext.Disposable"], "types": ["node"], "outDir": "out" }, "include": ["main.ts", "readme-*.mts"] }
JSON
npx tsc -p tsconfig.json
node out/main.js
for example in out/readme-*.mjs; do node "$example" >/dev/null; echo "ran $(basename "$example" .mjs) from the README"; done
# a libtorch this package has no binary for: a typed error, and the process lives on
fake=$(mktemp -d)
mkdir -p "$fake/lib" "$fake/include/torch/headeronly"
printf '#define TORCH_VERSION_MAJOR 9\n#define TORCH_VERSION_MINOR 9\n#define TORCH_VERSION_PATCH 0\n' > "$fake/include/torch/headeronly/version.h"
libdir=$(node -e "console.log(require('easyroutine').runtimeInfo().libtorch.libDir)")
for lib in libc10.so libtorch_cpu.so libtorch.so; do ln -s "$(readlink -f "$libdir/$lib")" "$fake/lib/$lib"; done
LIBTORCH=$fake node -e "
  try { require('easyroutine'); console.error('consumer: loaded against libtorch 9.9'); process.exit(1); }
  catch (e) {
    if (e.name !== 'AddonLoadError' || e.code !== 'ERR_EASYROUTINE_ADDON_LOAD' || !/libtorch 9\.9\.0/.test(e.message) || !/npx easyroutine build/.test(e.message)) { console.error(e); process.exit(1); }
    console.log('mismatch: ' + e.name + ' (' + e.code + '): ' + e.message.split('\n')[0]);
  }"
rm -rf "$fake"
