/**
 * Architecture mapping: where the semantic sites of a transformer (residual stream, attention, MLP,
 * final norm, unembedding) are among a model's hook points. This file holds what a mapping *is*,
 * however it was obtained (given by the user, read from a file, or guessed by `./detect`), and the
 * operations on a mapping that need no guessing.
 * @module
 */

/** The hook points and modules of one transformer block. */
export interface LayerSites {
  /** The block module, e.g. `transformer.h.3`. */
  block: string;
  /** The attention module, e.g. `transformer.h.3.attn`. */
  attention: string;
  /** The norm before attention (ln_1 / input_layernorm), when there is one. */
  attentionNorm: string | null;
  /** The norm before the MLP (ln_2 / post_attention_layernorm), when there is one. */
  mlpNorm: string | null;
  /** The MLP module, when found. */
  mlp: string | null;
  /** The attention's output projection (its weight is W_O), when found. */
  outputProjection: string | null;
  /**
   * How its weight is laid out: `out_in` (nn.Linear, `[d_model, heads * d_head]`) or `in_out`
   * (Hugging Face's Conv1D, GPT-2's `c_proj`). Default `out_in`.
   */
  outputProjectionLayout?: 'out_in' | 'in_out';
  /** Attention and MLP read the same residual (GPT-J, Falcon, GPT-NeoX): there is no resid_mid. */
  parallel?: boolean;
  /** Hook point names of the semantic sites of this layer (absent when the structure lacks them). */
  points: {
    /** The block's input: the residual stream before the layer. */
    resid_in: string;
    /** The block's output: the residual stream after the layer. */
    resid_out: string;
    /** The true mid-block residual, resid_in + attn_out: the input of the MLP's norm. */
    resid_mid?: string;
    /** The normalized MLP input (what easyroutine calls resid_mid). */
    mlp_in?: string;
    /** The attention module's input (after its norm). */
    attn_in: string;
    /** The attention module's output (after W_O). */
    attn_out: string;
    /** Queries `[batch, heads, seq, d_head]`, after RoPE where the model applies it. */
    queries: string;
    /** Keys `[batch, kv_heads, seq, d_head]`. */
    keys: string;
    /** Values `[batch, kv_heads, seq, d_head]`. */
    values: string;
    /** Attention scores before the softmax, `[batch, heads, q, k]`. */
    scores: string;
    /** The attention pattern after the softmax, `[batch, heads, q, k]`. */
    pattern: string;
    /** Pattern times V per head, before the heads are merged and projected. */
    head_output: string;
    /** The MLP's output. */
    mlp_out?: string;
  };
}

/** Where the semantic sites of a model are; what {@link detectArchitecture} returns. */
export interface ArchitectureMapping {
  /** The sites of each transformer block, in order. */
  layers: LayerSites[];
  /** Query heads, key/value heads and head size (from the shapes at the attention points). */
  nHeads: number;
  /** Key/value heads (fewer than nHeads under grouped-query attention). */
  nKvHeads: number;
  /** The size of one head. */
  dHead: number;
  /** The residual stream's width. */
  dModel: number;
  /** The final norm module, when found; its input is `last_layernorm`. */
  finalNorm: string | null;
  /** The unembedding module (logits), when found. */
  unembed: string | null;
  /** The hook point of the embeddings (the input of block 0). */
  embeddings: string;
  /** Where the mapping came from: the file's manifest (written by the exporter) or detection. */
  source?: 'manifest' | 'detected';
}

/** The modules of a layer that its hook points follow from. */
export interface LayerModules {
  block: string;
  attention: string;
  mlpNorm: string | null;
  mlp: string | null;
  /** The module whose output is the MLP's, when the MLP is no module of its own (OPT: fc2). */
  mlpOutput?: string | null | undefined;
  parallel?: boolean | undefined;
  /**
   * The block's output that is the residual stream, when the block returns a tuple (`output.K`):
   * xLSTM's blocks return their states before it. Default `output`.
   */
  residualOutput?: string | null | undefined;
}

/**
 * The hook points of a layer's semantic sites; `names` holds the model's hook point names (a site
 * whose point the model lacks is left out).
 */
export function layerPoints({ block, attention, mlpNorm, mlp, mlpOutput, parallel, residualOutput }: LayerModules, names: ReadonlySet<string>): LayerSites['points'] {
  const point = (path: string | null, p: string) => (path === null || !names.has(`${path}:${p}`) ? undefined : `${path}:${p}`);
  // A module that returns a tuple in the trace has `output.K` points; its first tensor is what
  // Python's first output is (Bloom's block, an attention returning its weights too). A trace may
  // also drop the tuple Python returns (elements nothing reads), leaving `output`.
  const output = (path: string, element?: string | null) => point(path, element ?? 'output') ?? point(path, 'output') ?? point(path, 'output.0') ?? `${path}:${element ?? 'output'}`;
  // attention internals are named after the module whose code holds the softmax: the attention
  // module, or a child of it (BERT's attention.self)
  const internal = (kind: string) => {
    if (names.has(`${attention}:${kind}`)) return `${attention}:${kind}`;
    const inside = [...names].filter((n) => n.startsWith(`${attention}.`) && n.endsWith(`:${kind}`));
    return inside.length === 1 ? inside[0]! : `${attention}:${kind}`;
  };
  const mlpModule = mlp ?? mlpOutput ?? null;
  return {
    resid_in: `${block}:input`,
    resid_out: output(block, residualOutput),
    resid_mid: parallel ? undefined : point(mlpNorm, 'input'),
    // a traced norm whose input the block reuses returns (normed, input): its own result comes first
    mlp_in: point(mlpNorm, 'output') ?? point(mlpNorm, 'output.0'),
    attn_in: `${attention}:input`,
    attn_out: output(attention),
    queries: internal('queries'),
    keys: internal('keys'),
    values: internal('values'),
    scores: internal('scores'),
    pattern: internal('pattern'),
    head_output: internal('head_output'),
    mlp_out: mlpModule === null ? undefined : point(mlpModule, 'output') ?? point(mlpModule, 'output.0'),
  };
}

/** Overrides of {@link detectArchitecture}: any field replaces what detection found. */
export type ArchitectureOverrides = Partial<Omit<ArchitectureMapping, 'layers'>> & {
  /** Per layer, the sites to replace (by index; a shorter list leaves the later layers as found). */
  layers?: Partial<LayerSites>[];
};

/**
 * `mapping` with `overrides` applied: each given layer field replaces the one found for that layer,
 * each given top-level field the mapping's own.
 */
export function applyOverrides(mapping: ArchitectureMapping, overrides: ArchitectureOverrides): ArchitectureMapping {
  const { layers, ...rest } = overrides;
  return { ...mapping, layers: mapping.layers.map((layer, i) => ({ ...layer, ...(layers?.[i] ?? {}) }) as LayerSites), ...rest };
}

/** A readable summary of a mapping, one line per fact. */
export function describeArchitecture(mapping: ArchitectureMapping): string {
  const lines = [
    ...(mapping.source ? [`architecture: ${mapping.source === 'manifest' ? "from the file's manifest" : 'detected from the graph'}`] : []),
    `${mapping.layers.length} layers, ${mapping.nHeads} heads (${mapping.nKvHeads} key/value), d_head ${mapping.dHead}, d_model ${mapping.dModel}`,
    `embeddings: ${mapping.embeddings}`,
  ];
  for (const [i, layer] of mapping.layers.entries()) {
    lines.push(
      `layer ${i}: block ${layer.block}, attention ${layer.attention} (W_O: ${layer.outputProjection ?? 'not found'}${layer.outputProjectionLayout === 'in_out' ? ', [in, out]' : ''}), ` +
        `norms ${layer.attentionNorm ?? '-'} / ${layer.mlpNorm ?? '-'}${layer.parallel ? ' (parallel attention and MLP)' : ''}, ` +
        `mlp ${describeMlp(layer)}`,
    );
  }
  lines.push(`final norm: ${mapping.finalNorm ?? 'not found'}`, `unembedding: ${mapping.unembed ?? 'not found'}`);
  return lines.join('\n');
}

/** What extraction can read of a layer's MLP, as describeArchitecture says it. */
function describeMlp(layer: LayerSites): string {
  if (layer.mlp === null) return layer.points.mlp_out ? `not one module (output: ${layer.points.mlp_out})` : 'not found';
  // e.g. a ModuleDict entry called through a lambda: the module exists but its call is not a boundary
  return layer.points.mlp_out ? layer.mlp : `${layer.mlp} (no output point: mlp_out cannot be extracted; pass layers[i].points.mlp_out in the overrides)`;
}
