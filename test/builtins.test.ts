import { describe, expect, it } from 'vitest';
import { builtins, HookedModel, tensor, type Tensor } from '../lib/index';
import { fixture, maxDiffToReference, reference, type FamilyReference, type HookReference } from './helpers';

const refs = reference<HookReference>('gpt2_hooks.json');
const ids = tensor(reference<FamilyReference>('gpt2.json').cases[0]!.input_ids, { dtype: 'int64' });
const hooked = HookedModel.load(fixture('gpt2_traced.pt'));
const model = hooked.model;
const values = (t: Tensor) => Array.from(t.toFloat32Array());

describe('built-in hook factories', () => {
  it('mix with closures on one point and agree with HookedModel', () => {
    const save = builtins.saveResid({ positions: [[1, 4]] });
    const seen: number[][] = [];
    model.forward(ids, { hooks: { 'transformer.h.1:output': [save, (v) => void seen.push(v.shape)] } });
    const cache = hooked.forward(ids, { targetTokenPositions: [1, 4], extractionConfig: { extractResidOut: true } });
    expect(values(save.results() as Tensor)).toEqual(values(cache.tensor('resid_out_1')));
    expect(seen).toEqual([[2, 8, 32]]);
  });

  it('queryKeyValue, attentionPatternHead, computeStatistics and avgHook', () => {
    const qkv = builtins.queryKeyValue({ positions: [[0, 7]], perHead: true });
    const pattern = builtins.attentionPatternHead({ positions: [[0, 7]], groups: [2], heads: [3] });
    const stats = builtins.computeStatistics({ positions: [[7]] });
    const avg = builtins.avgHook({ segments: [[0, 1, 2], [3, 4, 5, 6, 7]] });
    model.forward(ids, { hooks: { 'transformer.h.0.attn:keys': qkv, 'transformer.h.0.attn:pattern': pattern, 'transformer.ln_f:input': stats, 'transformer.h.0:output': avg } });
    const cache = hooked.forward(ids, { targetTokenPositions: [0, 7], extractionConfig: { extractHeadKeys: true, extractAttnPattern: true } });
    expect(values((qkv.results() as Tensor[])[2]!)).toEqual(values(cache.tensor('head_keys_L0H2')));
    expect(values((pattern.results() as [number, Tensor][])[0]![1])).toEqual(values(cache.tensor('pattern_L0H3')));
    expect((stats.results() as Record<string, Tensor>)['mean']!.shape).toEqual([2, 1]);
    const ref = refs.points['transformer.h.0:output']!;
    const at = (b: number, p: number, k: number) => ref.values[(b * 8 + p) * 32 + k] as number;
    const expected = [0, 1].flatMap((b) => [[0, 1, 2], [3, 4, 5, 6, 7]].flatMap((seg) => Array.from({ length: 32 }, (_, k) => seg.reduce((s, p) => s + at(b, p, k), 0) / seg.length)));
    expect(maxDiffToReference(avg.results() as Tensor, { shape: [2, 2, 32], values: expected })).toBeLessThan(1e-5);
  });

  it('gather exactly the values a closure sees: token rows, heads, per head and patterns, strided or not, at every position and at some', () => {
    // the kernels copy plain memory on CPU: check them against index arithmetic on the value itself
    const seen: Record<string, { shape: number[]; values: Float32Array }> = {};
    const grab = (name: string) => (v: Tensor) => void (seen[name] = { shape: v.shape, values: v.toFloat32Array() });
    const points = { resid: 'transformer.h.0:output', keys: 'transformer.h.0.attn:keys', pattern: 'transformer.h.0.attn:pattern' };
    for (const positions of [[[0, 1, 2, 3, 4, 5, 6, 7]], [[6, 1, 3]], [[0, 7], [5, 2]]]) {
      const tokens = builtins.saveResid({ positions });
      const heads = builtins.queryKeyValue({ positions });
      const perHead = builtins.queryKeyValue({ positions, perHead: true });
      const pattern = builtins.attentionPatternHead({ positions, groups: [positions[0]!.length], heads: [3, 0] });
      model.forward(ids, { hooks: { [points.resid]: [tokens, grab('resid')], [points.keys]: [heads, perHead, grab('keys')], [points.pattern]: [pattern, grab('pattern')] } });
      const at = (b: number, i: number) => positions[b % positions.length]![i]!;
      const n = positions[0]!.length;
      const resid = seen['resid']!;
      const [B, T, D] = resid.shape as [number, number, number];
      const expectedTokens = Array.from({ length: B * n * D }, (_, x) => resid.values[(Math.floor(x / (n * D)) * T + at(Math.floor(x / (n * D)), Math.floor(x / D) % n)) * D + (x % D)]);
      expect(values(tokens.results() as Tensor)).toEqual(expectedTokens);
      const keys = seen['keys']!;
      const [, H, , dh] = keys.shape as [number, number, number, number];
      const key = (b: number, h: number, t: number, k: number) => keys.values[((b * H + h) * T + t) * dh + k]!;
      const expectedHeads: number[] = [];
      for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let h = 0; h < H; h++) for (let k = 0; k < dh; k++) expectedHeads.push(key(b, h, at(b, i), k));
      expect((heads.results() as Tensor).shape).toEqual([B, n, H * dh]);
      expect(values(heads.results() as Tensor)).toEqual(expectedHeads);
      (perHead.results() as Tensor[]).forEach((value, h) => {
        const expected: number[] = [];
        for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let k = 0; k < dh; k++) expected.push(key(b, h, at(b, i), k));
        expect(values(value)).toEqual(expected);
      });
      const probabilities = seen['pattern']!;
      const results = pattern.results() as [number, Tensor][];
      expect(results.map(([head]) => head)).toEqual([3, 0]);
      for (const [head, value] of results) {
        const expected: number[] = [];
        for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expected.push(probabilities.values[((b * H + head) * T + at(b, i)) * T + at(b, j)]!);
        expect(value.shape).toEqual([B, n, n]);
        expect(values(value)).toEqual(expected);
      }
    }
  });

  it('interventionHeads and multiplyPattern by 0 agree with the zero-head edit done in Python', () => {
    const viaHeads = model.forward(ids, { hooks: { 'transformer.h.1.attn:pattern': builtins.interventionHeads({ heads: [2] }) } }) as Tensor;
    const viaMultiply = model.forward(ids, { hooks: { 'transformer.h.1.attn:pattern': builtins.multiplyPattern({ head: 2, factor: 0 }) } }) as Tensor;
    expect(maxDiffToReference(viaHeads, refs.edits['zero_head_1_2']!)).toBeLessThan(1e-5);
    expect(values(viaMultiply)).toEqual(values(viaHeads));
  });

  it('ablatePosKeepSelfAttn zeroes a row but its last key; interventionResid patches', () => {
    const seen: Float32Array[] = [];
    model.forward(ids, {
      hooks: {
        'transformer.h.0.attn:pattern': [builtins.ablatePosKeepSelfAttn({ ablations: [{ head: 1, position: 7 }] })[0]!, (p) => void seen.push(p.toFloat32Array())],
      },
    });
    const row = (b: number) => Array.from(seen[0]!.subarray(((b * 4 + 1) * 8 + 7) * 8, ((b * 4 + 1) * 8 + 7) * 8 + 8));
    for (const b of [0, 1]) {
      expect(row(b).slice(0, 7)).toEqual([0, 0, 0, 0, 0, 0, 0]);
      expect(row(b)[7]).toBeGreaterThan(0);
    }
    const patched = builtins.interventionResid({ positions: [[3]], patch: tensor(new Float32Array(64).fill(0.5), [2, 1, 32]) });
    const check: number[] = [];
    model.forward(ids, { hooks: { 'transformer.h.0:output': [patched, (v) => void check.push((v.data as Float32Array)[3 * 32]!)] } });
    expect(check).toEqual([0.5]);
  });
});
