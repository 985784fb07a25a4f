// The README's main job, for now: load the bundled model, list its modules, run it on a sample
// input and summarise the output. (The induction-head study replaces this in a later release.)
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, runtimeInfo, tensor } from '../dist/index.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const file = path.join(root, 'models', 'tiny-gpt.pt');
const info = runtimeInfo();
console.log(`libtorch ${info.libtorchVersion} (${info.cudaAvailable ? 'CUDA available' : 'CPU'})`);

const model = loadModel(file);
console.log(`\nmodel ${path.relative(root, file)}: ${model.signature}`);
console.log('modules:');
for (const m of model.modules()) {
  const params = m.parameters.map((p) => `${p.name}[${p.shape.join('x')}]`).join(' ');
  console.log(`  ${(m.path || '(root)').padEnd(28)} ${m.type.padEnd(28)} ${params}`);
}

const tokens = [[3, 14, 15, 9, 26, 53, 5, 8]];
const input = tensor(tokens, { dtype: 'int64' });
const started = performance.now();
const logits = model.forward(input);
const elapsed = performance.now() - started;

const values = logits.toFloat32Array();
const [batch, seq, vocab] = logits.shape;
let sum = 0;
let min = Infinity;
let max = -Infinity;
for (const v of values) {
  sum += v;
  min = Math.min(min, v);
  max = Math.max(max, v);
}
console.log(`\ninput tokens ${JSON.stringify(tokens[0])}`);
console.log(`output: ${logits} in ${elapsed.toFixed(2)} ms; mean ${(sum / values.length).toFixed(4)}, min ${min.toFixed(4)}, max ${max.toFixed(4)}`);
const last = values.subarray((seq - 1) * vocab, seq * vocab);
const top = Array.from(last, (v, i) => [i, v]).sort((a, b) => b[1] - a[1]).slice(0, 5);
console.log(`top next tokens after position ${seq - 1}: ${top.map(([i, v]) => `${i} (${v.toFixed(3)})`).join(', ')}`);
void batch;
for (const handle of [logits, input, model]) handle.dispose();
