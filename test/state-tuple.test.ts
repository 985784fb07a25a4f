// Blocks that return states before the residual stream (as xLSTM's do; StateTupleGPT in
// scripts/reference_models.py, one state of the residual's own shape): the residual element is
// found by data flow, in the exporter's manifest and by detection, and extracted as PyTorch sees it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { HookedModel, detectArchitecture, loadModel } from '../lib/index';
import { fixtures, maxDiffToReference, type EncodedTensor } from './helpers';

const file = path.join(fixtures, 'state_tuple.pt');
const refs = JSON.parse(fs.readFileSync(path.join(fixtures, 'state_tuple.json'), 'utf8')) as Record<string, EncodedTensor> & { input_ids: number[][] };

it.each([
  ['the manifest', () => HookedModel.load(file)],
  ['detection', () => HookedModel.load(file, { useManifest: false })],
])('%s: resid_out is the element the next block reads, not the first', (_name, load) => {
  const hm = load();
  expect(hm.architecture.layers.map((l) => l.points.resid_out)).toEqual(['transformer.h.0:output.2', 'transformer.h.1:output.2']);
  expect(hm.architecture.finalNorm).toBe('transformer.ln_f');
  const cache = hm.forward(refs.input_ids, { extractionConfig: { extractResidIn: true, extractResidOut: true } });
  for (const key of ['resid_in_0', 'resid_out_0', 'resid_in_1', 'resid_out_1']) expect(maxDiffToReference(cache.tensor(key), refs[key]!), key).toBeLessThan(1e-5);
  expect(maxDiffToReference(cache.tensor('logits'), refs.logits)).toBeLessThan(1e-5);
  hm.model.dispose();
});

it("the manifest is strict JSON where the config holds an infinity (written as Python's 'inf')", () => {
  const model = loadModel(file);
  const manifest = JSON.parse(model.extraFiles['easyroutine.json']!) as { config: { clamp: unknown[] } };
  expect(manifest.config.clamp).toEqual([0, 'inf']);
  model.dispose();
});

it('detectArchitecture alone agrees', () => {
  const detected = detectArchitecture(loadModel(file));
  expect(detected.layers.map((l) => l.points.resid_out)).toEqual(['transformer.h.0:output.2', 'transformer.h.1:output.2']);
});
