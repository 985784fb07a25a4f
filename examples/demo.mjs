// The README's main job: find the induction heads of the bundled model (models/induction-2l.pt, a
// 2-layer attention-only transformer trained by scripts/train_induction.py), with easyroutine's
// extraction API:
//   1. extract every head's attention pattern on repeated random sequences (built-in kernels);
//   2. score each head: induction (attention from a repeated token to the token after its first
//      occurrence) and previous-token (attention to the position just before); print them ranked;
//   3. zero-ablate the top heads and measure the loss on the repeated half;
//   4. write an offline HTML page with the heatmaps of the top heads on one example.
// The study's functions are in examples/induction-study.mjs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HookedModel, attentionPatternsPage, describeArchitecture, runtimeInfo, tensor } from '../dist/index.mjs';
import { ablatedLoss, extractPatterns, headScores, heatmapNote, repeatedHalfLoss, repeatedSequences } from './induction-study.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const file = path.join(root, 'models', 'induction-2l.pt');
const { config } = JSON.parse(fs.readFileSync(file.replace(/\.pt$/, '.json'), 'utf8'));
const { half, vocab, bos } = config;
const batch = 64;

const info = runtimeInfo();
console.log(`libtorch ${info.libtorchVersion} (${info.cudaAvailable ? 'CUDA available' : 'CPU'})`);
const model = HookedModel.load(file);
console.log(`model ${path.relative(root, file)}: ${model.model.signature}`);
console.log(describeArchitecture(model.architecture));

const rows = repeatedSequences({ batch, half, vocab, bos, seed: 2024 });
const ids = tensor(rows, { dtype: 'int64' });

// 1. patterns and logits
const started = performance.now();
const cache = extractPatterns(model, ids);
console.log(`\nextracted ${cache.size} keys (every head's pattern, the logits) for ${batch} sequences of ${2 * half + 1} tokens in ${(performance.now() - started).toFixed(1)} ms (the first forward builds the hooked graph)`);

// 2. scores, ranked
const scores = headScores(cache, model.architecture, half);
const byInduction = [...scores].sort((a, b) => b.induction - a.induction);
const topInduction = byInduction[0];
const topPrevious = [...scores].sort((a, b) => b.previous - a.previous)[0];
console.log(`\nheads ranked by induction score (attention spread evenly over the allowed keys would score ${(1 / (1.5 * half + 1)).toFixed(3)} on average):`);
console.log('  rank  head  induction  previous-token');
byInduction.forEach((h, i) => console.log(`  ${String(i + 1).padStart(4)}  ${h.name.padEnd(4)}  ${h.induction.toFixed(3).padStart(9)}  ${h.previous.toFixed(3).padStart(14)}`));
const others = scores.filter((h) => h.induction <= 0.5);
console.log(`top induction head: ${topInduction.name} (${topInduction.induction.toFixed(3)}); heads that are not induction heads score at most ${Math.max(...others.map((h) => h.induction)).toFixed(3)}`);
console.log(`top previous-token head: ${topPrevious.name} (${topPrevious.previous.toFixed(3)})`);

// 3. ablations
const baseline = repeatedHalfLoss(cache.tensor('logits'), rows, half);
const inductionHeads = scores.filter((h) => h.induction > 0.5);
const ablations = [
  { what: `zero-ablate the top induction head ${topInduction.name}`, loss: ablatedLoss(model, ids, rows, half, [topInduction]) },
  { what: `zero-ablate every induction head (${inductionHeads.map((h) => h.name).join(', ')})`, loss: ablatedLoss(model, ids, rows, half, inductionHeads) },
  { what: `zero-ablate the top previous-token head ${topPrevious.name}`, loss: ablatedLoss(model, ids, rows, half, [topPrevious]) },
];
console.log(`\nloss on the repeated half (nats; a uniform guess gives ${Math.log(vocab - 1).toFixed(2)}):`);
console.log(`  ${'no ablation'.padEnd(58)} ${baseline.toFixed(3)}`);
for (const a of ablations) console.log(`  ${a.what.padEnd(58)} ${a.loss.toFixed(3)}  (${(a.loss / baseline).toFixed(1)}x)`);

// 4. heatmaps of the two top induction heads and the top previous-token head, batch row 0
const shown = [...new Map([byInduction[0], byInduction[1], topPrevious].map((h) => [h.name, h])).values()];
const page = path.join(root, 'demo-output', 'induction-heads.html');
fs.mkdirSync(path.dirname(page), { recursive: true });
fs.writeFileSync(
  page,
  attentionPatternsPage(cache, {
    title: `Induction heads of ${path.basename(file)}`,
    heads: shown.map((h) => [h.layer, h.head]),
    tokens: rows[0].map((t, i) => (i === 0 ? 'BOS' : String(t))),
    note: heatmapNote({
      shown,
      half,
      note: `Repeated-half loss over ${batch} sequences: ${baseline.toFixed(3)} nats; with ${topInduction.name} zero-ablated ${ablations[0].loss.toFixed(3)}, with every induction head ablated ${ablations[1].loss.toFixed(3)}, with ${topPrevious.name} ablated ${ablations[2].loss.toFixed(3)}.`,
    }),
  }),
);
console.log(`\nheatmaps of ${shown.map((h) => h.name).join(', ')}: ${page}`);
cache.dispose();
ids.dispose();
