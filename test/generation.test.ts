// HookedModel.generate against the same loop in PyTorch (greedy, a full forward per step, plain and
// with a head zeroed at every step), the sampler against the distribution it draws from, and the
// options: stop tokens, extraction, positions on the generated tokens, cancellation, bad input.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HookedModel, InvalidArgumentError, sampleToken, type Tensor } from '../lib/index';
import { seededRandom } from '../lib/easyroutine/seeded-random';
import { expectRejects, fixture, fixtures, root } from './helpers';

interface GenerationReference {
  generation: { prompt: number[][]; greedy: number[][]; ablated: number[][] };
}
const reference = (JSON.parse(fs.readFileSync(fixture('llama_patching.json'), 'utf8')) as GenerationReference).generation;

describe.each(['llama_traced.pt', 'llama_scripted.pt'])('generate on %s, against the loop in PyTorch', (file) => {
  const model = HookedModel.load(fixture(file));
  afterAll(() => model.dispose());

  it('greedy: the most likely token every step', async () => {
    const steps: number[] = [];
    const result = await model.generate(reference.prompt, { maxNewTokens: 6, onToken: (_, step) => steps.push(step) });
    expect(result.tokens).toEqual(reference.greedy);
    expect(result.sequences).toEqual(reference.prompt.map((p, b) => [...p, ...reference.greedy[b]!]));
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
    expect(result.text).toBeUndefined();
  });

  it('an intervention applies at every step (head 1 of layer 0 zeroed)', async () => {
    const interventions = [{ type: 'full' as const, activation: 'head_out_L0H1', tokenPositions: ['all' as const], patchingValues: 'ablation' as const }];
    const result = await model.generate(reference.prompt, { maxNewTokens: 6, interventions });
    expect(result.tokens).toEqual(reference.ablated);
    expect(reference.ablated).not.toEqual(reference.greedy);
    // registered interventions too
    model.registerInterventions(interventions);
    expect((await model.generate(reference.prompt, { maxNewTokens: 6 })).tokens).toEqual(reference.ablated);
    model.cleanInterventions();
  });
});

describe('generate: options', () => {
  const model = HookedModel.load(path.join(root, 'models', 'induction-2l.pt'));
  afterAll(() => model.dispose());

  it('continues a repeated sequence (the induction heads), decodes, and stops after a stop token', async () => {
    const greedy = await model.generate('w7 w9 w4 w1 w7', { maxNewTokens: 4 });
    expect(greedy.text).toEqual(['w9 w4 w1 w7']);
    const stopped = await model.generate('w7 w9 w4 w1 w7', { maxNewTokens: 10, stopTokens: [4] });
    expect(stopped.tokens).toEqual([[9, 4]]);
    // rows stop on their own; the others go on
    const two = await model.generate(['w7 w9 w4 w1 w7', 'w3 w5 w6 w3 w5'], { maxNewTokens: 4, stopTokens: [4] });
    expect(two.tokens).toEqual([[9, 4], [6, 3, 5, 6]]);
  });

  it('samples with a seed: the same seed, the same tokens; top-k 1 is greedy', async () => {
    const options = { maxNewTokens: 8, temperature: 3 };
    const a = await model.generate('w7 w9 w4', { ...options, seed: 1 });
    expect((await model.generate('w7 w9 w4', { ...options, seed: 1 })).tokens).toEqual(a.tokens);
    expect((await model.generate('w7 w9 w4', { ...options, seed: 2 })).tokens).not.toEqual(a.tokens);
    const greedy = await model.generate('w7 w9 w4', { maxNewTokens: 8 });
    expect((await model.generate('w7 w9 w4', { ...options, seed: 5, topK: 1 })).tokens).toEqual(greedy.tokens);
    expect((await model.generate('w7 w9 w4', { ...options, seed: 5, topP: 1e-6 })).tokens).toEqual(greedy.tokens);
  });

  it("resolves intervention positions on the sequence so far: 'last' is the newest token every step", async () => {
    const point = model.architecture.layers[0]!.points.resid_in;
    const zeroed: number[][] = [];
    const hooks = {
      [point]: (x: Tensor) => {
        const [, seq, d] = x.shape as [number, number, number];
        const values = x.toFloat32Array();
        zeroed.push(Array.from({ length: seq }, (_, p) => p).filter((p) => values.subarray(p * d, (p + 1) * d).every((v) => v === 0)));
      },
    };
    await model.generate('w7 w9 w4', { maxNewTokens: 3, hooks, interventions: [{ type: 'full', activation: 'resid_in_0', tokenPositions: ['last'], patchingValues: 'ablation' }] });
    // the prompt is BOS + 3 tokens: the newest position is 3, then 4, then 5
    expect(zeroed).toEqual([[3], [4], [5]]);
  });

  it('extracts from the finished sequences, and from every step when asked', async () => {
    const config = { extractResidOut: true };
    const result = await model.generate('w7 w9 w4', { maxNewTokens: 3, extractionConfig: config, targetTokenPositions: ['last'], extractEachStep: true });
    const alone = model.forward(result.sequences, { extractionConfig: config, targetTokenPositions: ['last'] });
    expect(Array.from(result.cache!.tensor('resid_out_1').toFloat32Array())).toEqual(Array.from(alone.tensor('resid_out_1').toFloat32Array()));
    expect(result.steps).toHaveLength(3);
    // step 2 ran on the prompt and the first generated token
    const second = model.forward([result.sequences[0]!.slice(0, 5)], { extractionConfig: config, targetTokenPositions: ['last'] });
    expect(Array.from(result.steps![1]!.tensor('resid_out_0').toFloat32Array())).toEqual(Array.from(second.tensor('resid_out_0').toFloat32Array()));
    for (const c of [result.cache!, ...result.steps!, alone, second]) c.dispose();
  });

  it('stops on its signal between steps, and refuses bad options by name', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    await expect(model.generate('w1 w2', { maxNewTokens: 50, signal: controller.signal, onToken: (_, step) => (steps.push(step), step === 2 && controller.abort(new Error('enough'))) })).rejects.toThrow('enough');
    expect(steps).toEqual([1, 2]);
    const bad: [object, RegExp][] = [
      [{ maxNewTokens: 0 }, /maxNewTokens must be a positive integer, got a number 0/],
      [{ temperature: -1 }, /temperature must be a finite number >= 0/],
      [{ topP: 1.5 }, /topP must be a number in \(0, 1\]/],
      [{ topK: 2.5 }, /topK must be a positive integer/],
      [{ seed: 'x' }, /seed must be an integer/],
      [{ stopTokens: [-1] }, /stopTokens must be an array of token ids/],
      [{ onToken: 3 }, /onToken must be a function/],
    ];
    for (const [options, message] of bad) await expectRejects(model.generate('w1', options as never), InvalidArgumentError, message);
    await expectRejects(model.generate([]), InvalidArgumentError, /give at least one prompt/);
    await expectRejects(model.generate(3 as never), InvalidArgumentError, /input must be a prompt, prompts, token id rows or a \[batch, seq\] tensor, got a number 3/);
    await expectRejects(model.generate([[]]), InvalidArgumentError, /at least one token/);
    expect((await model.generate('w1', { maxNewTokens: 1 })).tokens[0]).toHaveLength(1);
  });
});

describe('sampleToken', () => {
  const logits = [2, 1, 0.5, -1, 3];
  const softmax = (values: number[], t = 1) => {
    const e = values.map((v) => Math.exp(v / t));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  };
  const frequencies = (options: { temperature?: number; topK?: number; topP?: number }, draws = 40_000) => {
    const random = seededRandom(7);
    const counts = new Array<number>(logits.length).fill(0);
    for (let i = 0; i < draws; i++) counts[sampleToken(logits, options, random)]!++;
    return counts.map((c) => c / draws);
  };

  it('draws from softmax(logits / temperature), within sampling error', () => {
    const expected = softmax(logits, 1.5);
    frequencies({ temperature: 1.5 }).forEach((f, i) => expect(Math.abs(f - expected[i]!)).toBeLessThan(0.01));
  });

  it('top-k keeps the k most likely, renormalised; top-p the smallest nucleus reaching p', () => {
    const top2 = softmax([3, 2]);
    const f = frequencies({ temperature: 1, topK: 2 });
    expect(Math.abs(f[4]! - top2[0]!)).toBeLessThan(0.01);
    expect(Math.abs(f[0]! - top2[1]!)).toBeLessThan(0.01);
    expect(f[1]! + f[2]! + f[3]!).toBe(0);
    // p(3) = 0.61 and p(2) = 0.22 at temperature 1: p = 0.7 needs both, 0.5 only the first
    expect(frequencies({ temperature: 1, topP: 0.7 }).map((x) => x > 0)).toEqual([true, false, false, false, true]);
    expect(frequencies({ temperature: 1, topP: 0.5 })).toEqual([0, 0, 0, 0, 1]);
    expect(sampleToken(logits, {}, seededRandom(1))).toBe(4);
  });
});

// the family fixtures exist where transformers made them (CI's pip torch leg requires them)
const textReference = path.join(fixtures, 'hf', 'llama-eager.json');
describe.skipIf(!fs.existsSync(textReference))('generate on an exported Hugging Face model (needs transformers)', () => {
  it('from text prompts of unequal lengths: the loop of full forwards with the mask in PyTorch', async () => {
    const { text } = JSON.parse(fs.readFileSync(textReference, 'utf8')) as { text: { prompts: string[]; generated: number[][] } };
    using hm = HookedModel.load(path.join(fixtures, 'hf', 'llama-eager.pt'));
    const result = await hm.generate(text.prompts, { maxNewTokens: 4 });
    expect(result.tokens).toEqual(text.generated);
    expect(result.text).toHaveLength(text.prompts.length);
  });
});
