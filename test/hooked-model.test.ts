import { describe, expect, it } from 'vitest';
import { DisposedError, InvalidArgumentError, ShapeError, TensorIndexError, TokenPositionError, memoryStats, tensor, type Tensor, HookedModel } from '../lib/index';
import { decode, expectThrows, fixture, maxDiffToReference, reference, type EncodedTensor, type FamilyReference, type HookReference } from './helpers';

/** A reference as nested access: value(b, i, j, ...) over its shape. */
function at(ref: EncodedTensor) {
  const data = decode(ref);
  const strides = ref.shape.map((_, i) => ref.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  return (...index: number[]) => data[index.reduce((sum, v, i) => sum + v * strides[i]!, 0)]!;
}

function close(actual: Tensor, expected: number[], shape: number[]) {
  expect(actual.shape).toEqual(shape);
  const values = actual.toFloat32Array();
  let max = 0;
  expected.forEach((e, i) => (max = Math.max(max, Math.abs(values[i]! - e))));
  expect(max).toBeLessThan(1e-5);
}

const FAMILIES = [
  { family: 'gpt2', blocks: 'transformer.h', attn: 'attn', ln2: 'ln_2', final: 'transformer.ln_f', kvHeads: 4 },
  { family: 'llama', blocks: 'model.layers', attn: 'self_attn', ln2: 'post_attention_layernorm', final: 'model.norm', kvHeads: 2 },
] as const;

describe.each(FAMILIES)('HookedModel on the $family family', ({ family, blocks, attn, ln2, final, kvHeads }) => {
  const refs = reference<HookReference>(`${family}_hooks.json`);
  const ids = reference<FamilyReference>(`${family}.json`).cases[0]!.input_ids;
  const model = HookedModel.load(fixture(`${family}_scripted.pt`));
  const B = 2;
  const positions = [0, 3, 4, 5, 7];
  const specs = [0, [3, 6] as [number, number], 'last'];

  it('extracts residuals, attention in/out, MLP out and logits at the target positions', () => {
    const cache = model.forward(ids, {
      targetTokenPositions: specs,
      extractionConfig: { extractResidIn: true, extractResidMid: true, extractResidOut: true, extractAttnIn: true, extractAttnOut: true, extractMlpOut: true, saveInputIds: true },
    });
    const slice = (point: string, d: number) => {
      const ref = at(refs.points[point]!);
      return Array.from({ length: B }, (_, b) => positions.flatMap((p) => Array.from({ length: d }, (_, k) => ref(b, p, k)))).flat();
    };
    close(cache.tensor('resid_out_1'), slice(`${blocks}.1:output`, 32), [B, 5, 32]);
    close(cache.tensor('resid_in_0'), slice(`${blocks}.0:input`, 32), [B, 5, 32]);
    close(cache.tensor('resid_mid_1'), slice(`${blocks}.1.${ln2}:input`, 32), [B, 5, 32]);
    close(cache.tensor('attn_in_1'), slice(`${blocks}.1.${attn}:input`, 32), [B, 5, 32]);
    close(cache.tensor('attn_out_0'), slice(`${blocks}.0.${attn}:output`, 32), [B, 5, 32]);
    close(cache.tensor('mlp_out_1'), slice(`${blocks}.1.mlp:output`, 32), [B, 5, 32]);
    close(cache.tensor('logits'), slice('output', 64), [B, 5, 64]);
    // the true mid-block residual: resid_in + attn_out
    const residIn = slice(`${blocks}.1:input`, 32);
    const attnOut = slice(`${blocks}.1.${attn}:output`, 32);
    close(cache.tensor('resid_mid_1'), residIn.map((v, i) => v + attnOut[i]!), [B, 5, 32]);
    expect(Array.from(cache.tensor('input_ids').copyData() as BigInt64Array, Number)).toEqual(ids.flatMap((row) => positions.map((p) => row[p]!)));
    expect(cache.get('mapping_index')).toEqual({ '0': [0], '[3,6]': [1, 2, 3], last: [4] });
  });

  it('averages per position spec and over examples', () => {
    const cache = model.forward(ids, { targetTokenPositions: specs, extractionConfig: { extractResidOut: true, avg: true, avgOverExample: true } });
    const ref = at(refs.points[`${blocks}.0:output`]!);
    const expected = [[0], [3, 4, 5], [7]].flatMap((group) =>
      Array.from({ length: 32 }, (_, k) => group.reduce((s, p) => s + ref(0, p, k) + ref(1, p, k), 0) / (2 * group.length)),
    );
    close(cache.tensor('resid_out_0'), expected, [1, 3, 32]);
    expect(cache.get('mapping_index')).toEqual({ '0': [0], '[3,6]': [1], last: [2], info: 'avg' });
  });

  it('extracts queries, keys and values, whole and per head (kv head h // (H / Hkv))', () => {
    const cache = model.forward(ids, {
      targetTokenPositions: specs,
      extractionConfig: { extractQueries: true, extractKeys: true, extractHeadQueries: true, extractHeadKeys: true, extractHeadValues: true, saveLogits: false },
    });
    const perHead = (point: string, head: number) => {
      const ref = at(refs.points[point]!);
      return Array.from({ length: B }, (_, b) => positions.flatMap((p) => Array.from({ length: 8 }, (_, k) => ref(b, head, p, k)))).flat();
    };
    for (const head of [0, 3]) {
      const kv = Math.floor(head / (4 / kvHeads));
      close(cache.tensor(`head_queries_L1H${head}`), perHead(`${blocks}.1.${attn}:queries`, head), [B, 5, 8]);
      close(cache.tensor(`head_keys_L1H${head}`), perHead(`${blocks}.1.${attn}:keys`, kv), [B, 5, 8]);
      close(cache.tensor(`head_values_L0H${head}`), perHead(`${blocks}.0.${attn}:values`, kv), [B, 5, 8]);
    }
    expect(cache.tensor('queries_L0').shape).toEqual([B, 5, 32]);
    expect(cache.tensor('keys_L0').shape).toEqual([B, 5, kvHeads * 8]);
    const q = at(refs.points[`${blocks}.0.${attn}:queries`]!);
    expect(cache.tensor('queries_L0').toFloat32Array()[8 + 3]).toBeCloseTo(q(0, 1, 0, 3), 5);
    expect(cache.has('logits')).toBe(false);
  });

  it('extracts patterns at the target positions: rows sum to 1 over all keys and are causal', () => {
    const cache = model.forward(ids, { targetTokenPositions: ['all'], extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 1, head: 2 }] } });
    expect(cache.keys().filter((k) => k.startsWith('pattern_'))).toEqual(['pattern_L1H2']);
    const pattern = cache.tensor('pattern_L1H2');
    const values = pattern.toFloat32Array();
    const ref = at(refs.points[`${blocks}.1.${attn}:pattern`]!);
    for (let b = 0; b < B; b++) {
      for (let q = 0; q < 8; q++) {
        let sum = 0;
        for (let k = 0; k < 8; k++) {
          const v = values[(b * 8 + q) * 8 + k]!;
          sum += v;
          expect(Math.abs(v - ref(b, 2, q, k))).toBeLessThan(1e-6);
          if (k > q) expect(v).toBe(0);
        }
        expect(sum).toBeCloseTo(1, 5);
      }
    }
  });

  it('reduces pattern blocks as easyroutine defines mean, sum and baseline_ratio, for each row partition', () => {
    const targets: [number, number][] = [[0, 1], [2, 3]];
    const ref = at(refs.points[`${blocks}.1.${attn}:pattern`]!);
    const rowCases: [string, (number | [number, number] | string)[] | null, number[][]][] = [
      ['all', ['all'], [[0, 1, 2, 3, 4, 5, 6, 7]]],
      ['last', ['last'], [[7]]],
      ['two groups', [[0, 3], [3, 5]], [[0, 1, 2], [3, 4]]],
    ];
    for (const reduction of ['mean', 'sum', 'baseline_ratio'] as const) {
      for (const [, rows, rowGroups] of rowCases) {
        const cache = model.forward(ids, {
          targetTokenPositions: targets,
          extractionConfig: { extractAttnPattern: true, attnPatternAvg: reduction, attnPatternRowPositions: rows, attnHeads: [{ layer: 1, head: 1 }], saveLogits: false },
        });
        const colGroups = [[0], [2]];
        const expected: number[] = [];
        for (let b = 0; b < B; b++) {
          for (const g1 of rowGroups) {
            for (const g2 of colGroups) {
              const block = g1.flatMap((i) => g2.map((j) => ref(b, 1, i, j)));
              const mean = block.reduce((a, v) => a + v, 0) / block.length;
              if (reduction === 'sum') expected.push(block.reduce((a, v) => a + v, 0));
              else if (reduction === 'mean') expected.push(mean);
              else expected.push(mean / (g1.reduce((a, i) => a + g2.filter((j) => j <= i).length / (i + 1), 0) / g1.length));
            }
          }
        }
        close(cache.tensor('pattern_L1H1'), expected, [B, rowGroups.length, 2]);
      }
    }
    // without a row partition easyroutine slices the pattern at the flattened positions, whatever the method
    const plain = model.forward(ids, { targetTokenPositions: targets, extractionConfig: { extractAttnPattern: true, attnPatternAvg: 'mean', attnHeads: [{ layer: 1, head: 1 }] } });
    expect(plain.tensor('pattern_L1H1').shape).toEqual([B, 2, 2]);
  });

  it('computes the final norm statistics', () => {
    const cache = model.forward(ids, { targetTokenPositions: ['last'], extractionConfig: { extractLastLayernorm: true } });
    const stats = cache.get('last_layernorm') as Record<string, Tensor>;
    const ref = at(refs.points[`${final}:input`]!);
    const row = (b: number) => Array.from({ length: 32 }, (_, k) => ref(b, 7, k));
    const mean = [0, 1].map((b) => row(b).reduce((a, v) => a + v, 0) / 32);
    const second = [0, 1].map((b) => row(b).reduce((a, v) => a + v * v, 0) / 32);
    close(stats['mean']!, mean, [B, 1]);
    close(stats['second_moment']!, second, [B, 1]);
    close(stats['variance']!, second.map((s, b) => s - mean[b]! ** 2), [B, 1]);
  });
});

describe('HookedModel with easyroutine\'s own test setup (6 tokens, pivot 4)', () => {
  const model = HookedModel.load(fixture('gpt2_traced.pt'));
  const ids = [[5, 9, 3, 17, 2, 40]];

  it('inputs-partition-0 gives 4 positions; avg with two specs gives [1, 2, d]', () => {
    const cache = model.forward(ids, { targetTokenPositions: ['inputs-partition-0'], pivotPositions: [4], extractionConfig: { extractResidOut: true } });
    expect(cache.tensor('resid_out_0').shape).toEqual([1, 4, 32]);
    const avg = model.forward(ids, { targetTokenPositions: ['inputs-partition-0', 'last'], pivotPositions: [4], extractionConfig: { extractResidOut: true, avg: true } });
    expect(avg.tensor('resid_out_1').shape).toEqual([1, 2, 32]);
    // as in easyroutine, avg leaves the logits per position: equal to those without avg
    const plain = model.forward(ids, { targetTokenPositions: ['inputs-partition-0', 'last'], pivotPositions: [4] });
    expect(avg.tensor('logits').shape).toEqual(plain.tensor('logits').shape);
    expect(avg.tensor('logits').shape[1]).toBe(5);
    expect(Array.from(avg.tensor('logits').toFloat32Array())).toEqual(Array.from(plain.tensor('logits').toFloat32Array()));
    expect(avg.get('mapping_index')).toMatchObject({ info: 'avg' });
  });

  it('resolves positions per row of a padded batch', () => {
    const padded = model.forward([[0, 0, 5, 9, 3], [5, 9, 3, 0, 0]], { targetTokenPositions: ['last', 0], attentionMask: [[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]], extractionConfig: { saveInputIds: true } });
    expect(Array.from(padded.tensor('input_ids').copyData() as BigInt64Array, Number)).toEqual([3, 5, 3, 5]);
  });
});

describe('interventions', () => {
  const refs = reference<HookReference>('gpt2_hooks.json');
  const ids = reference<FamilyReference>('gpt2.json').cases[0]!.input_ids;
  const model = HookedModel.load(fixture('gpt2_traced.pt'));

  it('a columns ablation of pattern_L1H2 at inputs-partition-0 zeroes that block (easyroutine\'s test)', () => {
    const six = [[5, 9, 3, 17, 2, 40]];
    const cache = model.forward(six, {
      targetTokenPositions: ['inputs-partition-0'],
      pivotPositions: [4],
      extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 1, head: 2 }] },
      interventions: [{ type: 'columns', activation: 'pattern_L1H2', tokenPositions: ['inputs-partition-0'], patchingValues: 'ablation' }],
    });
    const block = cache.tensor('pattern_L1H2');
    expect(block.shape).toEqual([1, 4, 4]);
    expect(Array.from(block.toFloat32Array()).reduce((a, v) => a + v, 0)).toBe(0);
  });

  it('zeroing a head\'s whole pattern changes the logits exactly as the same edit in Python', () => {
    const cache = model.forward(ids, { interventions: [{ type: 'grid', activation: 'pattern_L1H2', tokenPositions: [['all'], ['all']], patchingValues: 'ablation' }] });
    const logits = cache.tensor('logits');
    const expected = decode(refs.edits['zero_head_1_2']!);
    close(logits, Array.from(expected), [2, 8, 64]);
  });

  it('patches a pattern with the selected cells or with the whole [query, key] matrix (easyroutine\'s form), the same edit', () => {
    const seq = 8;
    const full = tensor(Array.from({ length: seq }, (_, q) => Array.from({ length: seq }, (_, k) => (q * seq + k) / 100)));
    // rows 1, 3, 5 and keys [0, 2) of it
    const cells = full.index(tensor([1, 3, 5], { dtype: 'int64' }), { start: 0, stop: 2 }).contiguous();
    const grid = (patchingValues: Tensor) => model.forward(ids, {
      extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 1, head: 2 }] },
      interventions: [{ type: 'grid', activation: 'pattern_L1H2', tokenPositions: [[1, 3, 5], [[0, 2]]], patchingValues }],
    });
    const withCells = grid(cells);
    const withMatrix = grid(full);
    expect(Array.from(withMatrix.tensor('logits').toFloat32Array())).toEqual(Array.from(withCells.tensor('logits').toFloat32Array()));
    // the extracted pattern holds the patched cells
    const pattern = withMatrix.tensor('pattern_L1H2').index(0).toArray() as number[][];
    expect(pattern[3]![1]).toBeCloseTo(0.25, 6);
    expect(pattern[5]![0]).toBeCloseTo(0.4, 6);
    expectThrows(() => grid(tensor([[1, 2, 3]])), ShapeError, /give the selected cells \[3, 2\] or the whole \[query, key\] matrix \[8, 8\]/);
  });

  it('patching a residual position with another position\'s value matches Python, and extraction sees the value before the edit', () => {
    const source = model.forward(ids, { targetTokenPositions: [5], extractionConfig: { extractResidOut: true } }).tensor('resid_out_0');
    const cache = model.forward(ids, {
      targetTokenPositions: [3],
      extractionConfig: { extractResidOut: true },
      interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: [3], patchingValues: source }],
    });
    const all = model.forward(ids, { targetTokenPositions: ['all'], interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: [3], patchingValues: source }] });
    close(all.tensor('logits'), Array.from(decode(refs.edits['copy_resid_0_5_to_3']!)), [2, 8, 64]);
    const ref = at(refs.points['transformer.h.0:output']!);
    close(cache.tensor('resid_out_0'), [0, 1].flatMap((b) => Array.from({ length: 32 }, (_, k) => ref(b, 3, k))), [2, 1, 32]);
  });

  it('registered patches of q, k and v read back as all ones; clean removes them', () => {
    const ones = (n: number) => tensor(new Float32Array(2 * 8 * n).fill(1), [2, 8, n]);
    model.registerInterventions([
      { type: 'full', activation: 'queries_L0', tokenPositions: ['all'], patchingValues: ones(32) },
      { type: 'full', activation: 'keys_L0', tokenPositions: ['all'], patchingValues: ones(32) },
      { type: 'full', activation: 'values_L0', tokenPositions: ['all'], patchingValues: ones(32) },
    ]);
    try {
      const cache = model.forward(ids, { extractionConfig: { extractQueries: true, extractKeys: true, extractValues: true } });
      for (const key of ['queries_L0', 'keys_L0', 'values_L0']) expect(new Set(cache.tensor(key).toFloat32Array())).toEqual(new Set([1]));
      expect(new Set(cache.tensor('queries_L1').toFloat32Array()).size).toBeGreaterThan(1);
    } finally {
      model.cleanInterventions();
    }
    expect(new Set(model.forward(ids, { extractionConfig: { extractQueries: true } }).tensor('queries_L0').toFloat32Array()).size).toBeGreaterThan(1);
  });

  it('a pre-softmax ablation masks the key with -inf: rows still sum to 1 and give it no weight', () => {
    const cache = model.forward(ids, {
      extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 0, head: 1 }] },
      interventions: [{ type: 'columns_pre_softmax', activation: 'pattern_L0H1', tokenPositions: [0], patchingValues: 'ablation' }],
    });
    const pattern = cache.tensor('pattern_L0H1').toFloat32Array();
    const scores = at(refs.points['transformer.h.0.attn:scores']!);
    for (let b = 0; b < 2; b++) {
      for (let q = 1; q < 8; q++) {
        const row = Array.from({ length: 8 }, (_, k) => (k === 0 || k > q ? -Infinity : scores(b, 1, q, k)));
        const max = Math.max(...row);
        const exp = row.map((v) => Math.exp(v - max));
        const total = exp.reduce((a, v) => a + v, 0);
        for (let k = 0; k < 8; k++) expect(Math.abs(pattern[(b * 8 + q) * 8 + k]! - exp[k]! / total)).toBeLessThan(1e-5);
      }
    }
  });

  it('scales with multiplicationValue and renormalises with applySoftmax; per-head edits touch one head', () => {
    const cache = model.forward(ids, {
      extractionConfig: { extractAttnPattern: true, extractHeadValues: true, attnHeads: [{ layer: 1, head: 0 }, { layer: 1, head: 1 }] },
      interventions: [
        { type: 'rows', activation: 'pattern_L1H0', tokenPositions: ['all'], patchingValues: 'ablation', multiplicationValue: 3, applySoftmax: true },
        { type: 'full', activation: 'head_values_L1H1', tokenPositions: ['all'], patchingValues: 'ablation' },
      ],
    });
    const pattern = cache.tensor('pattern_L1H0').toFloat32Array();
    for (let r = 0; r < 16; r++) expect(Array.from(pattern.subarray(r * 8, r * 8 + 8)).reduce((a, v) => a + v, 0)).toBeCloseTo(1, 5);
    // head_values is extracted before the per-call edit of the same site
    expect(new Set(cache.tensor('head_values_L1H1').toFloat32Array()).size).toBeGreaterThan(1);
  });

  it('applySoftmax renormalises each row over the keys it may see: masked (future) keys stay 0, a row left with nothing stays 0', () => {
    // easyroutine re-applies softmax over all keys, which gives weight to the masked future keys
    const gpt2 = HookedModel.load(fixture('gpt2_traced.pt'));
    const cache = gpt2.forward([[1, 2, 3, 4, 5]], {
      extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 0, head: 0 }] },
      interventions: [{ type: 'columns', activation: 'pattern_L0H0', tokenPositions: [0], patchingValues: 'ablation', applySoftmax: true }],
    });
    const pattern = cache.tensor('pattern_L0H0').toFloat32Array();
    for (let q = 0; q < 5; q++) {
      const row = Array.from(pattern.subarray(q * 5, q * 5 + 5));
      expect(row[0]).toBe(0);
      for (let k = q + 1; k < 5; k++) expect(row[k]).toBe(0);
      expect(row.reduce((a, v) => a + v, 0)).toBeCloseTo(q === 0 ? 0 : 1, 5);
    }
    gpt2.dispose();
  });

  it('rejects bad interventions with typed errors', () => {
    expectThrows(() => model.forward(ids, { interventions: [{ type: 'full', activation: 'resid_out_9', tokenPositions: [0] }] }), InvalidArgumentError, /layer 9 does not exist/);
    expectThrows(() => model.forward(ids, { interventions: [{ type: 'full', activation: 'pattern_L0H0', tokenPositions: [0] }] }), InvalidArgumentError, /applies to patterns only|does not apply to a pattern/);
    expectThrows(() => model.forward(ids, { interventions: [{ type: 'columns', activation: 'resid_out_0', tokenPositions: [0] }] }), InvalidArgumentError, /applies to patterns only/);
    expectThrows(() => model.forward(ids, { interventions: [{ type: 'full', activation: 'nope', tokenPositions: [0] }] }), InvalidArgumentError, /unknown activation/);
    expectThrows(
      () => model.forward(ids, { interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: [3], patchingValues: tensor([1, 2]) }] }),
      ShapeError,
      /patch for 'transformer.h.0:output' is \[2\]; the selected cells are \[2, 1, 32\]/,
    );
    expectThrows(() => model.registerInterventions([{ type: 'full', activation: 'resid_out_0', tokenPositions: ['first'] }]), TokenPositionError, /unknown token position/);
    expect(model.interventions).toEqual([]);
  });
});

describe('per-head projections', () => {
  it.each(['gpt2', 'llama'])('head_out of every head sums to attn_out (%s), projected values use kv heads', (family) => {
    const model = HookedModel.load(fixture(`${family}_traced.pt`));
    const ids = reference<FamilyReference>(`${family}.json`).cases[0]!.input_ids;
    const cache = model.forward(ids, { targetTokenPositions: [2, 'last'], extractionConfig: { extractHeadOut: true, extractAttnOut: true, extractHeadValuesProjected: true, extractHeadValues: true } });
    const heads = [0, 1, 2, 3].map((h) => cache.tensor(`head_out_L1H${h}`).toFloat32Array());
    const sum = heads[0]!.map((_, i) => heads.reduce((a, h) => a + h[i]!, 0));
    close(cache.tensor('attn_out_1'), Array.from(sum), [2, 2, 32]);
    // projected value of head h = its (kv) head's values times the head's W_O block, plus b_O / H
    const parameters = model.model.parameters();
    const w = parameters.get(model.architecture.layers[0]!.outputProjection + '.weight')!.toFloat32Array();
    const b = parameters.get(model.architecture.layers[0]!.outputProjection + '.bias')?.toFloat32Array();
    expect(b !== undefined).toBe(family === 'gpt2');
    const v = cache.tensor('head_values_L0H3').toFloat32Array();
    const projected = cache.tensor('projected_value_L0H3').toFloat32Array();
    for (let row = 0; row < 4; row++) {
      for (let o = 0; o < 32; o += 7) {
        let expected = b ? b[o]! / 4 : 0;
        for (let k = 0; k < 8; k++) expected += v[row * 8 + k]! * w[o * 32 + 3 * 8 + k]!;
        expect(projected[row * 32 + o]).toBeCloseTo(expected, 4);
      }
    }
  });
});

describe('extraction over a dataset', () => {
  const model = HookedModel.load(fixture('gpt2_scripted.pt'));
  const rows = reference<FamilyReference>('gpt2.json').cases[0]!.input_ids;
  async function* batches() {
    for (const row of rows) yield { inputIds: [row] };
  }

  it('merges batches, reports progress and keeps a running mean of patterns', async () => {
    const progress: [number, number | undefined][] = [];
    const config = { extractResidOut: true, extractAvgAttnPattern: true, extractAttnPattern: true, attnHeads: [{ layer: 1, head: 0 }] };
    const merged = await model.extractCache(batches(), { targetTokenPositions: [[2, 6]], extractionConfig: config, onProgress: (d, t) => progress.push([d, t]), total: 2 });
    const whole = model.forward(rows, { targetTokenPositions: [[2, 6]], extractionConfig: config });
    expect(progress).toEqual([[1, 2], [2, 2]]);
    // an array of batches gives its length as the total; a generator gives none unless told
    const fromArray: [number, number | undefined][] = [];
    await model.extractCache(rows.map((row) => [row]), { extractionConfig: { extractResidOut: true }, onProgress: (d, t) => fromArray.push([d, t]) });
    expect(fromArray).toEqual([[1, 2], [2, 2]]);
    const fromGenerator: [number, number | undefined][] = [];
    await model.extractCache(batches(), { onProgress: (d, t) => fromGenerator.push([d, t]) });
    expect(fromGenerator).toEqual([[1, undefined], [2, undefined]]);
    close(merged.tensor('resid_out_1'), Array.from(whole.tensor('resid_out_1').toFloat32Array()), [2, 4, 32]);
    close(merged.tensor('pattern_L1H0'), Array.from(whole.tensor('pattern_L1H0').toFloat32Array()), [2, 4, 4]);
    const both = whole.tensor('pattern_L1H0').toFloat32Array();
    close(merged.tensor('avg_pattern_L1H0'), Array.from({ length: 16 }, (_, i) => (both[i]! + both[16 + i]!) / 2), [1, 4, 4]);
    expect(merged.metadata['batches']).toBe(2);
    // the same under easyroutine's name for it
    const python = await model.extractCache(batches(), { targetTokenPositions: [[2, 6]], extractionConfig: { avg_over_example: true, attn_heads: [{ layer: 1, head: 0 }], save_logits: false } });
    close(python.tensor('avg_pattern_L1H0'), Array.from(merged.tensor('avg_pattern_L1H0').toFloat32Array()), [1, 4, 4]);
  });

  it('stops when the signal aborts', async () => {
    const controller = new AbortController();
    const run = model.extractCache(batches(), { extractionConfig: { extractResidOut: true }, signal: controller.signal, onProgress: () => controller.abort(new Error('enough')) });
    await expect(run).rejects.toThrow('enough');
  });
});

describe('extraction kernels reused across forwards', () => {
  const model = HookedModel.load(fixture('gpt2_scripted.pt'));
  const rows = reference<FamilyReference>('gpt2.json').cases[0]!.input_ids;
  const config = { extractResidOut: true, extractAttnPattern: true, saveLogits: true };
  const options = { targetTokenPositions: [[1, 5] as [number, number], 'last'], extractionConfig: config };
  const whole = model.forward(rows, options);
  /** Row `b` of a [batch, ...] tensor as numbers. */
  const row = (t: Tensor, b: number) => {
    const values = Array.from(t.toFloat32Array());
    const size = values.length / t.shape[0]!;
    return values.slice(b * size, (b + 1) * size);
  };
  const expectRow = (cache: ReturnType<typeof model.forward>, b: number) => {
    for (const key of ['resid_out_0', 'resid_out_1', 'pattern_L0H1', 'pattern_L1H3', 'logits']) {
      const expected = whole.tensor(key);
      close(cache.tensor(key), row(expected, b), [1, ...expected.shape.slice(1)]);
    }
  };

  it('a later forward with the same config and positions starts from empty kernels', () => {
    for (let i = 0; i < 3; i++) {
      expectRow(model.forward([rows[0]!], options), 0);
      expectRow(model.forward([rows[1]!], options), 1);
    }
  });

  it('resolves positions again when the input length, the specs or the pivots change', () => {
    const ids = rows[0]!;
    const specs: (number | string)[] = ['last'];
    const pivotPositions = [3];
    const options = { targetTokenPositions: specs, pivotPositions, extractionConfig: { saveLogits: false } };
    // token_dict: the positions of row 0, as easyroutine; target_tokens: the tokens there
    const both = (cache: ReturnType<typeof model.forward>) => [cache.get('token_dict'), cache.get('target_tokens')];
    expect(both(model.forward([ids.slice(0, 5)], options))).toEqual([{ last: [4] }, { last: [ids[4]] }]);
    expect(both(model.forward([ids], options))).toEqual([{ last: [ids.length - 1] }, { last: [ids[ids.length - 1]] }]);
    specs[0] = 'inputs-partition-0'; // the same array, edited in place
    expect(both(model.forward([ids], options))).toEqual([{ 'inputs-partition-0': [0, 1, 2] }, { 'inputs-partition-0': ids.slice(0, 3) }]);
    pivotPositions[0] = 2;
    expect(both(model.forward([ids], options))).toEqual([{ 'inputs-partition-0': [0, 1] }, { 'inputs-partition-0': ids.slice(0, 2) }]);
    const mask = [[0, 0, 1, 1, 1, 1, 1, 1]];
    expect(both(model.forward([ids], { ...options, attentionMask: mask }))).toEqual([{ 'inputs-partition-0': [2, 3] }, { 'inputs-partition-0': ids.slice(2, 4) }]);
    mask[0] = [0, 1, 1, 1, 1, 1, 1, 1];
    expect(both(model.forward([ids], { ...options, attentionMask: mask }))).toEqual([{ 'inputs-partition-0': [1, 2] }, { 'inputs-partition-0': ids.slice(1, 3) }]);
  });

  it('concurrent forwards with one config each get their own kernels', async () => {
    const caches = await Promise.all([0, 1, 0, 1].map((b) => model.forwardAsync([rows[b]!], options)));
    caches.forEach((cache, i) => expectRow(cache, i % 2));
  });

  it('results stay native until read, and a disposed cache frees them at once, read or not', () => {
    const before = memoryStats().externalBytes;
    const cache = model.forward(rows, options);
    const extracted = cache.keys().filter((k) => cache.get(k) instanceof Object && cache.info(k) !== undefined);
    const bytes = extracted.reduce((sum, key) => sum + cache.tensor(key).numel * 4, 0);
    expect(memoryStats().externalBytes - before).toBeGreaterThanOrEqual(bytes);
    const read = cache.tensor('pattern_L0H1');
    const unread = cache.tensor('resid_out_1');
    expect(read.shape).toEqual(whole.tensor('pattern_L0H1').shape);
    expect(unread.disposed).toBe(false);
    cache.dispose();
    expect(memoryStats().externalBytes).toBeLessThanOrEqual(before);
    expect(read.disposed).toBe(true);
    expect(unread.disposed).toBe(true);
    expect(() => unread.shape).toThrow(DisposedError);
    unread.dispose();
  });

  it('results kept from one forward keep their values through the next ones, read or unread (a forward reuses the last one\'s results memory only once none is kept)', () => {
    const expected = (b: number) => row(whole.tensor('resid_out_1'), b);
    // the first forward's results are all unread while the second runs
    const first = model.forward([rows[0]!], options);
    const second = model.forward([rows[1]!], options);
    expectRow(first, 0);
    expectRow(second, 1);
    first.dispose();
    second.dispose();
    // one result read, the rest disposed: the next forward may reuse the rest's memory, not the read one's
    const third = model.forward([rows[0]!], options);
    const read = third.tensor('resid_out_1');
    close(read, expected(0), [1, ...whole.tensor('resid_out_1').shape.slice(1)]);
    third.delete('resid_out_1');
    third.dispose();
    expectRow(model.forward([rows[1]!], options), 1);
    close(read, expected(0), read.shape);
    // one result kept unread, the rest disposed: its memory is not reused
    const fourth = model.forward([rows[0]!], options);
    const unread = fourth.tensor('resid_out_1');
    fourth.delete('resid_out_1');
    fourth.dispose();
    expectRow(model.forward([rows[1]!], options), 1);
    close(unread, expected(0), read.shape);
    read.dispose();
    unread.dispose();
  });

  it('a failed forward leaves nothing behind for the next one', async () => {
    const fail = () => {
      throw new Error('hook failed');
    };
    expect(() => model.forward([rows[0]!], { ...options, hooks: { 'transformer.h.1:output': fail } })).toThrow('hook failed');
    await expect(model.forwardAsync([rows[0]!], { ...options, hooks: { 'transformer.h.1:output': fail } })).rejects.toThrow('hook failed');
    expectRow(model.forward([rows[1]!], options), 1);
  });
});

describe('keep_gradient', () => {
  it.each(['gpt2', 'llama'])('gives d logit / d input embeddings as PyTorch autograd does (%s)', (family) => {
    const refs = reference<HookReference & { gradients: { vocabulary_index: number; input_embeddings_gradients: EncodedTensor } }>(`${family}_hooks.json`);
    const ids = reference<FamilyReference>(`${family}.json`).cases[0]!.input_ids;
    const model = HookedModel.load(fixture(`${family}_scripted.pt`));
    const cache = model.forward(ids, { extractionConfig: { keepGradient: true } });
    const gradients = cache.tensor('input_embeddings_gradients');
    close(gradients, Array.from(decode(refs.gradients.input_embeddings_gradients)), [2, 8, 32]);
    expect(cache.tensor('input_embeddings').requiresGrad).toBe(true);
    const explicit = model.forward(ids, { extractionConfig: { keepGradient: true }, vocabularyIndex: refs.gradients.vocabulary_index });
    expect(Array.from(explicit.tensor('input_embeddings_gradients').toFloat32Array())).toEqual(Array.from(gradients.toFloat32Array()));
    // parameters accumulate nothing
    expect(model.model.parameters().get('lm_head.weight')!.requiresGrad).toBe(true);
  });
});

describe('predictions and string tokens', () => {
  const ref = reference<FamilyReference>('gpt2.json');
  const ids = ref.cases[0]!.input_ids;
  const tokenizer = { decode: (t: number[]) => t.map((id) => `<${id}>`).join('') };
  const model = HookedModel.load(fixture('gpt2_traced.pt'), { tokenizer });

  it('gives the top-k next tokens with softmax probabilities, per row', () => {
    const predictions = model.predict(ids, { k: 3 });
    expect(predictions).toHaveLength(2);
    for (let b = 0; b < 2; b++) {
      const last = ref.cases[0]!.logits.slice((b * 8 + 7) * 64, (b * 8 + 8) * 64);
      const max = Math.max(...last);
      const total = last.reduce((a, v) => a + Math.exp(v - max), 0);
      const best = last.map((v, i) => [v, i] as const).sort((x, y) => y[0] - x[0]).slice(0, 3);
      expect(predictions[b]!.map((p) => p.token)).toEqual(best.map(([, i]) => i));
      for (const [j, [v]] of best.entries()) expect(predictions[b]![j]!.probability).toBeCloseTo(Math.exp(v - max) / total, 5);
      expect(predictions[b]![0]!.text).toBe(`<${best[0]![1]}>`);
    }
    expectThrows(() => model.predict(ids, { k: 0 }), InvalidArgumentError, /k must be a positive integer/);
  });

  it('decodes tokens into target_tokens; token_dict holds the positions', () => {
    expect(model.toStringTokens([1, 2])).toEqual(['<1>', '<2>']);
    const cache = model.forward(ids, { targetTokenPositions: ['last', [0, 2]] });
    expect(cache.get('target_tokens')).toEqual({ last: [`<${ids[0]![7]}>`], '[0,2]': [`<${ids[0]![0]}>`, `<${ids[0]![1]}>`] });
    expect(cache.get('token_dict')).toEqual({ last: [7], '[0,2]': [0, 1] });
    expectThrows(() => HookedModel.load(fixture('gpt2_traced.pt')).toStringTokens([1]), InvalidArgumentError, /no tokenizer/);
  });

  it('makes token_dict, target_tokens and mapping_index when first read, from the ids and specs as they were at the forward', () => {
    const other = HookedModel.load(fixture('gpt2_traced.pt'));
    const decoded: number[] = [];
    other.tokenizer = { decode: (tokens: number[]) => (decoded.push(...tokens), `a${tokens[0]}`) };
    other.forward(ids, { targetTokenPositions: ['all'] }).dispose();
    expect(decoded).toEqual([]);
    const input = tensor(ids, { dtype: 'int64' });
    const specs: (string | [number, number])[] = [[1, 3], 'last'];
    using cache = other.forward(input, { targetTokenPositions: specs });
    (input.data as BigInt64Array).fill(0n);
    specs[0] = [0, 1];
    expect(cache.get('target_tokens')).toEqual({ '[1,3]': [`a${ids[0]![1]}`, `a${ids[0]![2]}`], last: [`a${ids[0]![7]}`] });
    expect(cache.get('token_dict')).toEqual({ '[1,3]': [1, 2], last: [7] });
    expect(cache.get('mapping_index')).toEqual({ '[1,3]': [0, 1], last: [2] });
    expect(cache.keys().slice(-4)).toEqual(['mapping_index', 'token_dict', 'target_tokens', 'metadata']);
    input.dispose();
    other.dispose();
  });

  it('target_tokens reads row 0 of any ids tensor: int32, and a row of a larger batch', () => {
    const other = HookedModel.load(fixture('gpt2_traced.pt'));
    const two = [ids[0]!, [...ids[0]!].reverse()];
    for (const input of [tensor(ids, { dtype: 'int32' }), tensor(two, { dtype: 'int64' })]) {
      using cache = other.forward(input, { targetTokenPositions: ['all'] });
      expect(cache.get('target_tokens')).toEqual({ all: ids[0] });
      input.dispose();
    }
    other.dispose();
  });

  it('decodes each token once per tokenizer, and again with a new tokenizer', () => {
    const other = HookedModel.load(fixture('gpt2_traced.pt'));
    const decoded: number[] = [];
    other.tokenizer = { decode: (tokens: number[]) => (decoded.push(...tokens), `a${tokens[0]}`) };
    for (let i = 0; i < 2; i++) {
      using cache = other.forward(ids, { targetTokenPositions: ['all'] });
      cache.get('target_tokens');
    }
    expect(decoded.sort((a, b) => a - b)).toEqual([...new Set(ids[0]!)].sort((a, b) => a - b));
    other.tokenizer = { decode: (tokens: number[]) => `b${tokens[0]}` };
    expect((other.forward(ids, { targetTokenPositions: ['last'] }).get('target_tokens') as Record<string, string[]>).last).toEqual([`b${ids[0]![7]}`]);
    expect(other.toStringTokens([3])).toEqual(['b3']);
    other.dispose();
  });
});

describe('keys and shapes for each ExtractionConfig flag (6 tokens, pivot 4, inputs-partition-0: 4 positions)', () => {
  const model = HookedModel.load(fixture('llama_traced.pt'));
  const ids = [[5, 9, 3, 17, 2, 40]];
  const base = { targetTokenPositions: ['inputs-partition-0'], pivotPositions: [4] };
  const L = 2;
  const H = 4;
  const cases: [string, string[], number[]][] = [
    ['extractEmbed', ['input_embeddings'], [1, 4, 32]],
    ['extractResidIn', ['resid_in_0', 'resid_in_1'], [1, 4, 32]],
    ['extractResidMid', ['resid_mid_0', 'resid_mid_1'], [1, 4, 32]],
    ['extractResidOut', ['resid_out_0', 'resid_out_1'], [1, 4, 32]],
    ['extractResidInPostLayernorm', ['resid_in_post_layernorm_0', 'resid_in_post_layernorm_1'], [1, 4, 32]],
    ['extractAttnIn', ['attn_in_0', 'attn_in_1'], [1, 4, 32]],
    ['extractAttnOut', ['attn_out_0', 'attn_out_1'], [1, 4, 32]],
    ['extractMlpOut', ['mlp_out_0', 'mlp_out_1'], [1, 4, 32]],
    ['extractQueries', ['queries_L0', 'queries_L1'], [1, 4, 32]],
    ['extractKeys', ['keys_L0', 'keys_L1'], [1, 4, 16]],
    ['extractValues', ['values_L0', 'values_L1'], [1, 4, 16]],
    ['extractHeadQueries', perHead('head_queries'), [1, 4, 8]],
    ['extractHeadKeys', perHead('head_keys'), [1, 4, 8]],
    ['extractHeadValues', perHead('head_values'), [1, 4, 8]],
    ['extractHeadOut', perHead('head_out'), [1, 4, 32]],
    ['extractHeadValuesProjected', perHead('projected_value'), [1, 4, 32]],
    ['extractHeadKeysProjected', perHead('projected_key'), [1, 4, 32]],
    ['extractHeadQueriesProjected', perHead('projected_query'), [1, 4, 32]],
    ['extractAttnPattern', perHead('pattern'), [1, 4, 4]],
    ['saveInputIds', ['input_ids'], [1, 4]],
  ];
  function perHead(name: string) {
    return Array.from({ length: L * H }, (_, i) => `${name}_L${Math.floor(i / H)}H${i % H}`);
  }
  it.each(cases)('%s', (flag, keys, shape) => {
    const cache = model.forward(ids, { ...base, extractionConfig: { [flag]: true, saveLogits: false } });
    expect(cache.keys().filter((k) => !['mapping_index', 'token_dict', 'target_tokens', 'metadata'].includes(k)).sort()).toEqual([...keys].sort());
    for (const key of keys) expect(cache.tensor(key).shape, key).toEqual(shape);
  });

  it('saveLogits, extractLastLayernorm, keepGradient, avg and avgOverExample', () => {
    expect(model.forward(ids, base).tensor('logits').shape).toEqual([1, 4, 64]);
    const stats = model.forward(ids, { ...base, extractionConfig: { extractLastLayernorm: true } }).get('last_layernorm') as Record<string, Tensor>;
    expect(Object.keys(stats).sort()).toEqual(['mean', 'second_moment', 'variance']);
    expect(stats['mean']!.shape).toEqual([1, 4]);
    // at the target positions, as in easyroutine: the whole-sequence gradient's rows at them
    const grads = model.forward(ids, { ...base, extractionConfig: { keepGradient: true, extractEmbed: true } });
    const whole = model.forward(ids, { extractionConfig: { keepGradient: true } });
    expect(grads.tensor('input_embeddings_gradients').shape).toEqual([1, 4, 32]);
    expect(grads.tensor('input_embeddings').shape).toEqual([1, 4, 32]);
    expect(grads.tensor('input_embeddings').requiresGrad).toBe(true);
    // inputs-partition-0 with pivot 4 is positions 0 to 3
    const wholeGradient = whole.tensor('input_embeddings_gradients');
    expect(wholeGradient.shape).toEqual([1, 6, 32]);
    expect(Array.from(grads.tensor('input_embeddings_gradients').toFloat32Array())).toEqual(Array.from(wholeGradient.toFloat32Array().subarray(0, 4 * 32)));
    expect(Array.from(grads.tensor('input_embeddings').toFloat32Array())).toEqual(Array.from(whole.tensor('input_embeddings').toFloat32Array().subarray(0, 4 * 32)));
    const avg = model.forward([ids[0]!, ids[0]!], { targetTokenPositions: ['inputs-partition-0', 'last'], pivotPositions: [4], extractionConfig: { extractResidOut: true, avg: true, avgOverExample: true } });
    expect(avg.tensor('resid_out_0').shape).toEqual([1, 2, 32]);
  });
});

describe('value-weighted average patterns (extract_avg_value)', () => {
  it('averages pattern x projected value norm over batches', async () => {
    const refs = reference<HookReference>('gpt2_hooks.json');
    const rows = reference<FamilyReference>('gpt2.json').cases[0]!.input_ids;
    const model = HookedModel.load(fixture('gpt2_traced.pt'));
    async function* batches() {
      for (const row of rows) yield [row];
    }
    const merged = await model.extractCache(batches(), {
      targetTokenPositions: [[5, 8]],
      extractionConfig: { extractAvgAttnPattern: true, extractHeadValuesProjected: true, attnHeads: [{ layer: 1, head: 3 }], saveLogits: false },
    });
    const w = model.model.parameters().get('transformer.h.1.attn.c_proj.weight')!.toFloat32Array();
    const v = at(refs.points['transformer.h.1.attn:values']!);
    const p = at(refs.points['transformer.h.1.attn:pattern']!);
    const norm = (b: number, k: number) => {
      let sum = 0;
      for (let o = 0; o < 32; o++) {
        let x = 0;
        for (let j = 0; j < 8; j++) x += v(b, 3, k, j) * w[o * 32 + 3 * 8 + j]!;
        sum += x * x;
      }
      return Math.sqrt(sum);
    };
    const expected = [5, 6, 7].flatMap((q) => Array.from({ length: 8 }, (_, k) => (p(0, 3, q, k) * norm(0, k) + p(1, 3, q, k) * norm(1, k)) / 2));
    close(merged.tensor('avg_value_weighted_pattern_L1H3'), expected, [1, 3, 8]);
    expect(merged.tensor('avg_pattern_L1H3').shape).toEqual([1, 3, 3]);
  });
});

describe('a model that returns logits for the last position only ([batch, 1, vocab])', () => {
  const ref = () => reference<{ input_ids: number[][]; logits: EncodedTensor }>('last_logits.json');

  it('saveLogits reads the target positions among those the output has', () => {
    const { input_ids: ids, logits } = ref();
    const hm = HookedModel.load(fixture('last_logits.pt'));
    const cache = hm.forward(ids, { targetTokenPositions: ['last'], extractionConfig: { extractResidOut: true } });
    expect(cache.tensor('logits').shape).toEqual([2, 1, 64]);
    expect(maxDiffToReference(cache.tensor('logits'), logits)).toBeLessThan(1e-5);
    expect(cache.tensor('resid_out_1').shape).toEqual([2, 1, 32]);
  });

  it('predict takes the last position', () => {
    const { input_ids: ids, logits } = ref();
    const hm = HookedModel.load(fixture('last_logits.pt'));
    const values = decode(logits);
    const top = (b: number) => {
      let best = 0;
      for (let v = 1; v < 64; v++) if (values[b * 64 + v]! > values[b * 64 + best]!) best = v;
      return best;
    };
    expect(hm.predict(ids, { k: 1 }).map((row) => row[0]!.token)).toEqual([top(0), top(1)]);
  });

  it('positions the output lacks are a typed error naming the case; the model stays usable', () => {
    const { input_ids: ids } = ref();
    const hm = HookedModel.load(fixture('last_logits.pt'));
    expectThrows(() => hm.forward(ids), TensorIndexError, /position 0 is not in 'output'/, /returns 1 of the input's 6 positions/, /saveLogits: false/);
    expect(hm.forward(ids, { extractionConfig: { saveLogits: false, extractResidOut: true } }).tensor('resid_out_0').shape).toEqual([2, 6, 32]);
  });
});

describe('bad input to HookedModel is a typed error naming the option', () => {
  const hm = () => HookedModel.load(fixture('gpt2_traced.pt'));

  it('targetTokenPositions that is not an array, empty inputs, a signal that is no AbortSignal', async () => {
    const model = hm();
    expectThrows(() => model.forward([[1, 2, 3]], { targetTokenPositions: 'last' as never }), InvalidArgumentError, /targetTokenPositions must be an array of token positions/, /got "last"/);
    expectThrows(() => model.forward([]), InvalidArgumentError, /at least one row/);
    expectThrows(() => model.forward([[]]), InvalidArgumentError, /every row at least one token/);
    await expect(model.forwardAsync([[1, 2]], { signal: {} as never })).rejects.toThrow(/HookedModel\.forwardAsync: options\.signal must be an AbortSignal/);
    await expect(model.extractCache([[[1, 2]]], { signal: 'stop' as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(model.model.forwardAsync(tensor([[1, 2]], { dtype: 'int64' }), { signal: 5 as never })).rejects.toThrow(/forwardAsync: options\.signal must be an AbortSignal/);
    // and the model is still usable
    expect(model.forward([[1, 2, 3]]).tensor('logits').shape).toEqual([1, 3, 64]);
  });
});

describe('selections that would extract nothing are typed errors', () => {
  it('attnHeads naming a layer or head the model lacks', () => {
    const hm = HookedModel.load(fixture('gpt2_traced.pt'));
    expectThrows(() => hm.forward([[1, 2, 3]], { extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 2, head: 0 }] } }), InvalidArgumentError, /attnHeads: layer 2 does not exist \(the model has 2 layers, 0 to 1\)/);
    expectThrows(() => hm.forward([[1, 2, 3]], { extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 1, head: 4 }] } }), InvalidArgumentError, /attnHeads: head 4 of layer 1 does not exist \(the model has 4 heads, 0 to 3\)/);
    expect(hm.forward([[1, 2, 3]], { extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 1, head: 3 }] } }).has('pattern_L1H3')).toBe(true);
  });

  it("'random-text-0' is refused like 'last-0'", () => {
    const hm = HookedModel.load(fixture('gpt2_traced.pt'));
    expectThrows(() => hm.forward([[1, 2, 3]], { targetTokenPositions: ['random-text-0'] }), TokenPositionError, /'random-text-0': the number of positions to draw must be at least 1/);
    expect(hm.forward([[1, 2, 3]], { targetTokenPositions: ['random-text-2'] }).tensor('logits').shape).toEqual([1, 2, 64]);
  });
});
