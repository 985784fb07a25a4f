// String prompts: loadTokenizer over @huggingface/tokenizers, a tokenizer embedded in the archive,
// left padding with the tokenizer's pad id and the mask it implies, and the errors. The references
// are the same forward on the token ids and mask written out by hand, and, where transformers made
// the family fixtures, the ids, mask and logits Python's tokenizer and the nn.Module give.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HookedModel, InvalidArgumentError, MissingDependencyError, loadTokenizer, tensor, type Tensor, type Tokenizer } from '../lib/index';
import { decode, expectThrows, fixtures, root, type EncodedTensor } from './helpers';

// the bundled model's tokenizer: words w1..w62 for its ids, BOS 0 added, '<pad>' 63
const bundled = path.join(root, 'models', 'induction-2l.pt');
const wordTokenizer = fs.readFileSync(path.join(root, 'models', 'induction-2l-tokenizer.json'), 'utf8');
const wordConfig = fs.readFileSync(path.join(root, 'models', 'induction-2l-tokenizer_config.json'), 'utf8');
const BOS = 0;
const PAD = 63;

describe('loadTokenizer', () => {
  it("encodes as the file says (pre-tokenizer, BOS template), decodes, and reads the config's pad token", () => {
    const tokenizer = loadTokenizer(wordTokenizer, wordConfig);
    expect(tokenizer.encode('w5 w7  w9')).toEqual([BOS, 5, 7, 9]);
    expect(tokenizer.tokenize('w5 w7')).toEqual(['w5', 'w7']);
    expect(tokenizer.decode([5, 7])).toBe('w5 w7');
    expect(tokenizer.padTokenId).toBe(PAD);
    // without the config there is no pad token
    expect(loadTokenizer(JSON.parse(wordTokenizer) as object).padTokenId).toBeUndefined();
  });

  it('refuses what is not a tokenizer.json', () => {
    expectThrows(() => loadTokenizer('{'), InvalidArgumentError, /tokenizer\.json is not valid JSON/);
    expectThrows(() => loadTokenizer('[1]'), InvalidArgumentError, /must hold a JSON object/);
    expectThrows(() => loadTokenizer({ version: '1.0' }), InvalidArgumentError, /has no 'model' object/);
    expectThrows(() => loadTokenizer(42 as unknown as string), InvalidArgumentError, /JSON text or the parsed object, got a number 42/);
    expectThrows(() => loadTokenizer(wordTokenizer, 'nope'), InvalidArgumentError, /tokenizer_config\.json is not valid JSON/);
  });
});

describe('HookedModel with string prompts', () => {
  const embedded = HookedModel.load(bundled);
  const plain = HookedModel.load(path.join(root, 'models', 'tiny-gpt.pt'));
  afterAll(() => {
    embedded.dispose();
    plain.dispose();
  });

  it("reads the archive's tokenizer.json and tokenizer_config.json on first use", () => {
    expect(embedded.tokenizer?.padTokenId).toBe(PAD);
    expect(embedded.toStringTokens('w5 w7')).toEqual(['<bos>', 'w5', 'w7']);
    expect(embedded.toStringTokens([5, 7])).toEqual(['w5', 'w7']);
    expect(plain.tokenizer).toBeUndefined();
  });

  it('pads prompts of unequal lengths on the left with the pad id and masks them, as the same ids and mask given by hand', () => {
    const options = { targetTokenPositions: ['last' as const, -2], extractionConfig: { extractResidOut: true, saveInputIds: true } };
    const cache = embedded.forward(['w5 w7 w9', 'w3'], options);
    const ids = [[BOS, 5, 7, 9], [PAD, PAD, BOS, 3]];
    const mask = [[1, 1, 1, 1], [0, 0, 1, 1]];
    const byHand = embedded.forward(tensor(ids, { dtype: 'int64' }), { ...options, attentionMask: mask });
    expect(cache.tensor('input_ids').toArray()).toEqual([[9, 7], [3, BOS]]);
    for (const key of ['logits', 'resid_out_0', 'resid_out_1']) {
      expect(Array.from(cache.tensor(key).toFloat32Array())).toEqual(Array.from(byHand.tensor(key).toFloat32Array()));
    }
    // the pad id is the config's: the ids the embedding saw
    let seen: unknown;
    const padded = embedded.forward(['w5 w7 w9', 'w3'], { targetTokenPositions: ['last'], hooks: { 'transformer.wte:input': (ids) => void (seen = ids.toArray()) } });
    expect(seen).toEqual(ids);
    // row 0's tokens at the target positions are text
    expect(cache.get('target_tokens')).toEqual({ last: ['w9'], '-2': ['w7'] });
    expect(cache.get('token_dict')).toEqual({ last: [3], '-2': [2] });
    padded.dispose();
    cache.dispose();
    byHand.dispose();
  });

  it('takes one prompt, and text in predict and extractCache', async () => {
    const one = embedded.forward('w1 w2 w3 w1 w2', { targetTokenPositions: ['last'] });
    expect(one.tensor('logits').shape).toEqual([1, 1, 64]);
    const top = embedded.predict('w1 w2 w3 w1 w2', { k: 2 });
    expect(top[0]).toHaveLength(2);
    expect(top[0]![0]!.text).toBe(embedded.tokenizer!.decode([top[0]![0]!.token]));
    const logits = one.tensor('logits').toFloat32Array();
    expect(top[0]![0]!.token).toBe(logits.indexOf(Math.max(...logits)));
    const merged = await embedded.extractCache(['w1 w2 w3', ['w4 w5 w6', 'w7 w8 w9'], { inputIds: 'w10 w11 w12' }], { targetTokenPositions: ['last'] });
    expect(merged.tensor('logits').shape).toEqual([4, 1, 64]);
    const single = embedded.forward('w7 w8 w9', { targetTokenPositions: ['last'] });
    // a row alone and in a batch of two differ by the matmul's summation order only
    const alone = single.tensor('logits').toFloat32Array();
    merged.tensor('logits').index(2).toFloat32Array().forEach((v, i) => expect(v).toBeCloseTo(alone[i]!, 5));
    for (const c of [one, merged, single]) c.dispose();
  });

  it('says what is wrong with text it cannot use, and stays usable', () => {
    expectThrows(() => plain.forward('w1 w2'), InvalidArgumentError, /text needs a tokenizer, and this model has none/, /loadTokenizer/);
    expectThrows(() => embedded.forward(['w1 w2'], { attentionMask: [[1, 1, 1]] }), InvalidArgumentError, /attentionMask cannot be given with text prompts/);
    expectThrows(() => embedded.forward('w1 nope'), InvalidArgumentError, /no token id for token 2 of "w1 nope"/);
    const decodeOnly: Tokenizer = { decode: (ids) => ids.join(',') };
    const decoding = new HookedModel(embedded.model, {}, decodeOnly);
    expectThrows(() => decoding.forward('w1'), InvalidArgumentError, /the tokenizer has no encode\(text\)/);
    expectThrows(() => embedded.toStringTokens(5 as unknown as number[]), InvalidArgumentError, /expected an array of token ids or a string, got a number 5/);
    // a tokenizer given by hand wins over the embedded one
    const given = new HookedModel(embedded.model, {}, { decode: () => 'x', encode: () => [1, 2] });
    expect(given.forward('anything', { extractionConfig: { saveInputIds: true } }).tensor('input_ids').toArray()).toEqual([[1, 2]]);
    expect(embedded.forward('w1 w2').tensor('logits').shape).toEqual([1, 3, 64]);
  });

  it('without @huggingface/tokenizers: ids still work, text is a MissingDependencyError naming the package', () => {
    // a child in which the optional package cannot be resolved, as in an install without it
    const script = `
      const Module = require('node:module');
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (request === '@huggingface/tokenizers') { const e = new Error("Cannot find module '" + request + "'"); e.code = 'MODULE_NOT_FOUND'; throw e; }
        return resolve.call(this, request, ...rest);
      };
      const { HookedModel, MissingDependencyError } = require(${JSON.stringify(path.join(root, 'dist'))});
      const hm = HookedModel.load(${JSON.stringify(bundled)});
      const report = { tokenizer: hm.tokenizer === undefined, ids: hm.forward([[0, 5, 7]]).tensor('logits').shape };
      try { hm.forward('w5 w7'); } catch (e) { report.error = { name: e.name, code: e.code, isClass: e instanceof MissingDependencyError, message: e.message }; }
      console.log(JSON.stringify(report));
    `;
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    const report = JSON.parse(result.stdout) as { tokenizer: boolean; ids: number[]; error: { name: string; code: string; isClass: boolean; message: string } };
    expect(report.tokenizer).toBe(true);
    expect(report.ids).toEqual([1, 3, 64]);
    expect(report.error).toMatchObject({ name: 'MissingDependencyError', code: 'ERR_EASYROUTINE_MISSING_DEPENDENCY', isClass: true });
    expect(report.error.message).toMatch(/npm install @huggingface\/tokenizers/);
    expect(MissingDependencyError.name).toBe('MissingDependencyError');
  });
});

// the family fixtures exist where transformers made them (CI's pip torch leg requires them)
const textReference = path.join(fixtures, 'hf', 'llama-eager.json');
describe.skipIf(!fs.existsSync(textReference))('string prompts on an exported Hugging Face model (needs transformers)', () => {
  it("gives the ids, mask, token strings and logits of Python's tokenizer and the nn.Module", () => {
    const { text } = JSON.parse(fs.readFileSync(textReference, 'utf8')) as { text: { prompts: string[]; input_ids: number[][]; attention_mask: number[][]; tokens: string[][]; logits: EncodedTensor } };
    using hm = HookedModel.load(path.join(fixtures, 'hf', 'llama-eager.pt'));
    // the ids, mask and logits of the whole padded batch, as the model saw and gave them
    const seen: Record<string, unknown> = {};
    const hooks = {
      input: (x: Tensor) => void (seen.ids = x.toArray()),
      'input.attention_mask': (x: Tensor) => void (seen.mask = x.toArray()),
      output: (x: Tensor) => void (seen.logits = x.clone()),
    };
    const cache = hm.forward(text.prompts, { targetTokenPositions: ['last'], hooks });
    expect(seen.ids).toEqual(text.input_ids);
    expect(seen.mask).toEqual(text.attention_mask);
    text.prompts.forEach((prompt, i) => expect((hm.tokenizer as ReturnType<typeof loadTokenizer>).tokenize(prompt)).toEqual(text.tokens[i]!.slice(1)));
    // the logits at the real positions (padded ones are masked queries, not compared)
    const expected = decode(text.logits);
    const actual = (seen.logits as Tensor).toFloat32Array();
    const [batch, seq] = [text.input_ids.length, text.input_ids[0]!.length];
    const vocab = actual.length / (batch * seq);
    let worst = 0;
    for (let b = 0; b < batch; b++) {
      for (let s = 0; s < seq; s++) {
        if (text.attention_mask[b]![s] === 0) continue;
        for (let v = 0; v < vocab; v++) worst = Math.max(worst, Math.abs(actual[(b * seq + s) * vocab + v]! - expected[(b * seq + s) * vocab + v]!));
      }
    }
    expect(worst).toBeLessThan(2e-4);
    cache.dispose();
  });
});
