// The demo's induction-head study (examples/induction-study.mjs) on the bundled model, checked
// against the same study done in Python with PyTorch hooks on the original nn.Module
// (scripts/make_fixtures.py build_induction).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HookedModel, attentionPatternsPage, tensor } from '../lib/index';
// @ts-expect-error: a plain ES module without types
import * as study from '../examples/induction-study.mjs';
import { decode, maxAbsDiff, reference, root, type EncodedTensor } from './helpers';

interface InductionReference {
  input_ids: number[][];
  half: number;
  patterns: Record<string, EncodedTensor>;
  scores: Record<string, { induction: number; previous: number }>;
  losses: Record<string, number>;
  logits: EncodedTensor;
}

describe('the induction-head study on the bundled model', () => {
  const ref = reference<InductionReference>('induction.json');
  const model = HookedModel.load(path.join(root, 'models', 'induction-2l.pt'));
  const ids = tensor(ref.input_ids, { dtype: 'int64' });
  const cache = study.extractPatterns(model, ids);

  it('extracts every head\'s pattern and the logits as PyTorch computes them', () => {
    for (let layer = 0; layer < 2; layer++) {
      const expected = decode(ref.patterns[`L${layer}`]!); // [batch, heads, seq, seq]
      const [batch, heads, seq] = ref.patterns[`L${layer}`]!.shape as [number, number, number, number];
      for (let head = 0; head < heads; head++) {
        const ours = cache.tensor(`pattern_L${layer}H${head}`);
        expect(ours.shape).toEqual([batch, seq, seq]);
        const slice = Array.from({ length: batch }, (_, b) => Array.from(expected.slice((b * heads + head) * seq * seq, (b * heads + head + 1) * seq * seq))).flat();
        expect(maxAbsDiff(ours, slice)).toBeLessThan(1e-5);
      }
    }
    expect(maxAbsDiff(cache.tensor('logits'), decode(ref.logits))).toBeLessThan(1e-4);
  });

  it('scores each head as the Python reference does, and finds a previous-token head feeding induction heads', () => {
    const scores = study.headScores(cache, model.architecture, ref.half) as { name: string; layer: number; induction: number; previous: number }[];
    expect(scores).toHaveLength(8);
    for (const s of scores) {
      expect(s.induction).toBeCloseTo(ref.scores[s.name]!.induction, 5);
      expect(s.previous).toBeCloseTo(ref.scores[s.name]!.previous, 5);
    }
    const top = [...scores].sort((a, b) => b.induction - a.induction)[0]!;
    expect(top.layer).toBe(1);
    expect(top.induction).toBeGreaterThan(0.5);
    expect(Math.max(...scores.filter((s) => s.layer === 0).map((s) => s.previous))).toBeGreaterThan(0.5);
  });

  it('gives the repeated-half loss, with and without zero-ablated heads, of the same ablation in Python', () => {
    const loss = (heads: { layer: number; head: number }[]) => study.ablatedLoss(model, ids, ref.input_ids, ref.half, heads) as number;
    expect(study.repeatedHalfLoss(cache.tensor('logits'), ref.input_ids, ref.half)).toBeCloseTo(ref.losses['none']!, 4);
    expect(loss([{ layer: 1, head: 1 }])).toBeCloseTo(ref.losses['L1H1']!, 4);
    expect(loss([{ layer: 0, head: 0 }])).toBeCloseTo(ref.losses['L0H0']!, 4);
  });

  it("writes the demo's self-contained heatmap page with token labels on both axes", () => {
    const scores = study.headScores(cache, model.architecture, ref.half);
    const labels = ref.input_ids[0]!.map((t, i) => (i === 0 ? 'BOS' : String(t)));
    const shown = scores.slice(4, 6) as { layer: number; head: number; name: string }[];
    const note = study.heatmapNote({ shown, half: ref.half, note: 'n' }) as string;
    expect(note).toMatch(new RegExp(`${shown[0]!.name}: induction \\d\\.\\d{3}, previous-token \\d\\.\\d{3}`));
    const html = attentionPatternsPage(cache, { heads: shown.map((h) => [h.layer, h.head] as [number, number]), tokens: labels, note });
    expect(html).not.toMatch(/<script|src=|href=|@import/i);
    expect(html.match(/<svg [^>]*class="heatmap"/g)).toHaveLength(2);
    expect(html.match(/class="cell/g)).toHaveLength(2 * labels.length * labels.length);
    // every label twice per heatmap: once on each axis
    expect(html.match(/>0 BOS<\/text>/g)).toHaveLength(4);
    expect(fs.existsSync(path.join(root, 'models', 'induction-2l.json'))).toBe(true);
  });
});
