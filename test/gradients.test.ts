// Gradients at every extracted key (keepGradient) against finite differences of the same logit,
// the weighted backward of grad({ gradOutput }), and attribution patching against real activation
// patching (the sweeps, themselves checked against PyTorch in patching.test.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HookedModel, InvalidArgumentError, ShapeError, attributionPatching, grad, headPatchingSweep, logitDifference, loadModel, residualPatchingSweep, tensor, type Tensor } from '../lib/index';
import { expectRejects, expectThrows, fixture, fixtures, maxDiffToReference, type EncodedTensor } from './helpers';

const reference = JSON.parse(fs.readFileSync(fixture('llama_patching.json'), 'utf8')) as { clean: number[][]; corrupted: number[][]; correct: number[]; wrong: number[] };

describe.each(['llama_traced.pt', 'gpt2_scripted.pt'])('keepGradient at every extracted key, on %s', (file) => {
  const model = HookedModel.load(fixture(file));
  afterAll(() => model.dispose());
  const ids = [reference.clean[0]!];
  const vocabularyIndex = 5;

  /** logits[0, -1, vocabularyIndex] with `delta` added at one element of `point`'s value. */
  const logitWith = (point: string, position: number, dim: number, delta: number) => {
    const logits = model.model.forward([tensor(ids, { dtype: 'int64' })], {
      hooks: {
        [point]: (x: Tensor) => {
          const out = x.clone();
          const d = x.shape[2]!;
          (out.data as Float32Array)[position * d + dim]! += delta;
          return out;
        },
      },
    }) as Tensor;
    return (logits.index(0, -1, vocabularyIndex).item() as number);
  };

  it('each key\'s gradient equals the central difference of the logit, at several elements', () => {
    const config = { keepGradient: true, extractResidIn: true, extractResidOut: true, extractAttnOut: true, extractMlpOut: true };
    const cache = model.forward(ids, { targetTokenPositions: [2, 'last'], extractionConfig: config, vocabularyIndex });
    const keys = ['resid_in_1', 'resid_out_0', 'attn_out_1', 'mlp_out_0'];
    const points: Record<string, string> = { resid_in_1: model.architecture.layers[1]!.points.resid_in, resid_out_0: model.architecture.layers[0]!.points.resid_out, attn_out_1: model.architecture.layers[1]!.points.attn_out, mlp_out_0: model.architecture.layers[0]!.points.mlp_out! };
    const epsilon = 1e-2;
    for (const key of keys) {
      const gradient = cache.tensor(`${key}_gradients`);
      expect(gradient.shape).toEqual(cache.tensor(key).shape);
      const d = gradient.shape[2]!;
      const g = gradient.toFloat32Array();
      // target index 0 is position 2, index 1 the last position
      for (const [index, position] of [[0, 2], [1, ids[0]!.length - 1]] as const) {
        for (const dim of [0, 7, d - 1]) {
          const numeric = (logitWith(points[key]!, position, dim, epsilon) - logitWith(points[key]!, position, dim, -epsilon)) / (2 * epsilon);
          expect(Math.abs(g[index * d + dim]! - numeric), `${key}[${position}, ${dim}]`).toBeLessThan(2e-3 + 1e-2 * Math.abs(numeric));
        }
      }
    }
    // the input embeddings' too, as before
    expect(cache.tensor('input_embeddings_gradients').shape).toEqual([1, 2, 32]);
    cache.dispose();
  });
});

describe('grad with gradOutput (torch.autograd.grad\'s grad_outputs)', () => {
  it('gives the gradient of a weighted sum of the output in one backward pass', () => {
    using model = loadModel(fixture('gpt2_traced.pt'));
    const ids = tensor([reference.clean[0]!], { dtype: 'int64' });
    let site: Tensor | undefined;
    const run = () => model.forward(ids, { grad: true, hooks: { 'transformer.h.0:output': (x: Tensor) => (site = x.view(x.shape)) } });
    const weights = new Float32Array(8 * 64);
    weights[7 * 64 + 3] = 2;
    weights[7 * 64 + 9] = -1;
    const logits = run();
    const [weighted] = grad(logits, [site!], { gradOutput: tensor(weights, [1, 8, 64]) });
    // the same from two one-element backward passes
    const a = grad(run().index(0, 7, 3), [site!])[0]!.toFloat32Array();
    const b = grad(run().index(0, 7, 9), [site!])[0]!.toFloat32Array();
    weighted!.toFloat32Array().forEach((v, i) => expect(v).toBeCloseTo(2 * a[i]! - b[i]!, 5));
    expectThrows(() => grad(run(), [site!], { gradOutput: tensor([1, 2]) }), ShapeError, /gradOutput is \[2\]; it must have the output's shape \[1, 8, 64\]/);
    expectThrows(() => grad(run(), [site!]), ShapeError, /or give options\.gradOutput/);
  });
});

describe.each(['llama_traced.pt', 'llama_scripted.pt'])('attribution patching on %s, against activation patching', (file) => {
  it('estimates the sweeps\' effects from one backward pass', async () => {
    using model = HookedModel.load(fixture(file));
    const options = { clean: reference.clean, corrupted: reference.corrupted, metric: logitDifference(reference.correct, reference.wrong) };
    const attribution = await attributionPatching(model, options);
    const resid = await residualPatchingSweep(model, options);
    const heads = await headPatchingSweep(model, options);
    expect(attribution.cleanMetric).toBeCloseTo(resid.cleanMetric, 6);
    expect(attribution.corruptedMetric).toBeCloseTo(resid.corruptedMetric, 6);
    expect(attribution.resid.values.shape).toEqual([2, 8]);
    expect(attribution.heads.values.shape).toEqual([2, 4]);
    const effects = (sweep: { values: Tensor; corruptedMetric: number }) => (sweep.values.toArray() as number[][]).flat().map((v) => v - sweep.corruptedMetric);
    const estimated = [...(attribution.resid.values.toArray() as number[][]).flat(), ...(attribution.heads.values.toArray() as number[][]).flat()];
    const actual = [...effects(resid), ...effects(heads)];
    // where the clean and corrupted activations are equal (layer 0 away from the changed tokens) both are exactly 0
    [0, 1, 3, 4, 6, 7].forEach((p) => {
      expect(estimated[p]).toBe(0);
      expect(Math.abs(actual[p]!)).toBeLessThan(1e-6);
    });
    // a first-order estimate: close where the change is small (the heads); over every site
    // correlated, though not equal where a token's whole embedding changes (layer 0, position 5,
    // where the first-order term even has the other sign: the known limit of the method)
    (attribution.heads.values.toArray() as number[][]).flat().forEach((v, i) => expect(Math.abs(v - effects(heads)[i]!)).toBeLessThan(0.005));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const [mx, my] = [mean(estimated), mean(actual)];
    const cov = estimated.reduce((a, x, i) => a + (x - mx) * (actual[i]! - my), 0);
    const correlation = cov / Math.sqrt(estimated.reduce((a, x) => a + (x - mx) ** 2, 0) * actual.reduce((a, y) => a + (y - my) ** 2, 0));
    expect(correlation).toBeGreaterThan(0.75);
  });

  it('needs a metric with a gradient, and inputs of one shape', async () => {
    using model = HookedModel.load(fixture(file));
    const metric = logitDifference(reference.correct, reference.wrong);
    await expectRejects(attributionPatching(model, { clean: reference.clean, corrupted: reference.corrupted, metric: { name: 'm', compute: () => 0 } }), InvalidArgumentError, /metric must be a PatchingMetric linear in the logits, with gradient/);
    await expectRejects(attributionPatching(model, { clean: reference.clean, corrupted: [reference.corrupted[0]!], metric }), InvalidArgumentError, /clean and corrupted differ in shape/);
    await expectRejects(attributionPatching(model, { clean: reference.clean, corrupted: reference.corrupted, metric, site: 'x' as never }), InvalidArgumentError, /site must be resid_in, resid_mid or resid_out/);
  });
});

// the family fixtures exist where transformers made them (CI's pip torch leg requires them)
const hfReference = path.join(fixtures, 'hf', 'llama-eager.json');
describe.skipIf(!fs.existsSync(hfReference))('gradients and attribution on an exported Hugging Face model (needs transformers)', () => {
  // read in the tests: a skipped describe still runs its body
  const read = () => (JSON.parse(fs.readFileSync(hfReference, 'utf8')) as { patching: { clean: number[][]; corrupted: number[][]; tokens: [number, number]; resid_in: number[][]; heads: number[][]; corrupted_metric: number; resid_out_0_gradient: EncodedTensor } }).patching;

  it("keepGradient's resid_out_0_gradients equal PyTorch's gradient on the nn.Module", () => {
    const patching = read();
    using model = HookedModel.load(path.join(fixtures, 'hf', 'llama-eager.pt'));
    const cache = model.forward([patching.clean[0]!], { extractionConfig: { keepGradient: true, extractResidOut: true }, vocabularyIndex: 5 });
    expect(maxDiffToReference(cache.tensor('resid_out_0_gradients'), patching.resid_out_0_gradient)).toBeLessThan(1e-4);
    cache.dispose();
  });

  it('attribution patching estimates the heads\' effects that PyTorch measured', async () => {
    const patching = read();
    using model = HookedModel.load(path.join(fixtures, 'hf', 'llama-eager.pt'));
    const attribution = await attributionPatching(model, { clean: patching.clean, corrupted: patching.corrupted, metric: logitDifference(patching.tokens[0], patching.tokens[1]) });
    expect(attribution.corruptedMetric).toBeCloseTo(patching.corrupted_metric, 4);
    const estimated = (attribution.heads.values.toArray() as number[][]).flat();
    const actual = patching.heads.flat().map((v) => v - patching.corrupted_metric);
    const sign = estimated.filter((v, i) => Math.abs(actual[i]!) > 0.05 && Math.sign(v) === Math.sign(actual[i]!)).length;
    expect(sign).toBe(actual.filter((v) => Math.abs(v) > 0.05).length);
    // layer 0 away from the changed position: both exactly 0
    (attribution.resid.values.toArray() as number[][])[0]!.forEach((v, p) => p !== 3 && expect(v).toBe(0));
  });
});
