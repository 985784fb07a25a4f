// Activation-patching sweeps against the same sweeps done by hand with PyTorch hooks on the
// nn.Module (scripts/make_fixtures.py, build_patching): the residual sweep over layer x position
// and the head sweep over layer x head, with the logit difference as metric.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HookedModel, InvalidArgumentError, ShapeError, computePatching, headPatchingSweep, logitDifference, logitLens, logitLensPage, patchingPage, residualPatchingSweep } from '../lib/index';
import { expectRejects, expectThrows, fixture, fixtures } from './helpers';

interface PatchingReference {
  clean: number[][];
  corrupted: number[][];
  correct: number[];
  wrong: number[];
  clean_metric: number;
  corrupted_metric: number;
  resid_in: number[][];
  heads: number[][];
  lens: { tokens: number[][]; probabilities: number[][] };
  compute_patching: Record<string, number | number[] | { shape: number[]; values: number[] }> & { base_tokens: number[]; target_tokens: number[] };
}
const reference = JSON.parse(fs.readFileSync(fixture('llama_patching.json'), 'utf8')) as PatchingReference;

function maxDiff(actual: number[][], expected: number[][]): number {
  expect(actual.length).toBe(expected.length);
  return Math.max(...actual.flatMap((row, i) => row.map((v, j) => Math.abs(v - expected[i]![j]!))));
}

describe.each(['llama_traced.pt', 'llama_scripted.pt'])('patching sweeps on %s', (file) => {
  const model = HookedModel.load(fixture(file));
  afterAll(() => model.dispose());
  const metric = logitDifference(reference.correct, reference.wrong);
  const inputs = { clean: reference.clean, corrupted: reference.corrupted, metric };

  it("residual sweep (resid_in, layer x position) equals PyTorch's by hand", async () => {
    const progress: string[] = [];
    const sweep = await residualPatchingSweep(model, { ...inputs, onProgress: (done, total) => progress.push(`${done}/${total}`) });
    expect(sweep.values.shape).toEqual([2, 8]);
    expect(maxDiff(sweep.values.toArray() as number[][], reference.resid_in)).toBeLessThan(1e-5);
    expect(sweep.cleanMetric).toBeCloseTo(reference.clean_metric, 5);
    expect(sweep.corruptedMetric).toBeCloseTo(reference.corrupted_metric, 5);
    expect(progress).toHaveLength(16);
    expect(progress.at(-1)).toBe('16/16');
    expect(sweep).toMatchObject({ rowTitle: 'layer', columnTitle: 'position', metric: 'logit difference', rowLabels: ['0', '1'], columnLabels: ['0', '1', '2', '3', '4', '5', '6', '7'] });
    // at layer 0 only the positions where the inputs differ can change anything
    const layer0 = (sweep.values.toArray() as number[][])[0]!;
    [0, 1, 3, 4, 6, 7].forEach((p) => expect(layer0[p]).toBeCloseTo(sweep.corruptedMetric, 6));
    sweep.values.dispose();
  });

  it('residual sweep at resid_out of layer l equals the one at resid_in of layer l + 1', async () => {
    const outSweep = await residualPatchingSweep(model, { ...inputs, site: 'resid_out' });
    expect(maxDiff([(outSweep.values.toArray() as number[][])[0]!], [reference.resid_in[1]!])).toBeLessThan(1e-5);
    // patching the last block's output at the last position gives the clean logits there
    expect((outSweep.values.toArray() as number[][])[1]![7]).toBeCloseTo(reference.clean_metric, 5);
  });

  it("head sweep (each head's output at every position, layer x head) equals PyTorch's by hand", async () => {
    const sweep = await headPatchingSweep(model, inputs);
    expect(sweep.values.shape).toEqual([2, 4]);
    expect(maxDiff(sweep.values.toArray() as number[][], reference.heads)).toBeLessThan(1e-5);
    expect(sweep).toMatchObject({ columnTitle: 'head', columnLabels: ['0', '1', '2', '3'] });
    // the page draws it (the page tests check what is drawn)
    expect(patchingPage([sweep])).toMatch(/logit difference: layer × head/);
  });
});

describe.each(['llama_traced.pt', 'llama_scripted.pt'])('the logit lens on %s', (file) => {
  it("equals each block's output through PyTorch's final norm and unembedding", async () => {
    using model = HookedModel.load(fixture(file));
    const lens = await logitLens(model, reference.clean[0]!, { k: 3 });
    expect(lens.rowLabels).toEqual(['resid_out_0', 'resid_out_1']);
    expect(lens.columnLabels[2]).toBe(`2 ${reference.clean[0]![2]}`);
    expect(lens.top.map((layer) => layer.map((cell) => cell[0]!.token))).toEqual(reference.lens.tokens);
    lens.top.forEach((layer, l) => layer.forEach((cell, p) => expect(cell[0]!.probability).toBeCloseTo(reference.lens.probabilities[l]![p]!, 5)));
    expect(lens.top[0]![0]).toHaveLength(3);
    expect(lens.cells[1]![3]).toEqual({ token: String(reference.lens.tokens[1]![3]), probability: lens.top[1]![3]![0]!.probability });
    // the last block's output is what the model itself reads out
    const own = model.predict([reference.clean[0]!], { k: 1 })[0]![0]!;
    expect(lens.top[1]!.at(-1)![0]!.token).toBe(own.token);
    expect(lens.top[1]!.at(-1)![0]!.probability).toBeCloseTo(own.probability, 6);
    expect(logitLensPage(lens)).toContain('resid_out_1');
    await expect(logitLens(model, [[1, 2]] as never)).rejects.toThrow(/input must be one prompt \(a string\) or one row of token ids/);
    await expect(logitLens(model, [1, 2], { k: 0 })).rejects.toThrow(/k must be a positive integer/);
  });
});

describe.each(['llama_traced.pt', 'llama_scripted.pt'])('computePatching (easyroutine\'s compute_patching) on %s', (file) => {
  const ref = reference.compute_patching;
  const patchingQuery = [
    { patchingElem: '@2' as const, layersToPatch: [0], activationType: 'resid_in_{}' },
    { patchingElem: 'last' as const, layersToPatch: [1], activationType: 'head_out_L{}H1' },
    { patchingElem: 5, layersToPatch: [1], activationType: 'mlp_out_{}' },
  ];

  it('gives the patched logits, KL divergences and logit differences that PyTorch gives by hand', async () => {
    using model = HookedModel.load(fixture(file));
    const cache = await computePatching(model, { base: [reference.clean], target: [reference.corrupted], patchingQuery, baseDictionaryIdxs: [ref.base_tokens], targetDictionaryIdxs: [ref.target_tokens], extractionConfig: { extractResidOut: true } });
    for (const key of ['base_logits', 'target_clean_logits', 'target_patched_logits']) {
      const expected = ref[key] as { shape: number[]; values: number[] };
      expect(cache.tensor(key).shape).toEqual(expected.shape);
      expect(Math.max(...Array.from(cache.tensor(key).toFloat32Array()).map((v, i) => Math.abs(v - expected.values[i]!)))).toBeLessThan(1e-5);
    }
    for (const key of ['kl_clean|base', 'kl_patched|base', 'kl_patched|clean']) expect(cache.tensor(key).item()).toBeCloseTo(ref[key] as number, 6);
    expect(cache.tensor('kl_difference').item()).toBeCloseTo((ref['kl_patched|base'] as number) - (ref['kl_clean|base'] as number), 6);
    (cache.tensor('logit_diff_in_clean').toArray() as number[]).forEach((v, i) => expect(v).toBeCloseTo((ref.logit_diff_in_clean as number[])[i]!, 5));
    (cache.tensor('logit_diff_in_patched').toArray() as number[]).forEach((v, i) => expect(v).toBeCloseTo((ref.logit_diff_in_patched as number[])[i]!, 5));
    (cache.tensor('logit_diff_variation').toArray() as number[]).forEach((v, i) => expect(v).toBeCloseTo((ref.logit_diff_in_patched as number[])[i]! - (ref.logit_diff_in_clean as number[])[i]!, 5));
    // the patched run's extraction at its positions: 'last' and the patching positions
    expect(cache.get('mapping_index')).toEqual({ last: [0], '2': [1], '5': [2] });
    expect(cache.tensor('resid_out_1').shape).toEqual([2, 3, 32]);
    expect(cache.has('logits')).toBe(false);
    expect(cache.metadata).toMatchObject({ targetTokenPositions: ['last'] });
  });

  it('concatenates over pairs of batches, with progress', async () => {
    using model = HookedModel.load(fixture(file));
    const progress: number[] = [];
    const cache = await computePatching(model, {
      base: reference.clean.map((row) => [row]),
      target: reference.corrupted.map((row) => [row]),
      patchingQuery,
      onProgress: (done) => progress.push(done),
    });
    expect(progress).toEqual([1, 2]);
    expect(cache.tensor('kl_patched|clean').shape).toEqual([2]);
    const expected = ref.target_patched_logits as { values: number[] };
    expect(Math.max(...Array.from(cache.tensor('target_patched_logits').toFloat32Array()).map((v, i) => Math.abs(v - expected.values[i]!)))).toBeLessThan(1e-5);
    expect(cache.has('logit_diff_variation')).toBe(false);
  });

  it('names what is wrong with a query', async () => {
    using model = HookedModel.load(fixture(file));
    const run = (query: object, extra: object = {}) => computePatching(model, { base: [reference.clean], target: [reference.corrupted], patchingQuery: [query as never], ...extra });
    await expectRejects(run({ patchingElem: 'last', layersToPatch: [0], activationType: 'resid_in' }), InvalidArgumentError, /patchingQuery\[0\]: activationType must name the activation with \{\} for the layer/);
    await expectRejects(run({ patchingElem: 'last', layersToPatch: [7], activationType: 'resid_in_{}' }), InvalidArgumentError, /layersToPatch must be a non-empty array of layers in \[0, 2\)/);
    await expectRejects(run({ patchingElem: 'last', layersToPatch: [0], activationType: 'pattern_L{}H1' }), InvalidArgumentError, /unknown activationType 'pattern_L\{\}H1'/);
    await expectRejects(run({ patchingElem: 'last', layersToPatch: [0], activationType: 'head_out_L{}H9' }), InvalidArgumentError, /head 9 does not exist/);
    await expectRejects(run({ patchingElem: 'last', layersToPatch: [0], activationType: 'resid_in_{}' }, { baseDictionaryIdxs: [[1]] }), InvalidArgumentError, /give both baseDictionaryIdxs and targetDictionaryIdxs/);
    await expectRejects(computePatching(model, { base: [reference.clean], target: [], patchingQuery: [{ patchingElem: 'last', layersToPatch: [0], activationType: 'resid_in_{}' }] }), InvalidArgumentError, /1 base batches and 0 target batches/);
  });
});

describe('patching sweeps: bad input', () => {
  const model = HookedModel.load(fixture('llama_traced.pt'));
  afterAll(() => model.dispose());
  const metric = logitDifference(reference.correct, reference.wrong);

  it('names what is wrong, and the model stays usable', async () => {
    await expectRejects(residualPatchingSweep(model, { clean: reference.clean, corrupted: [[1, 2, 3]], metric }), ShapeError, /clean and corrupted differ in shape at 'model\.layers\.0:input' \(\[2, 8, 32\] and \[1, 3, 32\]\)/);
    await expectRejects(residualPatchingSweep(model, { clean: reference.clean, corrupted: reference.corrupted, metric: (() => 1) as never }), InvalidArgumentError, /metric must be a PatchingMetric/);
    await expectRejects(residualPatchingSweep(model, { clean: reference.clean, corrupted: reference.corrupted, metric, site: 'resid_pre' as never }), InvalidArgumentError, /site must be resid_in, resid_mid or resid_out, got a string "resid_pre"/);
    await expectRejects(headPatchingSweep(model, { clean: reference.clean, corrupted: reference.corrupted, metric: logitDifference([1, 2, 3], 4) }), InvalidArgumentError, /3 correct and 1 wrong ids for a batch of 2 rows/);
    expectThrows(() => logitDifference(-1, 2), InvalidArgumentError, /correct must be a token id or an array of them/);
    await expectRejects(headPatchingSweep(model, { clean: reference.clean, corrupted: reference.corrupted, metric: logitDifference(0, 999) }), InvalidArgumentError, /token id 999 is outside the vocabulary \(64\)/);
    const controller = new AbortController();
    const sweep = residualPatchingSweep(model, { clean: reference.clean, corrupted: reference.corrupted, metric, signal: controller.signal, onProgress: (done) => done === 3 && controller.abort(new Error('enough')) });
    await expect(sweep).rejects.toThrow('enough');
    expect(model.forward(reference.clean).tensor('logits').shape).toEqual([2, 8, 64]);
  });
});

// the family fixtures exist where transformers made them (CI's pip torch leg requires them)
const hfReference = path.join(fixtures, 'hf', 'llama-eager.json');
describe.skipIf(!fs.existsSync(hfReference))('patching on an exported Hugging Face model (needs transformers)', () => {
  // read in the tests: a skipped describe still runs its body
  const read = () => (JSON.parse(fs.readFileSync(hfReference, 'utf8')) as { patching: { clean: number[][]; corrupted: number[][]; tokens: [number, number]; clean_metric: number; corrupted_metric: number; resid_in: number[][]; heads: number[][] } }).patching;

  it("the residual and head sweeps equal PyTorch's by hand on the nn.Module", async () => {
    const patching = read();
    const options = { clean: patching.clean, corrupted: patching.corrupted, metric: logitDifference(patching.tokens[0], patching.tokens[1]) };
    using model = HookedModel.load(path.join(fixtures, 'hf', 'llama-eager.pt'));
    const resid = await residualPatchingSweep(model, options);
    const heads = await headPatchingSweep(model, options);
    expect(resid.cleanMetric).toBeCloseTo(patching.clean_metric, 4);
    expect(resid.corruptedMetric).toBeCloseTo(patching.corrupted_metric, 4);
    expect(maxDiff(resid.values.toArray() as number[][], patching.resid_in)).toBeLessThan(2e-4);
    expect(maxDiff(heads.values.toArray() as number[][], patching.heads)).toBeLessThan(2e-4);
  });

  it('computePatching of one residual site gives the sweep\'s value there', async () => {
    const patching = read();
    using model = HookedModel.load(path.join(fixtures, 'hf', 'llama-eager.pt'));
    const cache = await computePatching(model, { base: [patching.clean], target: [patching.corrupted], patchingQuery: [{ patchingElem: 3, layersToPatch: [0], activationType: 'resid_in_{}' }], baseDictionaryIdxs: [[patching.tokens[1]]], targetDictionaryIdxs: [[patching.tokens[0]]] });
    expect(cache.tensor('logit_diff_in_patched').item()).toBeCloseTo(patching.resid_in[0]![3]!, 4);
    expect(cache.tensor('logit_diff_in_clean').item()).toBeCloseTo(patching.corrupted_metric, 4);
    expect(cache.tensor('target_patched_logits').shape).toEqual([2, 64]);
  });
});
