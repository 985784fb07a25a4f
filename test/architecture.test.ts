import { describe, expect, it } from 'vitest';
import { HookedModel, describeArchitecture, detectArchitecture, InvalidArgumentError, loadModel } from '../lib/index';
import { expectThrows, fixture } from './helpers';

describe.each(['traced', 'scripted'])('architecture mapping (%s)', (kind) => {
  it('maps the GPT-2 layout', () => {
    const mapping = detectArchitecture(loadModel(fixture(`gpt2_${kind}.pt`)));
    expect(mapping).toMatchObject({ nHeads: 4, nKvHeads: 4, dHead: 8, dModel: 32, finalNorm: 'transformer.ln_f', unembed: 'lm_head', embeddings: 'transformer.h.0:input' });
    expect(mapping.layers).toHaveLength(2);
    expect(mapping.layers[1]).toMatchObject({
      block: 'transformer.h.1',
      attention: 'transformer.h.1.attn',
      attentionNorm: 'transformer.h.1.ln_1',
      mlpNorm: 'transformer.h.1.ln_2',
      mlp: 'transformer.h.1.mlp',
      outputProjection: 'transformer.h.1.attn.c_proj',
    });
    expect(mapping.layers[1]!.points).toMatchObject({ resid_mid: 'transformer.h.1.ln_2:input', mlp_in: 'transformer.h.1.ln_2:output', mlp_out: 'transformer.h.1.mlp:output' });
  });

  it('maps the Llama layout with grouped-query attention', () => {
    const mapping = detectArchitecture(loadModel(fixture(`llama_${kind}.pt`)));
    expect(mapping).toMatchObject({ nHeads: 4, nKvHeads: 2, dHead: 8, dModel: 32, finalNorm: 'model.norm', unembed: 'lm_head' });
    expect(mapping.layers[0]).toMatchObject({
      attentionNorm: 'model.layers.0.input_layernorm',
      mlpNorm: 'model.layers.0.post_attention_layernorm',
      mlp: 'model.layers.0.mlp',
      outputProjection: 'model.layers.0.self_attn.o_proj',
    });
    expect(describeArchitecture(mapping)).toContain('2 layers, 4 heads (2 key/value), d_head 8, d_model 32');
  });
});

describe('architecture mapping', () => {
  it('takes overrides and explains what it cannot find', () => {
    const model = loadModel(fixture('gpt2_traced.pt'));
    expect(detectArchitecture(model, { finalNorm: null, nHeads: 2 })).toMatchObject({ finalNorm: null, nHeads: 2 });
    expectThrows(() => detectArchitecture(loadModel(fixture('tuple_traced.pt'))), InvalidArgumentError, /no attention found/);
  });
});

describe('a manifest written by the exporter (a plain nn.Module with a mapping given by hand)', () => {
  it('is read instead of detecting, and agrees with detection', () => {
    const model = loadModel(fixture('gpt2_manifest.pt'));
    expect(Object.keys(model.extraFiles)).toEqual(['easyroutine.json']);
    const fromManifest = new HookedModel(model).architecture;
    expect(fromManifest.source).toBe('manifest');
    expect(describeArchitecture(fromManifest)).toContain("architecture: from the file's manifest");
    const detected = detectArchitecture(model);
    expect(detected.source).toBe('detected');
    expect({ ...fromManifest, source: 'detected' }).toMatchObject({ ...detected, layers: detected.layers.map(({ outputProjectionLayout: _, ...l }) => l) });
    expect(new HookedModel(model, {}, undefined, { useManifest: false }).architecture.source).toBe('detected');
  });

  it('overrides still apply over the manifest', () => {
    const hm = HookedModel.load(fixture('gpt2_manifest.pt'), { architecture: { finalNorm: null } });
    expect(hm.architecture.finalNorm).toBeNull();
    expectThrows(() => hm.forward([[1, 2, 3]], { extractionConfig: { extractLastLayernorm: true } }), InvalidArgumentError, /final norm/);
  });

  it('a file without one has no extra files', () => {
    expect(loadModel(fixture('gpt2_traced.pt')).extraFiles).toEqual({});
  });
});

describe('describeArchitecture says what extraction can use', () => {
  it('an MLP module without an output point (a ModuleDict entry called through a lambda) is named as such', () => {
    const mapping = detectArchitecture(loadModel(fixture('gpt2_traced.pt')));
    const { mlp_out: _, ...points } = mapping.layers[0]!.points;
    const text = describeArchitecture({ ...mapping, layers: [{ ...mapping.layers[0]!, points }] });
    expect(text).toContain('mlp transformer.h.0.mlp (no output point: mlp_out cannot be extracted');
    expect(describeArchitecture({ ...mapping, layers: [{ ...mapping.layers[0]!, mlp: null, points }] })).toContain('mlp not found');
    expect(describeArchitecture({ ...mapping, layers: [{ ...mapping.layers[0]!, mlp: null }] })).toContain('mlp not one module (output: transformer.h.0.mlp:output)');
  });
});
