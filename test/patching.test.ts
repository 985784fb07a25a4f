// Activation-patching sweeps against the same sweeps done by hand with PyTorch hooks on the
// nn.Module (scripts/make_fixtures.py, build_patching): the residual sweep over layer x position
// and the head sweep over layer x head, with the logit difference as metric.
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { HookedModel, InvalidArgumentError, ShapeError, headPatchingSweep, logitDifference, logitLens, logitLensPage, patchingPage, residualPatchingSweep } from '../lib/index';
import { expectRejects, expectThrows, fixture } from './helpers';

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
