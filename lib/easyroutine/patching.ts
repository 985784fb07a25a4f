/**
 * Activation-patching sweeps, as TransformerLens's `patching` helpers (`get_act_patch_resid_pre`,
 * `get_act_patch_attn_head_out_all_pos`): the corrupted input is run once per site with that one
 * activation taken from the clean run, and a metric of the patched logits is recorded per site.
 * Each patch is a native `edit_positions` kernel at the site's hook point (no per-element JS); the
 * clean activations are copied once, in one clean forward.
 * @module
 */
import { InvalidArgumentError, ShapeError, describeValue } from '../core/errors';
import { nativeHook, type HookMap } from '../core/hooks';
import { checkSignal } from '../core/model';
import { Tensor, fromTypedArray } from '../core/tensor';
import type { ActivationCache } from './activation-cache';
import type { HookedInput, HookedModel } from './hooked-model';

/** A grid of values with what its axes are (what the sweeps return, and what `patchingPage` draws). */
export interface LabelledGrid {
  /** `[rows, columns]`: a tensor or rows of numbers. */
  values: Tensor | number[][];
  /** A label per row (e.g. the layer). */
  rowLabels: string[];
  /** A label per column (e.g. the position and its token, or the head). */
  columnLabels: string[];
  /** What the rows are (e.g. "layer"). */
  rowTitle: string;
  /** What the columns are (e.g. "position", "head"). */
  columnTitle: string;
  /** What a value is (e.g. "logit difference"). */
  metric: string;
}

/** A number from the logits at each row's last position (`[batch, vocab]`), e.g. {@link logitDifference}. */
export interface PatchingMetric {
  /** What it measures, for plots and reports. */
  readonly name: string;
  /** The metric of the logits at each row's last position, `[batch, vocab]`. */
  compute(lastLogits: Tensor): number;
  /**
   * For a metric linear in the logits: its gradient with respect to the `[batch, vocab]` last-position
   * logits, row-major (what attribution patching needs; {@link logitDifference} has it).
   */
  gradient?(batch: number, vocab: number): Float32Array;
}

/**
 * The mean over rows of `logits[row, last, correct[row]] - logits[row, last, wrong[row]]`; a single
 * id stands for every row.
 */
export function logitDifference(correct: number | readonly number[], wrong: number | readonly number[]): PatchingMetric {
  const check = (ids: number | readonly number[], what: string) => {
    const list = typeof ids === 'number' ? [ids] : ids;
    if (!Array.isArray(list) || list.length === 0 || !list.every((id) => Number.isInteger(id) && id >= 0)) {
      throw new InvalidArgumentError(`logitDifference: ${what} must be a token id or an array of them (one per row), got ${describeValue(ids)}`);
    }
    return list as readonly number[];
  };
  const good = check(correct, 'correct');
  const bad = check(wrong, 'wrong');
  return {
    name: 'logit difference',
    compute(lastLogits) {
      const [batch, vocab] = lastLogits.shape as [number, number];
      const values = lastLogits.toFloat32Array();
      if (![1, batch].includes(good.length) || ![1, batch].includes(bad.length)) {
        throw new InvalidArgumentError(`logitDifference: ${good.length} correct and ${bad.length} wrong ids for a batch of ${batch} rows (give one id, or one per row)`);
      }
      let total = 0;
      for (let b = 0; b < batch; b++) {
        const c = good.length === 1 ? good[0]! : good[b]!;
        const w = bad.length === 1 ? bad[0]! : bad[b]!;
        if (c >= vocab || w >= vocab) throw new InvalidArgumentError(`logitDifference: token id ${Math.max(c, w)} is outside the vocabulary (${vocab})`);
        total += values[b * vocab + c]! - values[b * vocab + w]!;
      }
      return total / batch;
    },
    gradient(batch, vocab) {
      const weights = new Float32Array(batch * vocab);
      for (let b = 0; b < batch; b++) {
        weights[b * vocab + (good.length === 1 ? good[0]! : good[b]!)]! += 1 / batch;
        weights[b * vocab + (bad.length === 1 ? bad[0]! : bad[b]!)]! -= 1 / batch;
      }
      return weights;
    },
  };
}

/** Options of the sweeps. */
export interface PatchingSweepOptions {
  /** The input whose activations are patched in (same shape as `corrupted` once tokenized). */
  clean: HookedInput;
  /** The input that is run, with one clean activation per run. */
  corrupted: HookedInput;
  /** What is measured on each run (e.g. {@link logitDifference}). */
  metric: PatchingMetric;
  /** `[batch, seq]` 0/1 mask of both inputs, when they are token ids with padding. */
  attentionMask?: Tensor | number[][];
  /** Stops between runs (and between hooks); the promise rejects with the reason. */
  signal?: AbortSignal;
  /** Called after each patched run with the runs done and their total. */
  onProgress?: (done: number, total: number) => void;
}

/** A sweep's result: the metric per site, and the metric of the clean and corrupted runs unpatched. */
export interface PatchingSweep extends LabelledGrid {
  /** `[rows, columns]` float32. */
  values: Tensor;
  /** The metric of the clean run. */
  cleanMetric: number;
  /** The metric of the corrupted run, unpatched. */
  corruptedMetric: number;
}

/** The residual sites a residual sweep patches. */
export type ResidualSite = 'resid_in' | 'resid_mid' | 'resid_out';

function lastLogits(cache: ActivationCache): Tensor {
  return cache.tensor('logits').index({}, 0);
}

/** The text of each position of row 0 for the axis labels, when there is a tokenizer. */
function positionLabels(model: HookedModel, input: HookedInput, seq: number): string[] {
  let ids: number[] | undefined;
  if (input instanceof Tensor) ids = (input.index(0).toArray() as number[]).map(Number);
  else if (Array.isArray(input) && Array.isArray(input[0])) ids = input[0] as number[];
  else if (model.tokenizer?.encode) ids = model.toTokens(typeof input === 'string' ? input : (input as readonly string[])[0]!);
  const tokens = ids && model.tokenizer ? ids.map((id) => model.tokenizer!.decode([id])) : undefined;
  return Array.from({ length: seq }, (_, p) => {
    // a shorter row 0 was padded on the left
    const token = tokens?.[p - (seq - tokens.length)];
    return token === undefined ? String(p) : `${p} ${token}`;
  });
}

interface Site {
  point: string;
  row: number;
  column: number;
  /** The native edit's options, from the clean activation at the point. */
  edit(clean: Tensor): { positions: number[][]; head?: number; patch: Tensor };
}

/**
 * Runs a sweep: the clean run (copying the activations at `points`), the corrupted run, then one
 * patched run per site. `layout` makes the sites and the grid's labels from the clean activations.
 */
async function sweep(
  model: HookedModel,
  caller: string,
  options: PatchingSweepOptions,
  points: string[],
  layout: (clean: Map<string, Tensor>) => { sites: Site[]; grid: Omit<LabelledGrid, 'values' | 'metric'> },
): Promise<PatchingSweep> {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`${caller}: expected options { clean, corrupted, metric }, got ${describeValue(options)}`);
  if (!options.metric || typeof options.metric.compute !== 'function') throw new InvalidArgumentError(`${caller}: metric must be a PatchingMetric ({ name, compute(lastLogits) }, e.g. logitDifference(correct, wrong)), got ${describeValue(options.metric)}`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new InvalidArgumentError(`${caller}: onProgress must be a function (done, total) => void, got ${describeValue(options.onProgress)}`);
  checkSignal(options.signal, caller);
  const run = (input: HookedInput, hooks: HookMap) => model.forwardAsync(input, { targetTokenPositions: ['last'], attentionMask: options.attentionMask, hooks, signal: options.signal });
  const clean = new Map<string, Tensor>();
  const seen = new Map<string, number[]>();
  const owned: Tensor[] = [];
  try {
    const cleanCache = await run(options.clean, Object.fromEntries(points.map((p) => [p, (x: Tensor) => void clean.set(p, x.clone())])));
    const cleanMetric = options.metric.compute(lastLogits(cleanCache));
    cleanCache.dispose();
    const corruptedCache = await run(options.corrupted, Object.fromEntries(points.map((p) => [p, (x: Tensor) => void seen.set(p, x.shape)])));
    let corruptedMetric: number;
    try {
      for (const p of points) {
        const a = clean.get(p)!.shape;
        const b = seen.get(p)!;
        if (a.join() !== b.join()) throw new ShapeError(`${caller}: clean and corrupted differ in shape at '${p}' ([${a.join(', ')}] and [${b.join(', ')}]); give inputs of the same batch size and length`);
      }
      corruptedMetric = options.metric.compute(lastLogits(corruptedCache));
    } finally {
      corruptedCache.dispose();
    }
    const { sites, grid } = layout(clean);
    const shape = { rows: grid.rowLabels.length, columns: grid.columnLabels.length };
    const values = new Float32Array(shape.rows * shape.columns).fill(Number.NaN);
    let done = 0;
    for (const site of sites) {
      options.signal?.throwIfAborted();
      const { patch, ...edit } = site.edit(clean.get(site.point)!);
      owned.push(patch);
      const patched = await run(options.corrupted, { [site.point]: nativeHook('edit_positions', { ...edit, patch: patch.native }) });
      values[site.row * shape.columns + site.column] = options.metric.compute(lastLogits(patched));
      patched.dispose();
      patch.dispose();
      options.onProgress?.(++done, sites.length);
    }
    return {
      ...grid,
      metric: options.metric.name,
      values: fromTypedArray(values, [shape.rows, shape.columns]),
      cleanMetric,
      corruptedMetric,
    };
  } finally {
    for (const t of [...clean.values(), ...owned]) if (!t.disposed) t.dispose();
  }
}

/**
 * Patches the residual stream (`site`, default `resid_in`: each block's input, TransformerLens's
 * `resid_pre`) at one layer and one position per run: `values[layer, position]` is the metric of
 * the corrupted run with that activation from the clean run, for every row of the batch.
 * @example
 * ```ts
 * const sweep = await residualPatchingSweep(model, { clean, corrupted, metric: logitDifference(correct, wrong) });
 * sweep.values.toArray(); // [layers][positions]
 * ```
 */
export async function residualPatchingSweep(model: HookedModel, options: PatchingSweepOptions & { site?: ResidualSite }): Promise<PatchingSweep> {
  const caller = 'residualPatchingSweep';
  const site = options?.site ?? 'resid_in';
  if (!['resid_in', 'resid_mid', 'resid_out'].includes(site)) throw new InvalidArgumentError(`${caller}: site must be resid_in, resid_mid or resid_out, got ${describeValue(site)}`);
  const layers = model.architecture.layers;
  const points = layers.map((layer, i) => {
    const point = layer.points[site];
    if (!point) throw new InvalidArgumentError(`${caller}: layer ${i} has no ${site} in this architecture${layer.parallel ? ' (attention and MLP run in parallel)' : ''}`);
    return point;
  });
  return sweep(model, caller, options, points, (clean) => {
    // [batch, seq, d_model]
    const seq = clean.get(points[0]!)!.shape[1]!;
    const sites: Site[] = points.flatMap((point, layer) =>
      Array.from({ length: seq }, (_, position) => ({
        point,
        row: layer,
        column: position,
        edit: (activation: Tensor) => ({ positions: [[position]], patch: activation.index({}, { start: position, stop: position + 1 }).contiguous() }),
      })),
    );
    return { sites, grid: { rowLabels: layers.map((_, i) => String(i)), columnLabels: positionLabels(model, options.clean, seq), rowTitle: 'layer', columnTitle: 'position' } };
  });
}

/**
 * Patches one attention head's output (before the heads are merged and projected) at every
 * position per run: `values[layer, head]` is the metric of the corrupted run with that head's
 * output from the clean run (TransformerLens's `get_act_patch_attn_head_out_all_pos`).
 */
export async function headPatchingSweep(model: HookedModel, options: PatchingSweepOptions): Promise<PatchingSweep> {
  const { layers, nHeads } = model.architecture;
  const points = layers.map((layer) => layer.points.head_output);
  return sweep(model, 'headPatchingSweep', options, points, () => {
    const sites: Site[] = points.flatMap((point, l) =>
      Array.from({ length: nHeads }, (_, head) => ({
        point,
        row: l,
        column: head,
        // head_output is [batch, heads, seq, d_head]
        edit: (activation: Tensor) => ({ positions: [Array.from({ length: activation.shape[2]! }, (_, p) => p)], head, patch: activation.index({}, head).contiguous() }),
      })),
    );
    return { sites, grid: { rowLabels: layers.map((_, i) => String(i)), columnLabels: Array.from({ length: nHeads }, (_, h) => String(h)), rowTitle: 'layer', columnTitle: 'head' } };
  });
}
