/**
 * The logit lens (nostalgebraist 2020): each layer's residual stream read through the model's own
 * final norm and unembedding, as if the layers after it were skipped. It is computed by the model
 * itself: one forward per layer with the final norm's input replaced by that layer's residual, so it
 * is exact for whatever norm the model has (LayerNorm, RMSNorm, Gemma's `(1 + w)` weight, a bias or
 * none) and needs no weights read into JS.
 * @module
 */
import { InvalidArgumentError, describeValue } from '../core/errors';
import { checkSignal } from '../core/model';
import type { Tensor } from '../core/tensor';
import type { HookedInput, HookedModel, Prediction } from './hooked-model';
import { topK } from './softmax';

/** One cell of a logit-lens table: the top token there and its probability. */
export interface LensCell {
  /** The top token's text (its id when the model has no tokenizer). */
  token: string;
  /** Its probability. */
  probability: number;
}

/** A logit-lens table: a row per layer (or site), a column per position. */
export interface LensTable {
  /** A label per row (layer or site). */
  rowLabels: string[];
  /** A label per column (position and token). */
  columnLabels: string[];
  /** `rows × columns` cells. */
  cells: LensCell[][];
}

/** What {@link logitLens} returns: the table, and the top-k ids and probabilities behind it. */
export interface LogitLensResult extends LensTable {
  /** `[layer][position]`: the k most likely tokens, most likely first. */
  top: Prediction[][][];
}

/** Options of {@link logitLens}. */
export interface LogitLensOptions {
  /** Which residual is read at each layer (default `resid_out`, each block's output). */
  site?: 'resid_in' | 'resid_mid' | 'resid_out';
  /** How many top tokens `top` keeps per cell (default 5). */
  k?: number;
  /** Stops between the forwards; the promise rejects with the reason. */
  signal?: AbortSignal;
}

/**
 * The logit lens of one prompt (or one row of ids): per layer and position, the tokens the residual
 * there predicts through the final norm and the unembedding. The last layer's `resid_out` row is
 * the model's own prediction. Draw it with `logitLensPage`.
 * @example
 * ```ts
 * const lens = await logitLens(model, 'w7 w9 w4 w7 w9');
 * lens.cells[1]![4]; // { token: 'w4', probability: 0.9... }: layer 1 predicts the repeat
 * ```
 */
export async function logitLens(model: HookedModel, input: string | number[], options: LogitLensOptions = {}): Promise<LogitLensResult> {
  const caller = 'logitLens';
  const single = typeof input === 'string' || (Array.isArray(input) && input.length > 0 && input.every(Number.isInteger));
  if (!single) throw new InvalidArgumentError(`${caller}: input must be one prompt (a string) or one row of token ids, got ${describeValue(input)}`);
  const k = options.k ?? 5;
  if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`${caller}: k must be a positive integer, got ${describeValue(k)}`);
  const site = options.site ?? 'resid_out';
  if (!['resid_in', 'resid_mid', 'resid_out'].includes(site)) throw new InvalidArgumentError(`${caller}: site must be resid_in, resid_mid or resid_out, got ${describeValue(site)}`);
  checkSignal(options.signal, caller);
  const { layers, finalNorm, unembed } = model.architecture;
  // what the final norm reads; a model with none unembeds the residual itself
  const reader = finalNorm ?? unembed;
  if (!reader) throw new InvalidArgumentError(`${caller}: the architecture has neither a final norm nor an unembedding; give them as overrides (HookedModel.load(path, { architecture: { finalNorm, unembed } }))`);
  const readPoint = `${reader}:input`;
  const points = layers.map((layer, i) => {
    const point = layer.points[site];
    if (!point) throw new InvalidArgumentError(`${caller}: layer ${i} has no ${site} in this architecture`);
    return point;
  });
  const batch: HookedInput = typeof input === 'string' ? input : [input];
  const residuals = new Map<string, Tensor>();
  try {
    const clean = await model.forwardAsync(batch, { extractionConfig: { saveInputIds: true }, hooks: Object.fromEntries(points.map((p) => [p, (x: Tensor) => void residuals.set(p, x.clone())])), signal: options.signal });
    const ids = (clean.tensor('input_ids').toArray() as number[][])[0]!.map(Number);
    clean.dispose();
    const decode = (id: number) => (model.tokenizer ? model.tokenizer.decode([id]) : String(id));
    const top: Prediction[][][] = [];
    for (const point of points) {
      options.signal?.throwIfAborted();
      const residual = residuals.get(point)!;
      const read = await model.forwardAsync(batch, { hooks: { [readPoint]: () => residual }, signal: options.signal });
      const logits = read.tensor('logits');
      const [, seq, vocab] = logits.shape as [number, number, number];
      const values = logits.toFloat32Array();
      top.push(Array.from({ length: seq }, (_, p) => topK(values.subarray(p * vocab, (p + 1) * vocab), k)));
      read.dispose();
    }
    return {
      rowLabels: layers.map((_, i) => `${site}_${i}`),
      columnLabels: ids.map((id, p) => `${p} ${decode(id)}`),
      cells: top.map((row) => row.map((cell) => ({ token: decode(cell[0]!.token), probability: cell[0]!.probability }))),
      top,
    };
  } finally {
    for (const t of residuals.values()) t.dispose();
  }
}
