// easyroutine's LogitLens (cache keys through the final norm, its scale frozen to the recorded
// statistics, and the unembedding) against the same computation by hand in PyTorch on a LayerNorm
// and an RMSNorm family; the norm it measures against the module's own weights; and two identities:
// the last block read this way is the model's own logits, and the heads' lenses sum to attn_out's.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HookedModel, InvalidArgumentError, LogitLens } from '../lib/index';
import { decode, expectThrows, fixture, fixtures, type EncodedTensor } from './helpers';

interface LensReference {
  positions: number[];
  directions: [number, number][];
  input_ids: number[][];
  gpt2: FamilyLens;
  llama: FamilyLens;
}
interface FamilyLens {
  eps: number;
  centred: boolean;
  weight: number[];
  bias: number[] | null;
  layers: { logits: EncodedTensor; logit_diff: number[][] }[];
  model_logits: EncodedTensor;
}
const reference = JSON.parse(fs.readFileSync(fixture('lens.json'), 'utf8')) as LensReference;
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)));

describe.each([
  ['gpt2', 'gpt2_traced.pt'],
  ['llama', 'llama_scripted.pt'],
] as const)('LogitLens on the %s family (%s)', (family, file) => {
  const ref = reference[family];

  it('measures the final norm: gain, bias, epsilon, and whether it centres', () => {
    using model = HookedModel.load(fixture(file));
    const lens = LogitLens.fromModel(model);
    expect(lens.norm!.centred).toBe(ref.centred);
    expect(lens.norm!.epsilon / ref.eps).toBeCloseTo(1, 2);
    expect(maxDiff(lens.norm!.gain, ref.weight)).toBeLessThan(1e-4);
    expect(maxDiff(lens.norm!.bias, ref.bias ?? ref.weight.map(() => 0))).toBeLessThan(1e-5);
  });

  it("gives PyTorch's logits and logit differences at every layer; the last layer's are the model's", () => {
    using model = HookedModel.load(fixture(file));
    const cache = model.forward(reference.input_ids, { targetTokenPositions: reference.positions, extractionConfig: { extractResidOut: true, extractLastLayernorm: true } });
    const lens = LogitLens.fromModel(model);
    const logits = lens.compute(cache, 'resid_out_{i}');
    expect(Object.keys(logits)).toEqual(['logit_lens_resid_out_0', 'logit_lens_resid_out_1']);
    ref.layers.forEach((layer, i) => {
      const got = logits[`logit_lens_resid_out_${i}`]!;
      expect(got.shape).toEqual(layer.logits.shape);
      expect(maxDiff(got.toFloat32Array(), decode(layer.logits))).toBeLessThan(1e-4);
    });
    expect(maxDiff(logits['logit_lens_resid_out_1']!.toFloat32Array(), decode(ref.model_logits))).toBeLessThan(1e-4);
    const diffs = lens.compute(cache, 'resid_out_{i}', { tokenDirections: reference.directions });
    ref.layers.forEach((layer, i) => expect(maxDiff(diffs[`logit_lens_resid_out_${i}`]!.toFloat32Array(), layer.logit_diff.flat())).toBeLessThan(1e-4));
    // accuracy: per position, the fraction of rows where a's logit beats b's
    const accuracy = lens.compute(cache, 'resid_out_1', { tokenDirections: reference.directions, metric: 'accuracy' })['logit_lens_resid_out_1']!;
    const expected = reference.positions.map((_, p) => ref.layers[1]!.logit_diff.filter((row) => row[p]! > 0).length / 2);
    expect(Array.from(accuracy.toFloat32Array())).toEqual(expected);
    // softmax rows sum to 1
    const probabilities = lens.compute(cache, 'resid_out_0', { applySoftmax: true })['logit_lens_resid_out_0']!.toFloat32Array();
    expect(probabilities.subarray(0, 64).reduce((a, v) => a + v, 0)).toBeCloseTo(1, 5);
    cache.dispose();
  });

  it("the heads' lenses (each with the norm's bias over the heads) sum to attn_out's", () => {
    using model = HookedModel.load(fixture(file));
    const cache = model.forward(reference.input_ids, { targetTokenPositions: reference.positions, extractionConfig: { extractAttnOut: true, extractHeadOut: true, extractLastLayernorm: true } });
    const lens = LogitLens.fromModel(model);
    const heads = lens.compute(cache, 'head_out_L{i}H{j}', { tokenDirections: reference.directions });
    expect(Object.keys(heads)).toHaveLength(8);
    const whole = lens.compute(cache, 'attn_out_1', { tokenDirections: reference.directions })['logit_lens_attn_out_1']!.toFloat32Array();
    const summed = new Float32Array(whole.length);
    for (let h = 0; h < 4; h++) heads[`logit_lens_head_out_L1H${h}`]!.toFloat32Array().forEach((v, i) => (summed[i]! += v));
    expect(maxDiff(summed, whole)).toBeLessThan(1e-4);
    cache.dispose();
  });

  it('names what is missing', () => {
    using model = HookedModel.load(fixture(file));
    const lens = LogitLens.fromModel(model);
    const plain = model.forward(reference.input_ids, { targetTokenPositions: ['last'], extractionConfig: { extractResidOut: true } });
    expectThrows(() => lens.compute(plain, 'resid_out_{i}'), InvalidArgumentError, /no last_layernorm statistics; extract with extractionConfig: \{ extractLastLayernorm: true \}/);
    expectThrows(() => lens.compute(plain, 'mlp_out_{i}', { applyNorm: false }), InvalidArgumentError, /no keys match 'mlp_out_\{i\}'/);
    expectThrows(() => lens.compute(plain, 'resid_out_0', { applyNorm: false, tokenDirections: [1] }), InvalidArgumentError, /tokenDirections has 1 entries; the batch has 2 rows/);
    expectThrows(() => lens.compute(plain, 'resid_out_0', { applyNorm: false, tokenDirections: [1, 2], metric: 'accuracy' }), InvalidArgumentError, /the accuracy metric needs a \[a, b\] pair per row/);
    expectThrows(() => lens.compute(plain, 'resid_out_0', { applyNorm: false, tokenDirections: [[1, 99], [1, 2]] }), InvalidArgumentError, /token 99 is outside the vocabulary \(64\)/);
    plain.dispose();
  });
});

// the family fixtures exist where transformers made them (CI's pip torch leg requires them); their
// norm weights are redrawn (1 + 0.15 N(0, 1)), so gain w and Gemma's 1 + w differ
const hf = path.join(fixtures, 'hf');
const families = fs.existsSync(hf) ? fs.readdirSync(hf).filter((f) => f.endsWith('-eager.pt')).map((f) => f.replace(/-eager\.pt$/, '')) : [];
describe.skipIf(families.length === 0)('LogitLens on the exported Hugging Face families (needs transformers)', () => {
  it.each(families)('%s: the measured gain is the final norm weight (Gemma: 1 + weight), and the last layer reads as the logits', (family) => {
    using model = HookedModel.load(path.join(hf, `${family}-eager.pt`));
    const lens = LogitLens.fromModel(model);
    const finalNorm = model.architecture.finalNorm!;
    const weight = model.model.parameters().get(`${finalNorm}.weight`)!.toFloat32Array();
    const manifest = JSON.parse(model.model.extraFiles['easyroutine.json']!) as { architecture: { final_norm_kind: string }; config: Record<string, unknown> };
    const gemma = /Gemma/.test(manifest.architecture.final_norm_kind);
    expect(maxDiff(lens.norm!.gain, gemma ? weight.map((w) => 1 + w) : weight)).toBeLessThan(1e-3);
    expect(lens.norm!.centred).toBe(/LayerNorm/.test(manifest.architecture.final_norm_kind) && !/RMS/.test(manifest.architecture.final_norm_kind));
    const layers = model.architecture.layers.length;
    const cache = model.forward([[5, 17, 3, 42, 8]], { targetTokenPositions: [1, 'last'], extractionConfig: { extractResidOut: true, extractLastLayernorm: true } });
    const read = lens.compute(cache, `resid_out_${layers - 1}`)[`logit_lens_resid_out_${layers - 1}`]!;
    // Gemma 2 soft-caps its logits after the unembedding: compare where the cap is linear enough
    if (!manifest.config['final_logit_softcapping']) expect(maxDiff(read.toFloat32Array(), cache.tensor('logits').toFloat32Array())).toBeLessThan(2e-3);
    cache.dispose();
  });
});
