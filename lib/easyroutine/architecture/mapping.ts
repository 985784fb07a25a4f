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
  /** Hook point names of the semantic sites of this layer (absent when the structure lacks them). */
  points: {
    resid_in: string;
    resid_out: string;
    /** The true mid-block residual, resid_in + attn_out: the input of the MLP's norm. */
    resid_mid?: string;
    /** The normalized MLP input (what easyroutine calls resid_mid). */
    mlp_in?: string;
    attn_in: string;
    attn_out: string;
    queries: string;
    keys: string;
    values: string;
    scores: string;
    pattern: string;
    head_output: string;
    mlp_out?: string;
  };
}

/** Where the semantic sites of a model are; what {@link detectArchitecture} returns. */
export interface ArchitectureMapping {
  layers: LayerSites[];
  /** Query heads, key/value heads and head size (from the shapes at the attention points). */
  nHeads: number;
  nKvHeads: number;
  dHead: number;
  dModel: number;
  /** The final norm module, when found; its input is `last_layernorm`. */
  finalNorm: string | null;
  /** The unembedding module (logits), when found. */
  unembed: string | null;
  /** The hook point of the embeddings (the input of block 0). */
  embeddings: string;
}

/** Overrides of {@link detectArchitecture}: any field replaces what detection found. */
export type ArchitectureOverrides = Partial<Omit<ArchitectureMapping, 'layers'>> & { layers?: Partial<LayerSites>[] };

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
    `${mapping.layers.length} layers, ${mapping.nHeads} heads (${mapping.nKvHeads} key/value), d_head ${mapping.dHead}, d_model ${mapping.dModel}`,
    `embeddings: ${mapping.embeddings}`,
  ];
  for (const [i, layer] of mapping.layers.entries()) {
    lines.push(
      `layer ${i}: block ${layer.block}, attention ${layer.attention} (W_O: ${layer.outputProjection ?? 'not found'}), ` +
        `norms ${layer.attentionNorm ?? '-'} / ${layer.mlpNorm ?? '-'}, mlp ${layer.mlp ?? 'not found'}`,
    );
  }
  lines.push(`final norm: ${mapping.finalNorm ?? 'not found'}`, `unembedding: ${mapping.unembed ?? 'not found'}`);
  return lines.join('\n');
}
