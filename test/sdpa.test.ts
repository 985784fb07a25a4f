import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, nativeHook, runtimeInfo, tensor, type Tensor } from '../lib/index';
import { fixtures, maxDiffToReference, numbers, type EncodedTensor } from './helpers';

// Fused attention exists from torch 2.0; make_fixtures.py writes these files only with torch >= 2.5
// (enable_gqa), i.e. in the libtorch 2.x leg of CI. libtorch 1.13 could not load them.
const available = fs.existsSync(path.join(fixtures, 'sdpa.json'));
const FUSED = /aten::scaled_dot_product_attention/g;

interface SdpaReference {
  input_ids: number[][];
  logits: EncodedTensor;
  points: Record<string, EncodedTensor>;
  edits: Record<string, EncodedTensor>;
}

describe.runIf(available).each(['traced', 'scripted'])('fused attention (%s)', (exportKind) => {
  const refs: SdpaReference = available ? JSON.parse(fs.readFileSync(path.join(fixtures, 'sdpa.json'), 'utf8')) : null;
  const model = available ? loadModel(path.join(fixtures, `sdpa_${exportKind}.pt`)) : null!;
  const ids = available ? tensor(refs.input_ids, { dtype: 'int64' }) : null!;

  it('runs on libtorch 2.x', () => {
    expect(runtimeInfo().libtorchVersion).toMatch(/^2\./);
  });

  it('lists the internals of every fused attention (causal, bool mask, additive mask, GQA)', () => {
    const names = model.hookPoints().map((p) => p.name);
    for (const name of Object.keys(refs.points)) expect(names, name).toContain(name);
  });

  it('stays fused unless a scores or pattern point inside it is requested', () => {
    expect(model.hookedGraph(['layers.0:queries', 'layers.1:keys', 'layers.3:values', 'layers.2:head_output']).graph.match(FUSED)).toHaveLength(4);
    const one = model.hookedGraph(['layers.2:pattern']).graph;
    expect(one.match(FUSED)).toHaveLength(3);
    expect(one).toContain('aten::softmax');
    expect(model.hookedGraph(['layers.0:scores', 'layers.1:pattern', 'layers.2:scores', 'layers.3:pattern']).graph.match(FUSED)).toBeNull();
  });

  it('decomposed attention matches the fused output and Python at every internal', () => {
    const fused = model.forward(ids) as Tensor;
    expect(maxDiffToReference(fused, refs.logits)).toBeLessThan(1e-5);
    const recorder = nativeHook('record');
    const names = Object.keys(refs.points);
    const decomposed = model.forward(ids, { hooks: Object.fromEntries(names.map((n) => [n, recorder])) }) as Tensor;
    expect(model.hookedGraph(names).graph.match(FUSED)).toBeNull();
    const fusedValues = fused.toFloat32Array();
    const decomposedValues = decomposed.toFloat32Array();
    let max = 0;
    for (let i = 0; i < fusedValues.length; i++) max = Math.max(max, Math.abs(fusedValues[i]! - decomposedValues[i]!));
    expect(max).toBeLessThan(1e-5);
    const seen = new Map((recorder.results() as [string, Tensor][]).map(([n, t]) => [n, t]));
    for (const name of names) expect(maxDiffToReference(seen.get(name)!, refs.points[name]!), name).toBeLessThan(1e-5);
  });

  it('queries, keys, values and head outputs are seen without decomposing', () => {
    const recorder = nativeHook('record');
    const names = Object.keys(refs.points).filter((n) => !/:(scores|pattern)$/.test(n));
    model.forward(ids, { hooks: Object.fromEntries(names.map((n) => [n, recorder])) });
    expect(model.hookedGraph(names).graph.match(FUSED)).toHaveLength(4);
    for (const [name, value] of recorder.results() as [string, Tensor][]) {
      expect(maxDiffToReference(value, refs.points[name]!), name).toBeLessThan(1e-5);
    }
  });

  it('an edit of a decomposed pattern changes the output as the same edit in Python', () => {
    const out = model.forward(ids, {
      hooks: {
        'layers.2:pattern': (p) => {
          const [b, h, q, k] = p.shape as [number, number, number, number];
          for (let bi = 0; bi < b; bi++) (p.data as Float32Array).fill(0, (bi * h + 1) * q * k, (bi * h + 2) * q * k);
        },
      },
    }) as Tensor;
    expect(maxDiffToReference(out, refs.edits['zero_head_2_1']!)).toBeLessThan(1e-5);
    expect(numbers(out.toFloat32Array())).not.toEqual(numbers((model.forward(ids) as Tensor).toFloat32Array()));
  });
});

describe.skipIf(available)('fused attention', () => {
  it('is tested in the libtorch 2.x leg (torch >= 2.5 writes the fixtures)', () => {
    expect(runtimeInfo().libtorchVersion).toMatch(/^1\./);
  });
});
