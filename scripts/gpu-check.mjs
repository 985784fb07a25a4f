// The CUDA checks, run by scripts/gpu-check.sh on a machine with a GPU (or `node scripts/gpu-check.mjs
// cpu` here, which runs the same comparisons on the CPU to check the script itself): the addon built
// against a CUDA libtorch loads, sees the device, and gives on `device: 'cuda'` what it gives on the
// CPU for a forward, closure and native hooks, extraction and an intervention; then the figures:
// bare forward, extraction, and the bytes an extraction copies back against the device's bandwidth.
import { performance } from 'node:perf_hooks';
import { HookedModel, loadModel, runtimeInfo, tensor } from '../dist/index.mjs';

const device = process.argv[2] ?? 'cuda';
const info = runtimeInfo();
const lines = [`device ${device}; libtorch ${info.libtorchVersion}, cudaBuild ${info.cudaBuild}, cudaAvailable ${info.cudaAvailable}, devices ${info.cudaDeviceCount}`];
let failures = 0;
function check(what, ok, detail = '') {
  lines.push(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? `: ${detail}` : ''}`);
  if (!ok) failures++;
}
function maxDiff(a, b) {
  const x = a.to('cpu').toFloat32Array();
  const y = b.to('cpu').toFloat32Array();
  let m = x.length === y.length ? 0 : Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}
const TOLERANCE = 1e-4;

if (device !== 'cpu') check('a CUDA build sees a device', info.cudaBuild && info.cudaAvailable && info.cudaDeviceCount > 0);

const ids = [[3, 14, 15, 9, 26, 53, 5, 8], [2, 7, 1, 8, 2, 8, 1, 8]];
const cpu = loadModel('models/tiny-gpt.pt');
const gpu = loadModel('models/tiny-gpt.pt', { device });
const idsCpu = tensor(ids, { dtype: 'int64' });
const idsGpu = idsCpu.to(device);

// a forward
check('forward equals the CPU', maxDiff(cpu.forward(idsCpu), gpu.forward(idsGpu)) < TOLERANCE);

// a closure hook sees the device's tensor and its edit changes the output as on the CPU
const zeroPosition = (value) => {
  const edited = value.clone();
  edited.index(0, 2).write(new Float32Array(value.shape[2]));
  return edited;
};
const seen = [];
const editedGpu = gpu.forward(idsGpu, { hooks: { 'transformer.h.0:output': (v) => (seen.push(v.device), zeroPosition(v.to('cpu')).to(v.device)) } });
const editedCpu = cpu.forward(idsCpu, { hooks: { 'transformer.h.0:output': zeroPosition } });
check('a closure hook sees a device tensor', seen[0]?.startsWith(device), String(seen[0]));
check('a closure hook edit equals the CPU', maxDiff(editedCpu, editedGpu) < TOLERANCE);
check('async forward with a closure hook equals the CPU', maxDiff(editedCpu, await gpu.forwardAsync(idsGpu, { hooks: { 'transformer.h.0:output': (v) => zeroPosition(v.to('cpu')).to(v.device) } })) < TOLERANCE);

// extraction and an intervention through HookedModel
const config = { extractResidOut: true, extractAttnPattern: true, extractHeadOut: true };
const hmCpu = new HookedModel(cpu);
const hmGpu = new HookedModel(gpu);
const a = hmCpu.forward(ids, { extractionConfig: config });
const b = await hmGpu.forwardAsync(idsGpu, { extractionConfig: config });
for (const key of ['resid_out_1', 'pattern_L1H2', 'head_out_L0H1', 'logits']) check(`extraction ${key} equals the CPU`, maxDiff(a.tensor(key), b.tensor(key)) < TOLERANCE);
const ablate = [{ type: 'columns', activation: 'pattern_L1H2', tokenPositions: [0], patchingValues: 'ablation' }];
check('a pattern ablation equals the CPU', maxDiff(hmCpu.forward(ids, { interventions: ablate }).tensor('logits'), hmGpu.forward(idsGpu, { interventions: ablate }).tensor('logits')) < TOLERANCE);

// figures: medians of repeated runs after warm-up
function median(fn, runs = 50) {
  for (let i = 0; i < 5; i++) fn();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  return times.sort((x, y) => x - y)[runs >> 1];
}
const batch = tensor(Array.from({ length: 32 }, (_, r) => Array.from({ length: 16 }, (_, i) => (r * 7 + i) % 64)), { dtype: 'int64' }).to(device);
const bare = median(() => gpu.forward(batch, { output: false }));
const everything = { extractResidOut: true, extractAttnPattern: true };
const extraction = median(() => hmGpu.forward(batch, { extractionConfig: everything }).dispose());
const cache = hmGpu.forward(batch, { extractionConfig: everything });
let bytes = 0;
for (const [, value] of cache) if (value && typeof value === 'object' && 'numel' in value) bytes += value.numel * 4;
const copy = median(() => {
  for (const [, value] of cache) if (value && typeof value === 'object' && 'numel' in value) value.to('cpu').dispose();
});
lines.push(`bare forward [32, 16]: ${bare.toFixed(3)} ms; extraction of every resid_out and pattern: ${extraction.toFixed(3)} ms (${(extraction / bare).toFixed(2)}x)`);
lines.push(`bytes an extraction holds: ${bytes}; copied to the host in ${copy.toFixed(3)} ms = ${(bytes / copy / 1e6).toFixed(2)} GB/s (an H200's host link is about 50 GB/s; small copies are latency-bound)`);
lines.push(`${failures === 0 ? 'all checks passed' : `${failures} checks failed`}`);
console.log(lines.join('\n'));
process.exitCode = failures === 0 ? 0 : 1;
