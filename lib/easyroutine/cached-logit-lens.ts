/**
 * easyroutine's `LogitLens` (tools/logit_lens.py): cache keys (`resid_out_{i}`, `head_out_L{i}H{j}`,
 * ...) read through the final norm and the unembedding, with the final norm's scale frozen to the
 * statistics the cache recorded at the same positions (`last_layernorm`, extractLastLayernorm), as
 * direct logit attribution does; either whole logits, or the logit along token directions with
 * easyroutine's `logit_diff` and `accuracy` metrics.
 *
 * The norm is measured, not assumed: {@link LogitLens.fromModel} runs the model once with the final
 * norm's input replaced by four probe vectors and reads its output, which gives its gain per
 * dimension (`w` for LayerNorm and RMSNorm, `1 + w` for Gemma's), its bias, its epsilon and whether
 * it subtracts the mean. So it is right for any of them without reading the module's code.
 *
 * Differences from easyroutine, on purpose: a LayerNorm centres each key by its own mean (a head's
 * share of the residual minus the head's mean, as TransformerLens's `apply_ln_to_stack`; easyroutine
 * subtracted the whole residual's mean from every head), and `accuracy` is per position (easyroutine
 * compared whole tensors, which fails beyond one position).
 * @module
 */
import { InvalidArgumentError, describeValue } from '../core/errors';
import { Tensor, fromTypedArray, linear } from '../core/tensor';
import type { ActivationCache } from './activation-cache';
import type { HookedModel } from './hooked-model';
import { logSumExp } from './softmax';

/** Options of {@link LogitLens.compute}. */
export interface LogitLensComputeOptions {
  /**
   * Per batch row, a token (the logit of it) or a pair `[a, b]` (the logit of a minus that of b);
   * without them the whole logits are returned.
   */
  tokenDirections?: (number | [number, number])[];
  /** Read through the final norm (default true; needs `last_layernorm` in the cache). */
  applyNorm?: boolean;
  /** Softmax over the vocabulary of the whole logits (default false). */
  applySoftmax?: boolean;
  /** With token directions: `logit_diff` (default; `[batch, positions]`) or `accuracy` (the fraction of rows where a's logit beats b's, `[positions]`). */
  metric?: 'logit_diff' | 'accuracy';
}

/** The final norm as the probes measured it. */
export interface MeasuredNorm {
  /** Per dimension, what the normalised value is multiplied by (`w`, or Gemma's `1 + w`). */
  gain: Float32Array;
  /** Per dimension, what is added after (0 for an RMSNorm). */
  bias: Float32Array;
  /** The epsilon under the square root. */
  epsilon: number;
  /** Whether it subtracts the mean (LayerNorm) or not (RMSNorm). */
  centred: boolean;
}

/** easyroutine's LogitLens over a model's final norm and unembedding. */
export class LogitLens {
  /** The unembedding weight `[vocab, d_model]`. */
  readonly unembed: Tensor;
  /** Its bias `[vocab]`, when it has one. */
  readonly unembedBias: Tensor | undefined;
  /** The final norm's gain, bias and epsilon, and whether it centres (LayerNorm) or not (RMSNorm), as measured; null without a final norm. */
  readonly norm: Readonly<MeasuredNorm> | null;
  readonly #nHeads: number;

  private constructor(unembed: Tensor, unembedBias: Tensor | undefined, norm: MeasuredNorm | null, nHeads: number) {
    this.unembed = unembed;
    this.unembedBias = unembedBias;
    this.norm = norm;
    this.#nHeads = nHeads;
  }

  /** The lens of a model: its unembedding's weights, and its final norm measured with one forward. */
  static fromModel(model: HookedModel): LogitLens {
    const arch = model.architecture;
    if (!arch.unembed) throw new InvalidArgumentError('LogitLens.fromModel: the architecture has no unembedding; give it as an override (HookedModel.load(path, { architecture: { unembed } }))');
    const parameters = model.model.parameters();
    const weight = parameters.get(`${arch.unembed}.weight`);
    if (!weight || weight.rank !== 2) throw new InvalidArgumentError(`LogitLens.fromModel: '${arch.unembed}' has no [vocab, d_model] weight among the model's parameters`);
    const bias = parameters.get(`${arch.unembed}.bias`);
    for (const p of parameters.values()) if (p !== weight && p !== bias) p.dispose();
    return new LogitLens(weight.to('float32'), bias?.to('float32'), arch.finalNorm ? measureNorm(model, arch.finalNorm, weight.shape[1]!) : null, arch.nHeads);
  }

  /**
   * The lens of every cache key matching `targetKey` (a key, or a pattern with `{i}`, `{j}` for
   * numbers: `resid_out_{i}`, `head_out_L{i}H{j}`), under `logit_lens_<key>`: `[batch, positions,
   * vocab]` logits, or with token directions `[batch, positions]` (logit_diff) or `[positions]`
   * (accuracy). Keys with `head` in their name take the norm's bias divided by the heads, as
   * easyroutine does.
   * @example
   * ```ts
   * const cache = model.forward(ids, { targetTokenPositions: ['last'], extractionConfig: { extractResidOut: true, extractLastLayernorm: true } });
   * const lens = LogitLens.fromModel(model).compute(cache, 'resid_out_{i}', { tokenDirections: [[4, 9]] });
   * lens['logit_lens_resid_out_1']; // [1, 1]: logit(4) - logit(9) read from layer 1
   * ```
   */
  compute(cache: ActivationCache, targetKey: string, options: LogitLensComputeOptions = {}): Record<string, Tensor> {
    const caller = 'LogitLens.compute';
    if (typeof targetKey !== 'string') throw new InvalidArgumentError(`${caller}: targetKey must be a key or a pattern such as 'resid_out_{i}', got ${describeValue(targetKey)}`);
    const applyNorm = options.applyNorm ?? true;
    const metric = options.metric ?? 'logit_diff';
    if (metric !== 'logit_diff' && metric !== 'accuracy') throw new InvalidArgumentError(`${caller}: metric must be 'logit_diff' or 'accuracy', got ${describeValue(metric)}`);
    const keys = matchingKeys(cache, targetKey, caller);
    let stats: { mean: Float32Array; variance: Float32Array; second: Float32Array } | undefined;
    if (applyNorm) {
      if (!this.norm) throw new InvalidArgumentError(`${caller}: the model has no final norm; pass applyNorm: false`);
      const recorded = cache.get('last_layernorm') as Record<string, Tensor> | undefined;
      if (!recorded || !(recorded['mean'] instanceof Tensor)) throw new InvalidArgumentError(`${caller}: the cache has no last_layernorm statistics; extract with extractionConfig: { extractLastLayernorm: true } at the same positions (or pass applyNorm: false)`);
      stats = { mean: recorded['mean'].toFloat32Array(), variance: recorded['variance']!.toFloat32Array(), second: recorded['second_moment']!.toFloat32Array() };
    }
    const [vocab, dModel] = this.unembed.shape as [number, number];
    const unembed = this.unembed.toFloat32Array();
    const out: Record<string, Tensor> = {};
    for (const key of keys) {
      const value = cache.tensor(key);
      if (value.rank !== 3 || value.shape[2] !== dModel) throw new InvalidArgumentError(`${caller}: '${key}' is [${value.shape.join(', ')}]; expected [batch, positions, ${dModel}]`);
      const [batch, positions] = value.shape as [number, number, number];
      const x = value.to('float32').toFloat32Array();
      if (stats && stats.mean.length !== batch * positions) throw new InvalidArgumentError(`${caller}: last_layernorm has ${stats.mean.length} positions and '${key}' ${batch * positions}; extract both at the same positions`);
      const normed = stats ? this.#normalize(x, batch * positions, dModel, stats, key.includes('head')) : x;
      if (!options.tokenDirections) {
        const input = fromTypedArray(normed, [batch, positions, dModel]);
        let logits = linear(input, this.unembed, this.unembedBias);
        if (options.applySoftmax) {
          const values = logits.toFloat32Array();
          for (let r = 0; r < batch * positions; r++) softmaxInPlace(values.subarray(r * vocab, (r + 1) * vocab));
          logits = fromTypedArray(values, [batch, positions, vocab]);
        }
        out[`logit_lens_${key}`] = logits;
        continue;
      }
      const directions = options.tokenDirections;
      if (!Array.isArray(directions) || directions.length !== batch) throw new InvalidArgumentError(`${caller}: tokenDirections has ${Array.isArray(directions) ? directions.length : describeValue(directions)} entries; the batch has ${batch} rows (one token or [a, b] pair per row)`);
      const logitOf = (row: number, token: number) => {
        if (!Number.isInteger(token) || token < 0 || token >= vocab) throw new InvalidArgumentError(`${caller}: token ${token} is outside the vocabulary (${vocab})`);
        const bias = this.unembedBias ? (this.unembedBias.data as Float32Array)[token]! : 0;
        return (p: number) => {
          let dot = bias;
          const base = (row * positions + p) * dModel;
          for (let d = 0; d < dModel; d++) dot += normed[base + d]! * unembed[token * dModel + d]!;
          return dot;
        };
      };
      if (metric === 'logit_diff') {
        const values = new Float32Array(batch * positions);
        directions.forEach((direction, b) => {
          const [a, c] = Array.isArray(direction) ? direction : [direction, undefined];
          const first = logitOf(b, a);
          const second = c === undefined ? undefined : logitOf(b, c);
          for (let p = 0; p < positions; p++) values[b * positions + p] = first(p) - (second ? second(p) : 0);
        });
        out[`logit_lens_${key}`] = fromTypedArray(values, [batch, positions]);
      } else {
        const wins = new Float32Array(positions);
        directions.forEach((direction, b) => {
          if (!Array.isArray(direction) || direction.length !== 2) throw new InvalidArgumentError(`${caller}: the accuracy metric needs a [a, b] pair per row, got ${describeValue(direction)} in row ${b}`);
          const [first, second] = [logitOf(b, direction[0]), logitOf(b, direction[1])];
          for (let p = 0; p < positions; p++) if (first(p) > second(p)) wins[p]! += 1 / batch;
        });
        out[`logit_lens_${key}`] = fromTypedArray(wins, [positions]);
      }
    }
    return out;
  }

  /** Each row through the measured norm, with the recorded statistics of the final residual there. */
  #normalize(x: Float32Array, rows: number, d: number, stats: { variance: Float32Array; second: Float32Array }, isHead: boolean): Float32Array {
    const { gain, bias, epsilon, centred } = this.norm!;
    const out = new Float32Array(x.length);
    const biasShare = isHead ? 1 / this.#nHeads : 1;
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * d, (r + 1) * d);
      let mean = 0;
      if (centred) {
        for (const v of row) mean += v;
        mean /= d;
      }
      const scale = 1 / Math.sqrt((centred ? stats.variance[r]! : stats.second[r]!) + epsilon);
      for (let i = 0; i < d; i++) out[r * d + i] = (row[i]! - mean) * scale * gain[i]! + bias[i]! * biasShare;
    }
    return out;
  }
}

function softmaxInPlace(row: Float32Array): void {
  const log = logSumExp(row);
  for (let i = 0; i < row.length; i++) row[i] = Math.exp(row[i]! - log);
}

/** The cache keys a key or a `{i}`/`{j}` pattern names, in numeric order. */
function matchingKeys(cache: ActivationCache, pattern: string, caller: string): string[] {
  if (!pattern.includes('{')) {
    if (!cache.has(pattern)) throw new InvalidArgumentError(`${caller}: no key '${pattern}' in the cache`);
    return [pattern];
  }
  const regex = new RegExp(`^${pattern.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]*\}/g, '(\\d+)')}$`);
  const keys = cache.keys().filter((k) => regex.test(k));
  if (keys.length === 0) throw new InvalidArgumentError(`${caller}: no keys match '${pattern}'`);
  const numbers = (k: string) => (k.match(/\d+/g) ?? []).map(Number);
  return keys.sort((a, b) => {
    const [x, y] = [numbers(a), numbers(b)];
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return x.length - y.length;
  });
}

/**
 * The final norm's behaviour from one forward with its input replaced by four probes (positions 0-3
 * of a 4-token input): u (mean 0, variance 1), -u, δu (δ² near epsilon), and u + 3. Then
 * bias = (y(u) + y(-u)) / 2; the output's ratio at u and δu gives epsilon; the gain is
 * (y(u) - bias) √(1 + ε) / u; and the output at u + 3 equals that at u only when the norm centres.
 */
function measureNorm(model: HookedModel, finalNorm: string, d: number): MeasuredNorm {
  const delta = 1e-3;
  // ±1 alternating (an odd d ends with 1, 1, -2): mean 0, no zero element; then variance 1
  const u = new Float32Array(d).map((_, i) => (i % 2 === 0 ? 1 : -1));
  if (d % 2 === 1 && d >= 3) u.set([1, 1, -2], d - 3);
  const norm = Math.sqrt(u.reduce((a, v) => a + v * v, 0) / d);
  for (let i = 0; i < d; i++) u[i]! /= norm;
  const probes = [u.map((v) => v), u.map((v) => -v), u.map((v) => delta * v), u.map((v) => v + 3)];
  let output: Float32Array | undefined;
  const cache = model.forward([[1, 2, 3, 4]], {
    targetTokenPositions: ['last'],
    hooks: {
      [`${finalNorm}:input`]: (x: Tensor) => {
        const replaced = new Float32Array(x.numel);
        const [batch, seq] = x.shape as [number, number, number];
        for (let b = 0; b < batch; b++) for (let p = 0; p < Math.min(seq, 4); p++) replaced.set(probes[p]!, (b * seq + p) * d);
        return fromTypedArray(replaced, x.shape).to(x.dtype);
      },
      [`${finalNorm}:output`]: (y: Tensor) => void (output = y.to('float32').toFloat32Array()),
    },
  });
  cache.dispose();
  if (!output) throw new InvalidArgumentError(`LogitLens.fromModel: the final norm '${finalNorm}' was not reached by a forward`);
  const at = (p: number) => output!.subarray(p * d, (p + 1) * d);
  const [yu, ym, ys, yc] = [at(0), at(1), at(2), at(3)];
  const bias = yu.map((v, i) => (v + ym[i]!) / 2);
  // r = (y(u) - b) / (y(δu) - b) = sqrt(δ² + ε) / (δ sqrt(1 + ε)), averaged over the dimensions with signal
  let ratio = 0;
  let count = 0;
  for (let i = 0; i < d; i++) {
    const small = ys[i]! - bias[i]!;
    if (Math.abs(small) > 1e-6) {
      ratio += (yu[i]! - bias[i]!) / small;
      count++;
    }
  }
  ratio /= Math.max(count, 1);
  const r2 = ratio * ratio * delta * delta;
  const epsilon = Math.max(0, (r2 - delta * delta) / (1 - r2));
  const gain = yu.map((v, i) => ((v - bias[i]!) * Math.sqrt(1 + epsilon)) / u[i]!);
  let shift = 0;
  for (let i = 0; i < d; i++) shift = Math.max(shift, Math.abs(yc[i]! - yu[i]!));
  return { gain, bias, epsilon, centred: shift < 1e-3 * Math.max(1, ...Array.from(yu, Math.abs)) };
}
