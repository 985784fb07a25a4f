// Eager attention as other families write it (scripts/reference_models.py VariantAttention): sinks
// sliced off after the softmax, a masked fill between the softmax and V, bmm on [batch * heads, ...]
// with and without [batch, heads, ...] views around it, and einsum products. Each layer's sites are
// checked against the module's own computation, in the documented [batch, heads, ...] layout, and an
// edit of a pattern against the same edit in Python.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, nativeHook, tensor, type Tensor } from '../lib/index';
import { fixtures, maxDiffToReference, type EncodedTensor } from './helpers';

interface VariantReference {
  input_ids: number[][];
  logits: EncodedTensor;
  kinds: string[];
  offered: Record<string, string[]>;
  points: Record<string, EncodedTensor>;
  edits: Record<string, EncodedTensor>;
}

const refs: VariantReference = JSON.parse(fs.readFileSync(path.join(fixtures, 'attention_variants.json'), 'utf8'));
const KINDS = ['queries', 'keys', 'values', 'scores', 'pattern', 'head_output'];
const TOLERANCE = 1e-5;

describe.each(refs.kinds.map((kind, i) => [kind, i] as const))('attention written as %s', (_kind, layer) => {
  const model = loadModel(path.join(fixtures, 'attention_variants.pt'));
  const ids = tensor(refs.input_ids, { dtype: 'int64' });
  const module = `layers.${layer}`;
  const offered = refs.offered[module]!;

  it('offers exactly the sites its layout allows, one attention per layer', () => {
    const points = model.hookPoints().filter((p) => p.module === module && KINDS.includes(p.kind));
    expect(points.map((p) => p.kind).sort()).toEqual([...offered].sort());
    expect(points.map((p) => p.name).sort()).toEqual(offered.map((k) => `${module}:${k}`).sort());
  });

  it('every offered site is [batch, heads, ...] and equals the module', () => {
    const recorder = nativeHook('record');
    const names = offered.map((k) => `${module}:${k}`);
    const out = model.forward(ids, { hooks: Object.fromEntries(names.map((n) => [n, recorder])) }) as Tensor;
    expect(maxDiffToReference(out, refs.logits)).toBeLessThan(TOLERANCE);
    const seen = new Map(recorder.results() as [string, Tensor][]);
    expect([...seen.keys()].sort()).toEqual([...names].sort());
    for (const name of names) expect(maxDiffToReference(seen.get(name)!, refs.points[name]!), name).toBeLessThan(TOLERANCE);
  });

  it("an edit of the pattern is what multiplies V: zeroing head 1 gives Python's logits", () => {
    const out = model.forward(ids, {
      hooks: {
        [`${module}:pattern`]: (p) => {
          expect(p.shape.length).toBe(4);
          const [b, h, q, k] = p.shape as [number, number, number, number];
          const edited = p.toFloat32Array();
          for (let bi = 0; bi < b; bi++) edited.fill(0, (bi * h + 1) * q * k, (bi * h + 2) * q * k);
          return tensor(edited, p.shape);
        },
      },
    }) as Tensor;
    const edit = refs.edits[`zero_head_${layer}_1`]!;
    expect(maxDiffToReference(out, edit)).toBeLessThan(TOLERANCE);
    expect(maxDiffToReference(out, refs.logits)).toBeGreaterThan(1e-3);
  });
});
