// Hugging Face model families through HookedModel, against PyTorch's own hooks on the original
// nn.Module (scripts/make_hf_fixtures.py): exports made by easyroutine's exporter, with and without
// its manifest, in eager and SDPA attention. The fixtures need torch and transformers; without them
// this file is skipped, unless EASYROUTINE_EXPECT_HF_FIXTURES=1 (CI's pip-torch leg) makes their
// absence a failure.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HookedModel, InvalidArgumentError, detectArchitecture, loadModel, runtimeInfo, tensor, type Tensor } from '../lib/index';
import { expectThrows, fixtures, maxDiffToReference, type EncodedTensor } from './helpers';

const directory = path.join(fixtures, 'hf');
const present = fs.existsSync(path.join(directory, 'STAMP'));
const expected = process.env.EASYROUTINE_EXPECT_HF_FIXTURES === '1';

interface FamilyFixture {
  family: string;
  hf_class: string;
  attention: 'eager' | 'sdpa';
  input_ids: number[][];
  ablated: [number, number];
  mapping: { layers: { parallel: boolean }[]; head_dim: number };
  padded: { input_ids: number[][]; attention_mask: number[][]; logits: EncodedTensor } & Record<string, EncodedTensor>;
  [key: string]: unknown;
}

const families: FamilyFixture[] = present
  ? fs
      .readdirSync(directory)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => JSON.parse(fs.readFileSync(path.join(directory, f), 'utf8')) as FamilyFixture)
  : [];

/** Every family the issue names must be there. */
const REQUIRED = ['bloom', 'falcon', 'gemma2', 'gpt2', 'gpt_neox', 'llama', 'mistral', 'opt', 'phi3', 'qwen2'];
const TOLERANCE = 2e-5;

it.runIf(expected)('the family fixtures are there (EASYROUTINE_EXPECT_HF_FIXTURES=1)', () => {
  expect(present, `no fixtures in ${directory}: run scripts/make-fixtures.sh with a Python that has torch and transformers`).toBe(true);
  expect([...new Set(families.map((f) => f.family))]).toEqual(REQUIRED);
  // both attention modes wherever transformers offers SDPA for the family (Bloom has none)
  expect(families.filter((f) => f.attention === 'sdpa').map((f) => f.family)).toEqual(REQUIRED.filter((f) => f !== 'bloom'));
});

// libtorch 1.13 lacks the fused attention op of SDPA exports (loading works, running does not)
const fusedAttention = Number(runtimeInfo().libtorchVersion.split('.')[0]) >= 2;
const cases = families.filter((f) => f.attention === 'eager' || fusedAttention).map((fixture) => [`${fixture.family} (${fixture.attention})`, fixture, fixture.attention] as const);

describe.skipIf(!present).each(cases)('%s', (_name, fixture, attention) => {
  const file = path.join(directory, `${fixture.family}-${attention}.pt`);
  const ref = (key: string) => fixture[key] as EncodedTensor;
  const layers = fixture.mapping.layers.length;
  const everything = {
    extractResidIn: true,
    extractResidMid: true,
    extractResidOut: true,
    extractAttnOut: true,
    extractMlpOut: true,
    extractAttnPattern: true,
    extractHeadOut: true,
  };

  it('reads the manifest and extracts every site as PyTorch hooks see it', () => {
    const hm = HookedModel.load(file);
    expect(hm.architecture.source).toBe('manifest');
    const config = fixture.mapping.layers.some((l) => l.parallel) ? { ...everything, extractResidMid: false } : everything;
    const cache = hm.forward(fixture.input_ids, { extractionConfig: config });
    for (let i = 0; i < layers; i++) {
      const parallel = fixture.mapping.layers[i]!.parallel;
      const keys = ['resid_in', 'resid_out', 'attn_out', 'mlp_out', ...(parallel ? [] : ['resid_mid'])];
      for (const key of keys) expect(maxDiffToReference(cache.tensor(`${key}_${i}`), ref(`${key}_${i}`)), `${key}_${i}`).toBeLessThan(TOLERANCE);
      // every head's pattern: [batch, heads, q, k] in the reference, [batch, q, k] per head here
      const pattern = ref(`pattern_${i}`);
      if (pattern === undefined) {
        // an SDPA module whose logits differ from its eager twin's gives no pattern reference
        expect(fixture.attention).toBe('sdpa');
        continue;
      }
      const [batch, heads, q, k] = pattern.shape as [number, number, number, number];
      for (let h = 0; h < heads; h++) {
        const values: number[] = [];
        for (let b = 0; b < batch; b++) values.push(...(pattern.values.slice((b * heads + h) * q * k, (b * heads + h + 1) * q * k) as number[]));
        expect(maxDiffToReference(cache.tensor(`pattern_L${i}H${h}`), { shape: [batch, q, k], values }), `pattern_L${i}H${h}`).toBeLessThan(TOLERANCE);
      }
      // the heads' outputs (each with its share of W_O's bias) add up to W_O's output
      const sum = Array.from({ length: heads }, (_, h) => cache.tensor(`head_out_L${i}H${h}`).toFloat32Array()).reduce((a, b) => a.map((v, j) => v + b[j]!));
      expect(maxDiffToReference(tensor(sum, ref(`o_proj_out_${i}`).shape), ref(`o_proj_out_${i}`)), `sum of head_out_L${i}`).toBeLessThan(TOLERANCE);
    }
    expect(maxDiffToReference(cache.tensor('logits'), ref('logits'))).toBeLessThan(TOLERANCE);
    hm.model.dispose();
  });

  it('a pattern ablation gives the logits of the ablated nn.Module', () => {
    const hm = HookedModel.load(file);
    const [layer, head] = fixture.ablated;
    const cache = hm.forward(fixture.input_ids, {
      interventions: [{ type: 'columns', activation: `pattern_L${layer}H${head}`, tokenPositions: ['all'], patchingValues: 'ablation' }],
    });
    expect(maxDiffToReference(cache.tensor('logits'), ref('ablated_logits'))).toBeLessThan(TOLERANCE);
    hm.model.dispose();
  });

  it('a left-padded batch: the mask reaches the export, real positions match, nothing is NaN', () => {
    const hm = HookedModel.load(file);
    const { input_ids: ids, attention_mask: mask } = fixture.padded;
    const seq = ids[0]!.length;
    const real = Math.min(...mask.map((row) => row.reduce((a, b) => a + b, 0)));
    // the last `real` tokens of each row, which are real in every row
    const targetTokenPositions = Array.from({ length: real }, (_, j) => j - real);
    const atReal = (t: Tensor, reference: EncodedTensor) => {
      const [batch, , width] = [reference.shape[0]!, reference.shape[1]!, reference.values.length / (reference.shape[0]! * reference.shape[1]!)];
      const values = t.toFloat32Array();
      expect(values.every((v) => !Number.isNaN(v))).toBe(true);
      expect(t.shape).toEqual([batch, real, ...reference.shape.slice(2)]);
      let max = 0;
      for (let b = 0; b < batch; b++) {
        for (let j = 0; j < real; j++) {
          for (let k = 0; k < width; k++) max = Math.max(max, Math.abs(values[(b * real + j) * width + k]! - (reference.values[(b * seq + seq - real + j) * width + k] as number)));
        }
      }
      return max;
    };
    const cache = hm.forward(ids, { attentionMask: mask, targetTokenPositions, extractionConfig: { extractResidOut: true, extractAttnPattern: true } });
    expect(atReal(cache.tensor('logits'), fixture.padded.logits)).toBeLessThan(TOLERANCE);
    for (let i = 0; i < layers; i++) expect(atReal(cache.tensor(`resid_out_${i}`), fixture.padded[`resid_out_${i}`]!), `resid_out_${i}`).toBeLessThan(TOLERANCE);
    // uneven rows without a mask are left-padded the same way
    const uneven = ids.map((row, b) => row.filter((_, s) => mask[b]![s] === 1));
    expect(atReal(hm.forward(uneven, { targetTokenPositions }).tensor('logits'), fixture.padded.logits)).toBeLessThan(TOLERANCE);
    hm.model.dispose();
  });

  it('without the manifest, detection by data flow finds the same sites', () => {
    const manifest = HookedModel.load(file).architecture;
    // detectArchitecture never reads the manifest
    const detected = detectArchitecture(loadModel(file));
    expect(detected.source).toBe('detected');
    for (let i = 0; i < layers; i++) {
      const d = detected.layers[i]!;
      const m = manifest.layers[i]!;
      expect({ attentionNorm: d.attentionNorm, mlpNorm: d.mlpNorm, resid_mid: d.points.resid_mid, mlp_out: d.points.mlp_out, outputProjection: d.outputProjection }).toEqual({
        attentionNorm: m.attentionNorm,
        mlpNorm: m.mlpNorm,
        resid_mid: m.points.resid_mid,
        mlp_out: m.points.mlp_out,
        outputProjection: m.outputProjection,
      });
    }
    expect(detected.finalNorm).toBe(manifest.finalNorm);
    expect([detected.nHeads, detected.nKvHeads, detected.dHead]).toEqual([manifest.nHeads, manifest.nKvHeads, manifest.dHead]);
    // and what extraction gives with the detected mapping is PyTorch's
    const hm = HookedModel.load(file, { useManifest: false });
    expect(hm.architecture.source).toBe('detected');
    const parallel = fixture.mapping.layers[0]!.parallel;
    const cache = hm.forward(fixture.input_ids, { extractionConfig: { extractResidMid: !parallel, extractResidOut: true, extractMlpOut: true, extractHeadOut: true } });
    for (let i = 0; i < layers; i++) {
      if (!parallel) expect(maxDiffToReference(cache.tensor(`resid_mid_${i}`), ref(`resid_mid_${i}`)), `resid_mid_${i}`).toBeLessThan(TOLERANCE);
      expect(maxDiffToReference(cache.tensor(`mlp_out_${i}`), ref(`mlp_out_${i}`)), `mlp_out_${i}`).toBeLessThan(TOLERANCE);
      expect(maxDiffToReference(cache.tensor(`resid_out_${i}`), ref(`resid_out_${i}`)), `resid_out_${i}`).toBeLessThan(TOLERANCE);
    }
    hm.model.dispose();
  });

  it('a site the family lacks is a typed error naming it', () => {
    const hm = HookedModel.load(file);
    if (fixture.mapping.layers[0]!.parallel) {
      expectThrows(() => hm.forward(fixture.input_ids, { extractionConfig: { extractResidMid: true } }), InvalidArgumentError, /resid_mid/, /parallel/);
    } else {
      expect(hm.forward(fixture.input_ids, { extractionConfig: { extractResidMid: true } }).has('resid_mid_0')).toBe(true);
    }
    hm.model.dispose();
  });
});
