/**
 * easyroutine's hooks as hook factories: each returns native hooks (C++ kernels, no JS per call) to
 * put at hook points next to your own closures, e.g.
 * `model.forward(ids, { hooks: { 'transformer.h.3:output': [saveResid({ positions: [[5, 6]] }), myHook] } })`.
 * {@link HookedModel} builds the same hooks from an {@link ExtractionConfig}.
 *
 * Positions are given per batch row (`[[...row 0], [...row 1]]`; a single row serves every row) as
 * absolute indices; {@link resolveTokenPositions} turns token position specs into them. After the
 * forward, `results()` holds what an extraction hook collected.
 * @module
 */
import { InvalidArgumentError, describeValue } from '../core/errors';
import { nativeHook, type NativeHook } from '../core/hooks';
import type { Tensor } from '../core/tensor';

/** Positions per batch row (one row applies to every row). */
export type RowPositions = number[][];

/** How the extraction factories average what they gather. */
export interface Averaging {
  /** Average consecutive groups of this many positions (easyroutine's `avg`). */
  groups?: number[];
  /** Average over the batch too. */
  avgOverExample?: boolean;
}

/** save_resid_hook: the `[batch, seq, d]` value at the positions, `results()`: `[batch, n, d]`. */
export function saveResid(options: { positions: RowPositions } & Averaging): NativeHook {
  return nativeHook('positions', { ...options, layout: 'tokens' });
}

/** embed_hook: the embeddings at the positions (as {@link saveResid}). */
export const embedHook = saveResid;

/** avg_hook: the mean of each segment of positions, `results()`: `[batch, segments, d]`. */
export function avgHook(options: { segments: number[][] }): NativeHook {
  const positions = [options.segments.flat()];
  return nativeHook('positions', { positions, groups: options.segments.map((s) => s.length), layout: 'tokens' });
}

/**
 * query_key_value_hook on a queries/keys/values point (`[batch, heads, seq, d_head]`): all heads as
 * `[batch, n, heads * d_head]`, or `perHead` (`results()`: one `[batch, n, d_head]` per head).
 */
export function queryKeyValue(options: { positions: RowPositions; perHead?: boolean } & Averaging): NativeHook {
  const { perHead, ...rest } = options;
  return nativeHook('positions', { ...rest, layout: perHead ? 'per_head' : 'heads' });
}

/**
 * attention_pattern_head on a pattern point: per head the pattern at the positions, or with `rows`
 * (row partition) the blocks rows x column groups reduced by `reduction`. `results()`: `[head, tensor]` pairs.
 */
export function attentionPatternHead(options: {
  positions: RowPositions;
  groups: number[];
  rows?: RowPositions;
  rowGroups?: number[];
  heads?: number[];
  reduction?: 'none' | 'mean' | 'sum' | 'baseline_ratio';
  /** Left padding per row, for baseline_ratio's allowed keys. */
  offsets?: number[];
}): NativeHook {
  return nativeHook('pattern', { reduction: 'none', ...options });
}

/** avg_attention_pattern_head: the running mean over forwards of the batch-mean pattern at the positions. */
export function avgAttentionPatternHead(options: { positions: RowPositions; heads?: number[] }): NativeHook {
  return nativeHook('pattern', { ...options, groups: [options.positions[0]!.length], reduction: 'none', runningMean: true });
}

/** compute_statistics on a `[batch, seq, d]` point: `results()`: `{mean, variance, second_moment}`, each `[batch, n]`. */
export function computeStatistics(options: { positions: RowPositions }): NativeHook {
  return nativeHook('statistics', options);
}

/** input_embedding_hook with keep_gradient: the value becomes a leaf that requires grad (run the forward with `grad: true`). */
export function inputEmbeddingHook(): NativeHook {
  return nativeHook('gradient_leaf');
}

/**
 * projected_{query,key,value}_vectors_head / head_out: per head, the vectors at the positions times
 * the head's block of W_O (`[d_model, heads * d_head]`); `bias` adds b_O / heads. `results()`: `[head, tensor]` pairs.
 */
export function projectedVectors(options: { positions: RowPositions; weight: Tensor; bias?: Tensor; heads: number[]; nHeads: number } & Averaging): NativeHook {
  const { weight, bias, ...rest } = options;
  return nativeHook('project_heads', { ...rest, weight: weight.native, bias: bias?.native });
}

/** What an intervention factory does to the cells it selects: scale them, or write a patch. */
export interface EditValue {
  /** Multiply the selected cells (default 0: ablation). */
  factor?: number;
  /** Or write these values, of exactly the selected shape. */
  patch?: Tensor;
}

function editOptions(edit: EditValue): Record<string, unknown> {
  if (edit.patch !== undefined && edit.factor !== undefined) throw new InvalidArgumentError('an edit takes a factor or a patch, not both');
  return edit.patch !== undefined ? { patch: edit.patch.native } : { factor: edit.factor ?? 0 };
}

/** intervention_resid_hook: ablate (multiply) or patch a `[batch, seq, d]` value at the positions. */
export function interventionResid(options: { positions: RowPositions } & EditValue): NativeHook {
  return nativeHook('edit_positions', { positions: options.positions, ...editOptions(options) });
}

/** An edit of one head of a `[batch, heads, seq, d_head]` value (queries, keys, values, head output) at the positions. */
export function interventionHead(options: { positions: RowPositions; head: number } & EditValue): NativeHook {
  return nativeHook('edit_positions', { positions: options.positions, head: options.head, ...editOptions(options) });
}

/**
 * intervention_attn_mat_hook: ablate or patch one head's pattern (or, with `preSoftmax` on a scores
 * point, its scores, where ablation masks with -inf) at `rows` x `columns` (omitted: all), then
 * optionally renormalise the rows.
 */
export function interventionAttnMat(
  options: { head: number; rows?: RowPositions; columns?: RowPositions; preSoftmax?: boolean; applySoftmax?: boolean } & EditValue,
): NativeHook {
  const { factor, patch, ...rest } = options;
  return nativeHook('edit_pattern', { ...rest, ...editOptions({ factor, patch }) });
}

/** intervention_heads_hook: zero whole heads of the pattern. */
export function interventionHeads(options: { heads: number[] }): NativeHook[] {
  if (!Array.isArray(options?.heads)) throw new InvalidArgumentError(`builtins.interventionHeads: options.heads must be an array of head indices, got ${describeValue(options?.heads)}`);
  return options.heads.map((head) => nativeHook('edit_pattern', { head, factor: 0 }));
}

/** multiply_pattern: multiply a head's whole pattern by a value. */
export function multiplyPattern(options: { head: number; factor: number }): NativeHook {
  return nativeHook('edit_pattern', { head: options.head, factor: options.factor });
}

/**
 * ablate_pos_keep_self_attn_hook (deprecated in easyroutine, kept as an alias): zero each given
 * head's row at the position over every key but the last. easyroutine did this for batch row 0
 * only; here every row.
 */
export function ablatePosKeepSelfAttn(options: { ablations: { head: number; position: number }[] }): NativeHook[] {
  return options.ablations.map(({ head, position }) => nativeHook('edit_pattern', { head, rows: [[position]], factor: 0, exceptLastColumn: true }));
}
