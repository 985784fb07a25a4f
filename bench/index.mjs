// npm run bench: side-by-side figures, medians after warm-up, printed as a table and written to
// bench/results.json: the cost of `Tensor.data` against tensor size, a bare forward, and the hook
// engine's costs (taps alone, a JS closure per call on and off the main thread, graph builds).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { HookedModel, extractionConfig, loadModel, runtimeInfo, setNumThreads, tensor } from '../dist/index.mjs';

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

/** Medians of two alternatives measured in alternating runs (so drift hits both alike). */
function compare(a, b, { runs = 9, iterations = 50 } = {}) {
  const sa = [];
  const sb = [];
  for (let run = -2; run < runs; run++) {
    for (const [fn, samples] of [[a, sa], [b, sb]]) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < iterations; i++) fn();
      if (run >= 0) samples.push(Number(process.hrtime.bigint() - start) / iterations);
    }
  }
  return [median(sa), median(sb)];
}

async function compareAsync(a, b, { runs = 9, iterations = 50 } = {}) {
  const sa = [];
  const sb = [];
  for (let run = -2; run < runs; run++) {
    for (const [fn, samples] of [[a, sa], [b, sb]]) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < iterations; i++) await fn();
      if (run >= 0) samples.push(Number(process.hrtime.bigint() - start) / iterations);
    }
  }
  return [median(sa), median(sb)];
}

// Hook engine on tiny-gpt: every hook point tapped.
{
  const points = model.hookPoints().map((p) => p.name);
  const taps = { taps: points };
  const empty = () => undefined;
  const closures = { hooks: Object.fromEntries(points.map((p) => [p, empty])) };
  const [bare, tapped] = compare(() => model.forward(ids).dispose(), () => model.forward(ids, taps).dispose());
  rows.push({ figure: `taps at all ${points.length} points, no hooks / untouched forward (tiny-gpt)`, value: tapped / bare, unit: 'x' });
  const [tapsOnly, withClosures] = compare(() => model.forward(ids, taps).dispose(), () => model.forward(ids, closures).dispose());
  rows.push({ figure: 'JS closure hook, per call, sync forward', value: (withClosures - tapsOnly) / points.length / 1000, unit: 'µs' });
  const [tapsAsync, closuresAsync] = await compareAsync(
    async () => (await model.forwardAsync(ids, taps)).dispose(),
    async () => (await model.forwardAsync(ids, closures)).dispose(),
  );
  rows.push({ figure: 'JS closure hook, per call, async forward (inference thread round trip)', value: (closuresAsync - tapsAsync) / points.length / 1000, unit: 'µs' });
  const builds = (names) => median(Array.from({ length: 7 }, () => model.hookedGraph(names).buildMilliseconds));
  rows.push({ figure: `hooked graph build, all ${points.length} points (tiny-gpt)`, value: builds(points), unit: 'ms' });
  rows.push({ figure: 'hooked graph build, 2 points (tiny-gpt)', value: builds(['transformer.h.0.attn:pattern', 'transformer.h.1:output']), unit: 'ms' });
}

// Taps alone on a GPT-2-small-shaped model (12 layers, d 768, 12 heads, vocab 50257), generated once.
{
  const file = path.join(root, 'bench', 'models', 'gpt2-small-shaped.pt');
  if (!fs.existsSync(file)) {
    const python = execFileSync('node', [path.join(root, 'scripts', 'libtorch.js'), '--python'], { encoding: 'utf8' }).trim();
    console.error(`generating ${path.relative(root, file)} with ${python} ...`);
    execFileSync(python, [path.join(root, 'scripts', 'make_fixtures.py'), '--bench', path.dirname(file)], { stdio: 'inherit' });
  }
  const big = loadModel(file);
  const input = tensor([Array.from({ length: 64 }, (_, i) => (i * 7919) % 50257)], { dtype: 'int64' });
  const points = big.hookPoints().map((p) => p.name);
  const [bare, tapped] = compare(() => big.forward(input).dispose(), () => big.forward(input, { taps: points }).dispose(), { runs: 7, iterations: 3 });
  rows.push({ figure: 'forward, gpt2-small-shaped [1, 64] (sync)', value: bare / 1e6, unit: 'ms' });
  rows.push({ figure: `taps at all ${points.length} points, no hooks / untouched forward (gpt2-small-shaped)`, value: tapped / bare, unit: 'x' });
  rows.push({ figure: `hooked graph build, all ${points.length} points (gpt2-small-shaped)`, value: big.hookedGraph(points).buildMilliseconds, unit: 'ms' });
  big.dispose();
}

// easyroutine extraction (every resid_out and every pattern, at all positions) with the built-in
// kernels in Node against PyTorch forward hooks doing the same work in Python, same threads.
{
  const threads = os.cpus().length;
  setNumThreads(threads);
  let python;
  try {
    python = execFileSync('node', [path.join(root, 'scripts', 'libtorch.js'), '--python'], { encoding: 'utf8' }).trim();
  } catch {
    python = undefined;
  }
  const cases = [
    { name: 'tiny-gpt', file: path.join(root, 'models', 'tiny-gpt.pt'), ids: [[3, 14, 15, 9, 26, 53, 5, 8]], runs: 9, iterations: 50 },
    { name: 'gpt2-small-shaped', file: path.join(root, 'bench', 'models', 'gpt2-small-shaped.pt'), ids: [Array.from({ length: 64 }, (_, i) => (i * 7919) % 50257)], runs: 7, iterations: 3 },
  ];
  for (const c of cases) {
    const hooked = HookedModel.load(c.file);
    const input = tensor(c.ids, { dtype: 'int64' });
    const options = { targetTokenPositions: ['all'], extractionConfig: extractionConfig({ extractResidOut: true, extractAttnPattern: true, saveLogits: false }) };
    // both sides release what they extracted at once (Python by refcount, here by dispose)
    const [bare, extraction] = compare(() => hooked.model.forward(input).dispose(), () => hooked.forward(input, options).dispose(), { runs: c.runs, iterations: c.iterations });
    rows.push({ figure: `extraction of every resid_out and pattern / bare forward, Node (${c.name})`, value: extraction / bare, unit: 'x' });
    if (python) {
      const py = JSON.parse(execFileSync(python, [path.join(root, 'bench', 'python_hooks.py'), c.name, String(c.runs), String(c.iterations), String(threads)], { encoding: 'utf8' }));
      rows.push({ figure: `the same extraction, Python forward hooks / Node kernels (${c.name}, ${threads} threads)`, value: py.extraction_ms / (extraction / 1e6), unit: 'x' });
      rows.push({ figure: `bare forward, Python nn.Module / Node TorchScript (${c.name})`, value: py.bare_ms / (bare / 1e6), unit: 'x' });
      if (c.name === 'tiny-gpt') rows.push({ figure: 'Python forward hook doing nothing, per call', value: ((py.empty_hooks_ms - py.bare_ms) / py.empty_hooks) * 1000, unit: 'µs' });
    } else {
      rows.push({ figure: `Python side (${c.name})`, value: NaN, unit: 'no python3-torch: not measured' });
    }
    hooked.model.dispose();
  }
}

const machine = `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, Node ${process.version}, libtorch ${runtimeInfo().libtorchVersion}`;
console.log(`machine: ${machine}\n`);
console.log('| figure | median | vs 1 KB |');
console.log('|---|---|---|');
for (const row of rows) console.log(`| ${row.figure} | ${row.value.toFixed(3)}${row.unit === 'x' ? 'x' : ' ' + row.unit} | ${row.ratio ? row.ratio.toFixed(2) + 'x' : ''} |`);
fs.writeFileSync(path.join(root, 'bench', 'results.json'), JSON.stringify({ machine, date: new Date().toISOString(), rows }, null, 2) + '\n');
