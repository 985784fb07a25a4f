// npm run bench: side-by-side figures, medians after warm-up, printed as a table and written to
// bench/results.json. For now: the cost of `Tensor.data` against tensor size, and a bare forward.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, runtimeInfo, tensor } from '../dist/index.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Median nanoseconds per call of fn over `runs` runs of `iterations` calls, after a warm-up run. */
function measure(fn, { runs = 7, iterations = 200 } = {}) {
  const samples = [];
  for (let run = -1; run < runs; run++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn(i);
    const ns = Number(process.hrtime.bigint() - start) / iterations;
    if (run >= 0) samples.push(ns);
  }
  return median(samples);
}

const rows = [];

// `data` on a fresh handle each time (a new handle has no cached view), so each call creates the
// TypedArray over the storage's ArrayBuffer.
for (const bytes of [1 << 10, 1 << 20, 10 << 20, 100 << 20]) {
  const base = tensor(new Float32Array(bytes / 4), [bytes / 4]);
  const handles = Array.from({ length: 1600 }, () => base.view(-1));
  let next = 0;
  const ns = measure(() => void handles[next++].data, { runs: 7, iterations: 200 });
  rows.push({ figure: `Tensor.data, ${bytes >= 1 << 20 ? bytes / (1 << 20) + ' MB' : bytes / 1024 + ' KB'}`, value: ns / 1000, unit: 'µs' });
  for (const h of handles) h.dispose();
  base.dispose();
}
const small = rows[0].value;
for (const row of rows) row.ratio = row.value / small;

const model = loadModel(path.join(root, 'models', 'tiny-gpt.pt'));
const ids = tensor([[3, 14, 15, 9, 26, 53, 5, 8]], { dtype: 'int64' });
for (let i = 0; i < 5; i++) model.forward(ids).dispose();
rows.push({ figure: 'forward, tiny-gpt [1, 8] (sync)', value: measure(() => model.forward(ids).dispose(), { runs: 7, iterations: 50 }) / 1e6, unit: 'ms' });

const machine = `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, Node ${process.version}, libtorch ${runtimeInfo().libtorchVersion}`;
console.log(`machine: ${machine}\n`);
console.log('| figure | median | vs 1 KB |');
console.log('|---|---|---|');
for (const row of rows) console.log(`| ${row.figure} | ${row.value.toFixed(3)} ${row.unit} | ${row.ratio ? row.ratio.toFixed(2) + 'x' : ''} |`);
fs.writeFileSync(path.join(root, 'bench', 'results.json'), JSON.stringify({ machine, date: new Date().toISOString(), rows }, null, 2) + '\n');
