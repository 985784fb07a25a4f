// npm run bench: every figure side by side in one run, medians of several runs after warm-up,
// printed as a table and written to bench/results.json. Node runs the TorchScript file; the Python
// side (bench/python_hooks.py, Debian's python3-torch: the same libtorch) runs the same file, and the
// original nn.Module with forward hooks the way easyroutine does it, with the same weights and threads.
// Models: the bundled induction model (models/induction-2l.pt) and a GPT-2-small-shaped model
// (12 layers, d 768, 12 heads, vocabulary 50257; generated once into bench/models/).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { HookedModel, extractionConfig, runtimeInfo, setNumThreads, getNumThreads, tensor } from '../dist/index.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
// `npm run bench -- models` runs only the named sections (data, soak, generate, models, gpu); all by default
const args = process.argv.slice(2);
// --rows-json: print the rows as JSON instead of the table (how a section runs in a process of its own)
const rowsJson = args.includes('--rows-json');
const named = args.filter((a) => a !== '--rows-json');
const sections = new Set(named.length > 0 ? named : ['data', 'soak', 'generate', 'models', 'gpu']);
const cores = os.cpus().length;
const rows = [];
/** One line of the table: `node` and `python` in `unit`, or a single `value`. */
function row(figure, fields) {
  rows.push({ figure, ...fields });
  const show = (v) => (v === undefined ? '' : `${v < 10 ? v.toFixed(3) : v.toFixed(1)} ${fields.unit}`);
  const ratio = fields.ratio === undefined ? '' : `${fields.ratio.toFixed(2)}x`;
  console.error(`  ${figure}: ${show(fields.node ?? fields.value)} ${fields.python !== undefined ? `| Python ${show(fields.python)}` : ''} ${ratio}`);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The median over runs of a / b, each pair measured in the same run. */
function ratioOf(a, b) {
  return median(a.map((x, i) => x / b[i]));
}

let python;
try {
  python = execFileSync('node', [path.join(root, 'scripts', 'libtorch.js'), '--python'], { encoding: 'utf8' }).trim();
  execFileSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
} catch {
  python = undefined;
  console.error('python3-torch was not found: measuring the Node side alone');
}

/**
 * Pins this process, every thread, to `cpus` (a taskset list: '1', '0-1'); child processes inherit
 * it. On this shared machine one core can run a third slower than the other for seconds at a time,
 * so one-thread runs put both sides on the same core. Returns false where taskset is missing.
 */
function pinTo(cpus) {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Starts bench/python_hooks.py for one model; `run(case, iterations)` resolves to its ms per call. */
async function startPython(name, file, { threads, positions, ids }) {
  if (!python) return undefined;
  const args = [path.join(root, 'bench', 'python_hooks.py'), name, file, String(threads), JSON.stringify(positions), JSON.stringify(ids)];
  // The same runtime settings as here: OpenBLAS sizes its own pool at start-up (setNumThreads sizes it
  // here), and OpenMP's idle threads wait the way they do here (PASSIVE unless set).
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  const policy = runtimeInfo().ompWaitPolicy;
  if (policy) env.OMP_WAIT_POLICY = policy;
  const child = spawn(python, args, { stdio: ['pipe', 'pipe', 'inherit'], env });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const answer = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`bench/python_hooks.py ${name} exited early`);
    return JSON.parse(value);
  };
  const info = await answer();
  return {
    info,
    async run(kase, iterations) {
      child.stdin.write(`${kase} ${iterations}\n`);
      return (await answer()).ms;
    },
    async close() {
      child.stdin.end();
      await once(child, 'exit');
    },
  };
}

/**
 * Milliseconds per call of each case in every run: `{ node: fn }` runs here (`async: true` when fn
 * returns a promise to wait for), `{ python: name }` in the Python process, which waits while this one runs and the other way round. Runs alternate all
 * cases, so the machine's drift hits every case alike, after warm-up runs of at least two seconds
 * (V8 compiles hot code and sizes its heap on helper threads meanwhile, which on a 2-core machine
 * slowed the first second of Node's runs by half). When the side changes, one untimed call goes
 * first, after a pause when there are several threads (the other side's idle BLAS threads stop
 * spinning). Short runs, many of them: this machine's speed changes from one tenth of a second to
 * the next, and a ratio is taken per run.
 */
async function alternate(cases, { runs, iterations, side, threads = 1, warmupMs = 2000 }) {
  const samples = cases.map(() => []);
  let last;
  const warmUntil = performance.now() + warmupMs;
  for (let run = 0, warmups = 0; run < runs; ) {
    const warming = warmups < 2 || performance.now() < warmUntil;
    // forward and backward in turn: each side's cases stay together (one switch per run)
    const order = (warmups + run) % 2 === 0 ? cases.map((_, i) => i) : cases.map((_, i) => cases.length - 1 - i);
    for (const i of order) {
      const c = cases[i];
      const here = c.python ? 'python' : 'node';
      if (here !== last) {
        if (threads > 1 && last !== undefined) await sleep(150);
        // the first call after the other side ran is slower (by 15% on the GPT-2 shape): untimed
        if (c.python) await side.run(c.python, 1);
        else await c.node();
      }
      last = here;
      let ms;
      if (c.python) {
        ms = await side.run(c.python, iterations);
      } else {
        const start = process.hrtime.bigint();
        if (c.async) for (let k = 0; k < iterations; k++) await c.node();
        else for (let k = 0; k < iterations; k++) c.node();
        ms = Number(process.hrtime.bigint() - start) / 1e6 / iterations;
      }
      if (!warming) samples[i].push(ms);
    }
    if (warming) warmups++;
    else run++;
  }
  return samples;
}

const bundledFile = path.join(root, 'models', 'induction-2l.pt');

// ---- Tensor.data against size: a fresh handle each time (no cached view), so each call makes the
// TypedArray over the storage's ArrayBuffer.
console.error('Tensor.data');
if (sections.has('data')) {
  let small;
  for (const bytes of [1 << 10, 1 << 20, 10 << 20, 100 << 20]) {
    const base = tensor(new Float32Array(bytes / 4), [bytes / 4]);
    const handles = Array.from({ length: 2000 }, () => base.view(-1)); // 1 + 2 warm-up runs + 7 runs of 200
    let next = 0;
    const [samples] = await alternate([{ node: () => void handles[next++].data }], { runs: 7, iterations: 200, warmupMs: 0 });
    const us = median(samples) * 1000;
    small ??= us;
    row(`Tensor.data, ${bytes >= 1 << 20 ? bytes / (1 << 20) + ' MB' : bytes / 1024 + ' KB'} (vs 1 KB)`, { value: us, unit: 'µs', ratio: us / small });
    for (const h of handles) h.dispose();
    base.dispose();
  }
}

// ---- soak: 10,000 hooked forwards (built-in extraction kernels and a JS closure that reads and
// edits its value) on the bundled model, the way long runs go (forwardAsync, as extractCache does);
// resident memory after warm-up and at the end. (A synchronous loop that never yields to the event
// loop grows instead: Node frees the native side of collected handles only between ticks.)
console.error('soak');
if (sections.has('soak') && !rowsJson && sections.size > 1) {
  // in a process of its own: its 10,000 forwards leave a heap and a malloc arena behind that slowed
  // the sections after it (the bundled model's extraction by 4%), and its resident memory is then
  // its own, not what earlier sections left
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), 'soak', '--rows-json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  rows.push(...JSON.parse(out));
} else if (sections.has('soak')) {
  setNumThreads(1);
  const hooked = HookedModel.load(bundledFile);
  const ids = tensor([[0, ...Array.from({ length: 32 }, (_, i) => 1 + (i % 16) * 3)]], { dtype: 'int64' });
  const options = {
    targetTokenPositions: ['last', [1, 5]],
    extractionConfig: extractionConfig({ extractResidOut: true, extractAttnPattern: true, extractHeadOut: true }),
    hooks: { 'transformer.h.0:output': (value) => void (value.data[0] += 0) },
  };
  const step = async () => {
    const cache = await hooked.forwardAsync(ids, options);
    cache.tensor('pattern_L1H1').toFloat32Array();
    cache.dispose();
  };
  for (let i = 0; i < 500; i++) await step();
  const start = process.memoryUsage().rss;
  const startedAt = performance.now();
  for (let i = 0; i < 10000; i++) await step();
  const seconds = (performance.now() - startedAt) / 1000;
  const end = process.memoryUsage().rss;
  row('soak, 10,000 hooked forwardAsync calls: resident memory after 500 warm-up calls', { value: start / 2 ** 20, unit: 'MB' });
  row(`soak, 10,000 hooked forwardAsync calls: resident memory at the end (${seconds.toFixed(1)} s)`, { value: end / 2 ** 20, unit: 'MB', ratio: end / start });
  ids.dispose();
  hooked.model.dispose();
  setNumThreads(cores);
}

// ---- generate: greedy decoding on the bundled model, a full forward per step (any export works,
// no KV cache from the graph), 16 new tokens after BOS + 16, one row, 1 thread; the cost per new
// token, median of 5 runs, next to one bare forward of the final 33 tokens
console.error('generate');
if (sections.has('generate')) {
  setNumThreads(1);
  const hooked = HookedModel.load(bundledFile);
  const prompt = [[0, ...Array.from({ length: 16 }, (_, i) => 1 + ((i * 37 + 11) % 63))]];
  const perToken = [];
  for (let run = 0; run < 6; run++) {
    const started = performance.now();
    await hooked.generate(prompt, { maxNewTokens: 16 });
    if (run > 0) perToken.push((performance.now() - started) / 16);
  }
  const full = tensor([[...prompt[0], ...prompt[0].slice(1)]], { dtype: 'int64' });
  const forwards = [];
  for (let i = 0; i < 50; i++) {
    const started = performance.now();
    hooked.model.forward(full).dispose();
    forwards.push(performance.now() - started);
  }
  row('generate (greedy, bundled model, 17 -> 33 tokens, 1 thread): per new token', { value: median(perToken), unit: 'ms' });
  row('  one bare forward of 33 tokens, for comparison', { value: median(forwards.slice(10)), unit: 'ms' });
  full.dispose();
  hooked.dispose();
  setNumThreads(cores);
}

// ---- the two models
const { config: bundledConfig } = JSON.parse(fs.readFileSync(bundledFile.replace(/\.pt$/, '.json'), 'utf8'));
const bigFile = path.join(root, 'bench', 'models', 'gpt2-small-shaped.pt');
if (!fs.existsSync(bigFile) && python) {
  console.error(`generating ${path.relative(root, bigFile)} with ${python} ...`);
  execFileSync(python, [path.join(root, 'scripts', 'make_fixtures.py'), '--bench', path.dirname(bigFile)], { stdio: 'inherit' });
}
const half = Array.from({ length: bundledConfig.half }, (_, i) => 1 + ((i * 37 + 11) % (bundledConfig.vocab - 1)));
const models = [
  { name: 'bundled', label: 'bundled model [1, 33]', file: bundledFile, ids: [bundledConfig.bos, ...half, ...half], runs: 41, iterations: 25, threads: [1, cores] },
  { name: 'gpt2-small-shaped', label: 'GPT-2-small shape [1, 64]', file: bigFile, ids: Array.from({ length: 64 }, (_, i) => (i * 7919) % 50257), runs: 61, iterations: 1, threads: [cores] },
].filter((m) => fs.existsSync(m.file));

for (const m of sections.has('models') ? models : []) {
  for (const threads of m.threads) {
    setNumThreads(threads);
    console.error(`${m.label}, ${threads} thread${threads > 1 ? 's' : ''}`);
    const hooked = HookedModel.load(m.file);
    const ids = tensor([m.ids], { dtype: 'int64' });
    const positions = m.ids.map((_, i) => i);
    // every block's output (resid_out) and every head's pattern, at all positions
    const config = extractionConfig({ extractResidOut: true, extractAttnPattern: true, saveLogits: false });
    const options = { targetTokenPositions: ['all'], extractionConfig: config };
    // each side frees what it extracted at once (Python by refcount, here by dispose)
    const pinned = threads === 1 && pinTo(String(cores - 1));
    const side = await startPython(m.name, m.file, { threads, positions, ids: m.ids });
    const cases = [
      { node: () => hooked.model.forward(ids).dispose() },
      { node: () => hooked.forward(ids, options).dispose() },
      ...(side ? [{ python: 'bare_script' }, { python: 'bare_module' }, { python: 'extraction' }] : []),
    ];
    const [bare, extraction, pyScript, pyModule, pyExtraction] = await alternate(cases, { ...m, side, threads });
    const suffix = `${m.label}, ${threads} thread${threads > 1 ? 's' : ''}`;
    const both = (node, py) => ({ node: median(node), python: py && median(py), unit: 'ms', ratio: py && ratioOf(py, node), runs: { node, python: py } });
    row(`bare forward of the same TorchScript file (${suffix})`, both(bare, pyScript));
    row(`bare forward, Python on the nn.Module (${suffix})`, both(bare, pyModule));
    row(`extraction of every resid_out and pattern: kernels / forward hooks (${suffix})`, both(extraction, pyExtraction));
    row(`extraction / bare forward, Node (${suffix})`, { value: ratioOf(extraction, bare), unit: 'x' });
    if (side) row(`extraction / bare forward of the nn.Module, Python (${suffix})`, { value: ratioOf(pyExtraction, pyModule), unit: 'x' });
    let pyHook;
    let pyHookInForward;
    if (side && m.name === 'bundled' && threads === m.threads[m.threads.length - 1]) {
      const [plain, hookedCall] = await alternate([{ python: 'identity' }, { python: 'identity_hook' }], { runs: m.runs, iterations: 2000, side, threads: 1 });
      pyHook = (median(hookedCall) - median(plain)) * 1000;
      // the way the Node side measures its closures: hooks on every module of a forward, per call
      const [module, withHooks] = await alternate([{ python: 'bare_module' }, { python: 'module_hooks' }], { runs: 15, iterations: 200, side, threads });
      pyHookInForward = ((median(withHooks) - median(module)) * 1000) / side.info.modules;
    }
    await side?.close();
    if (pinned) pinTo(`0-${cores - 1}`);
    if (m.name === 'bundled' && threads === m.threads[m.threads.length - 1]) {
      // hook engine costs on the bundled model: taps, closures, graph builds
      const points = hooked.model.hookPoints().map((p) => p.name);
      const taps = { taps: points };
      const empty = () => undefined;
      const closures = { hooks: Object.fromEntries(points.map((p) => [p, empty])) };
      const [untouched, tapped, withClosures] = await alternate([{ node: () => hooked.model.forward(ids).dispose() }, { node: () => hooked.model.forward(ids, taps).dispose() }, { node: () => hooked.model.forward(ids, closures).dispose() }], { runs: 15, iterations: 200, threads });
      row(`taps at all ${points.length} points, no hooks / untouched forward (${suffix})`, { value: ratioOf(tapped, untouched), unit: 'x' });
      const [tapsAsync, closuresAsync] = await alternate(
        [
          { node: async () => (await hooked.model.forwardAsync(ids, taps)).dispose(), async: true },
          { node: async () => (await hooked.model.forwardAsync(ids, closures)).dispose(), async: true },
        ],
        { runs: 15, iterations: 100, threads },
      );
      const closureUs = ((median(withClosures) - median(tapped)) * 1000) / points.length;
      const closureAsyncUs = ((median(closuresAsync) - median(tapsAsync)) * 1000) / points.length;
      row('a hook that does nothing, per call: JS closure in forward / Python forward hook on a bare module call', { node: closureUs, python: pyHook, unit: 'µs', ratio: pyHook && pyHook / closureUs });
      row('a hook that does nothing, per call: JS closure from the inference thread (forwardAsync) / Python forward hook', { node: closureAsyncUs, python: pyHook, unit: 'µs', ratio: pyHook && pyHook / closureAsyncUs });
      row(`a hook that does nothing, per call in a forward: JS closure at all ${points.length} points / Python forward hook on all ${side?.info.modules ?? '?'} modules`, { node: closureUs, python: pyHookInForward, unit: 'µs', ratio: pyHookInForward && pyHookInForward / closureUs });
      const builds = (names) => median(Array.from({ length: 7 }, () => hooked.model.hookedGraph(names).buildMilliseconds));
      row(`hooked graph build, all ${points.length} points (${m.label})`, { value: builds(points), unit: 'ms' });
    }
    if (m.name === 'gpt2-small-shaped') {
      const points = hooked.model.hookPoints().map((p) => p.name);
      const [untouched, tapped] = await alternate([{ node: () => hooked.model.forward(ids).dispose() }, { node: () => hooked.model.forward(ids, { taps: points }).dispose() }], { ...m, threads });
      row(`taps at all ${points.length} points, no hooks / untouched forward (${suffix})`, { value: ratioOf(tapped, untouched), unit: 'x' });
      row(`hooked graph build, all ${points.length} points (${m.label})`, { value: hooked.model.hookedGraph(points).buildMilliseconds, unit: 'ms' });
    }
    ids.dispose();
    hooked.model.dispose();
  }
}
if (sections.has('models') && !models.some((m) => m.name === 'gpt2-small-shaped')) row('GPT-2-small shape', { value: NaN, unit: 'not measured: bench/models/gpt2-small-shaped.pt is missing and python3-torch cannot make it' });

// ---- gpu: where CUDA is available, the same figures on device 'cuda' (bare forward, extraction of
// every resid_out and pattern, a closure hook per call), and the bytes an extraction copies against
// the device's own copy bandwidth (a 256 MB device-to-device clone), so one command on a GPU machine
// gives the numbers. Timings wait for the device: every case ends by reading a value back.
console.error('gpu');
if (sections.has('gpu')) {
  if (!runtimeInfo().cudaAvailable) {
    row('GPU', { value: NaN, unit: `not measured: CUDA is not available (libtorch ${runtimeInfo().libtorchVersion}${runtimeInfo().cudaBuild ? ', a CUDA build with no device' : ', CPU build'})` });
  } else {
    const big = tensor(new Float32Array(64 << 20), [64 << 20]).to('cuda');
    big.clone().dispose();
    const copies = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const copy = big.clone();
      copy.index(0).item();
      copies.push(performance.now() - started);
      copy.dispose();
    }
    // a clone reads and writes each byte
    const bandwidth = (2 * (256 << 20)) / (median(copies) / 1000);
    row('GPU: device copy bandwidth (256 MB clone, read + write)', { value: bandwidth / 1e9, unit: 'GB/s' });
    big.dispose();
    for (const m of models) {
      try {
        const hooked = HookedModel.load(m.file, { device: 'cuda' });
        const ids = tensor([m.ids], { dtype: 'int64' }).to('cuda');
        const config = extractionConfig({ extractResidOut: true, extractAttnPattern: true, saveLogits: false });
        const options = { targetTokenPositions: ['all'], extractionConfig: config };
        const points = hooked.model.hookPoints().map((p) => p.name);
        const empty = () => undefined;
        const closures = { hooks: Object.fromEntries(points.map((p) => [p, empty])) };
        const taps = { taps: points };
        const sync = (t) => (t.index(0).index(0).index(0).item(), t.dispose());
        let bytes = 0;
        const [bare, extraction, tapped, withClosures] = await alternate(
          [
            { node: () => sync(hooked.model.forward(ids)) },
            {
              node: () => {
                const cache = hooked.forward(ids, options);
                bytes = 0;
                for (const key of cache.keys()) {
                  const value = cache.get(key);
                  if (value && typeof value === 'object' && 'numel' in value) bytes += value.numel * (value.dtype === 'float64' || value.dtype === 'int64' ? 8 : value.dtype === 'float16' || value.dtype === 'bfloat16' ? 2 : 4);
                }
                cache.tensor(cache.keys().find((k) => k.startsWith('pattern_'))).index(0).index(0).index(0).item();
                cache.dispose();
              },
            },
            { node: () => sync(hooked.model.forward(ids, taps)) },
            { node: () => sync(hooked.model.forward(ids, closures)) },
          ],
          { runs: 21, iterations: m.name === 'bundled' ? 20 : 3, threads: 1 },
        );
        const suffix = `${m.label}, cuda`;
        row(`GPU: bare forward (${suffix})`, { value: median(bare), unit: 'ms' });
        row(`GPU: extraction of every resid_out and pattern (${suffix})`, { value: median(extraction), unit: 'ms', ratio: ratioOf(extraction, bare) });
        row(`GPU: taps at all ${points.length} points, no hooks / untouched forward (${suffix})`, { value: ratioOf(tapped, bare), unit: 'x' });
        row(`GPU: a JS closure that does nothing, per call (${suffix})`, { value: ((median(withClosures) - median(tapped)) * 1000) / points.length, unit: 'µs' });
        const extra = Math.max(median(extraction) - median(bare), 1e-6) / 1000;
        row(`GPU: bytes an extraction keeps, and their copy time at the device's bandwidth / the extraction's extra time (${suffix})`, { value: bytes / 2 ** 20, unit: 'MB', ratio: bytes / bandwidth / extra });
        ids.dispose();
        hooked.dispose();
      } catch (error) {
        row(`GPU: ${m.label}`, { value: NaN, unit: `not measured: ${error.constructor.name}: ${String(error.message).split('\n')[0]}` });
      }
    }
  }
}

setNumThreads(cores);
if (rowsJson) {
  console.log(JSON.stringify(rows));
  process.exit(0);
}

const machine = `${os.cpus()[0]?.model?.trim() ?? 'cpu'} x${cores}, ${Math.round(os.totalmem() / 2 ** 30)} GB, ${os.platform()} ${os.release()}, Node ${process.version}, libtorch ${runtimeInfo().libtorchVersion}${python ? `, Python side: ${python}` : ', no Python side'}`;
const format = (v, unit) => (v === undefined || v === null ? '' : Number.isNaN(v) ? unit : `${v < 10 ? v.toFixed(3) : v.toFixed(1)}${unit === 'x' ? 'x' : ' ' + unit}`);
console.log(`machine: ${machine}\n`);
console.log('| figure | Node | Python | ratio |');
console.log('|---|---|---|---|');
for (const r of rows) {
  const node = r.node ?? r.value;
  console.log(`| ${r.figure} | ${format(node, r.unit)} | ${format(r.python, r.unit)} | ${r.ratio === undefined || r.ratio === null ? '' : r.ratio.toFixed(2) + 'x'} |`);
}
console.log('\nratio: Python / Node for side-by-side figures (above 1: Node is faster); else against the first line of its group.');
fs.writeFileSync(path.join(root, 'bench', 'results.json'), JSON.stringify({ machine, date: new Date().toISOString(), threads: getNumThreads(), rows }, null, 2) + '\n');
