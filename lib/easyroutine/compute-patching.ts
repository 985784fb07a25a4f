/**
 * easyroutine's `compute_patching`, working: over paired base and target batches, the base
 * activations named by each patching query are written into the target run at the query's
 * positions, and the cache holds the patched run's extraction with easyroutine's metric keys.
 *
 * Per pair of batches, three forwards (as in easyroutine): the base run (the activations to patch),
 * the target run unpatched (clean) and the target run patched. Where easyroutine is broken on 1.1.5
 * this does what its documentation says: patches are the base values at the patching positions
 * (easyroutine passed the values at every target position), and the logit differences and KL
 * divergences are taken at each row's last position over the vocabulary (easyroutine indexed the
 * position axis with token ids).
 * @module
 */
import { InvalidArgumentError, describeValue } from '../core/errors';
import { checkSignal } from '../core/model';
import { Tensor, stack, tensor } from '../core/tensor';
import { ActivationCache } from './activation-cache';
import type { ExtractionConfigInput, ResolvedExtractionConfig } from './extraction-config';
import type { ExtractionBatch, HookedInput, HookedModel } from './hooked-model';
import type { Intervention } from './interventions';
import { logSumExp } from './softmax';
import type { TokenPosition } from './token-positions';

/** One patching query: which activation, at which layers, at which positions. */
export interface PatchingQuery {
  /**
   * The positions patched, a token position spec (`'last'`, `3`, `[2, 5]`, ...); easyroutine's
   * `'@spec'` string form is accepted too.
   */
  patchingElem: TokenPosition | `@${string}`;
  /** The layers to patch. */
  layersToPatch: number[];
  /**
   * The activation, with `{}` for the layer: `resid_in_{}`, `resid_mid_{}`, `resid_out_{}`,
   * `attn_in_{}`, `attn_out_{}`, `mlp_out_{}`, `values_{}` (every head's values), or one head's
   * output before W_O, `head_out_L{}H{h}`.
   */
  activationType: string;
}

/** Options of {@link computePatching}. */
export interface ComputePatchingOptions {
  /** The batches the activations come from. */
  base: Iterable<ExtractionBatch>;
  /** The batches they are written into, paired with `base` in order (same shapes). */
  target: Iterable<ExtractionBatch>;
  /** What is patched: activations, layers and positions. */
  patchingQuery: PatchingQuery[];
  /** Where the patched run extracts (default `['last']`); the patching positions are added. */
  targetTokenPositions?: TokenPosition[];
  /** What the patched run extracts besides the logits (default nothing). */
  extractionConfig?: ExtractionConfigInput;
  /**
   * With `targetDictionaryIdxs`: per pair of batches, the base-side tokens of each (base, target)
   * token pair whose logit difference `logit_diff_*` measures (easyroutine's `base_dictonary_idxs`).
   */
  baseDictionaryIdxs?: number[][];
  /** Per pair of batches, the target-side tokens of the pairs (easyroutine's `target_dictonary_idxs`). */
  targetDictionaryIdxs?: number[][];
  /** Stops between forwards and hooks; the promise rejects with the reason. */
  signal?: AbortSignal;
  /** Called after each pair of batches with the pairs done. */
  onProgress?: (done: number, total: number | undefined) => void;
}

const POSITION_KEYS: Record<string, keyof ResolvedExtractionConfig> = {
  resid_in: 'extractResidIn',
  resid_mid: 'extractResidMid',
  resid_out: 'extractResidOut',
  attn_in: 'extractAttnIn',
  attn_out: 'extractAttnOut',
  mlp_out: 'extractMlpOut',
  values: 'extractValues',
};

interface Query {
  spec: TokenPosition;
  layers: number[];
  /** The activation's name per layer. */
  activation: (layer: number) => string;
  kind: 'extraction' | 'head_out';
  configField?: keyof ResolvedExtractionConfig;
  head?: number;
}

function parseQuery(query: PatchingQuery, index: number, model: HookedModel): Query {
  const fail = (why: string) => new InvalidArgumentError(`computePatching: patchingQuery[${index}]: ${why}`);
  if (query === null || typeof query !== 'object') throw fail(`expected { patchingElem, layersToPatch, activationType }, got ${describeValue(query)}`);
  const elem = query.patchingElem;
  // '@spec' is easyroutine's form: '@last', '@3', '@[2, 5]'
  const fromAt = (text: string): TokenPosition => (/^-?\d+$/.test(text) ? Number(text) : text.startsWith('[') ? (JSON.parse(text) as TokenPosition) : (text as TokenPosition));
  const spec: TokenPosition = typeof elem === 'string' && elem.startsWith('@') ? fromAt(elem.slice(1).trim()) : (elem as TokenPosition);
  if (spec === undefined) throw fail('patchingElem is missing (a token position, e.g. "last" or "@last")');
  const layers = query.layersToPatch;
  const n = model.architecture.layers.length;
  if (!Array.isArray(layers) || layers.length === 0 || !layers.every((l) => Number.isInteger(l) && l >= 0 && l < n)) throw fail(`layersToPatch must be a non-empty array of layers in [0, ${n}), got ${describeValue(layers)}`);
  const type = query.activationType;
  if (typeof type !== 'string' || !type.includes('{}')) throw fail(`activationType must name the activation with {} for the layer (e.g. 'resid_in_{}', 'head_out_L{}H2'), got ${describeValue(type)}`);
  const activation = (layer: number) => type.replace('{}', String(layer));
  let match: RegExpExecArray | null;
  if ((match = /^(resid_in|resid_mid|resid_out|attn_in|attn_out|mlp_out|values)_(L)?\{\}$/.exec(type))) {
    const field = POSITION_KEYS[match[1]!]!;
    const name = match[1] === 'values' ? (layer: number) => `values_L${layer}` : activation;
    return { spec, layers, activation: name, kind: 'extraction', configField: field };
  }
  if ((match = /^head_out_L\{\}H(\d+)$/.exec(type))) {
    const head = Number(match[1]);
    if (head >= model.architecture.nHeads) throw fail(`head ${head} does not exist (${model.architecture.nHeads} heads)`);
    return { spec, layers, activation, kind: 'head_out', head };
  }
  throw fail(`unknown activationType '${type}'; one of resid_in_{}, resid_mid_{}, resid_out_{}, attn_in_{}, attn_out_{}, mlp_out_{}, values_{}, head_out_L{}H{h}`);
}

/** The batch's input and its options. */
function unpack(batch: ExtractionBatch): { input: HookedInput; attentionMask?: Tensor | number[][]; pivotPositions?: number[] } {
  if (batch instanceof Tensor || Array.isArray(batch) || typeof batch === 'string') return { input: batch as HookedInput };
  const b = batch as Exclude<ExtractionBatch, HookedInput>;
  return { input: b.inputIds, attentionMask: b.attentionMask, pivotPositions: b.pivotPositions };
}

/** `[batch, vocab]` log-softmax of the logits at each row's last target position. */
function lastLogProbs(logits: Tensor): { values: Float64Array; batch: number; vocab: number } {
  const [batch, positions, vocab] = logits.shape as [number, number, number];
  const raw = logits.toFloat32Array();
  const values = new Float64Array(batch * vocab);
  for (let b = 0; b < batch; b++) {
    const row = raw.subarray((b * positions + positions - 1) * vocab, (b * positions + positions) * vocab);
    const log = logSumExp(row);
    for (let v = 0; v < vocab; v++) values[b * vocab + v] = row[v]! - log;
  }
  return { values, batch, vocab };
}

/** KL(p ‖ q) summed over the vocabulary and averaged over rows (torch's `kl_div(log q, log p, 'batchmean', log_target=True)`). */
function kl(p: Float64Array, q: Float64Array, batch: number): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += Math.exp(p[i]!) * (p[i]! - q[i]!);
  return total / batch;
}

/** Each row's logits at its last target position, `[batch, vocab]`. */
function lastLogits(logits: Tensor): Tensor {
  return logits.index({}, -1).contiguous();
}

/**
 * Activation patching over paired batches, as easyroutine's `compute_patching`. The result holds,
 * concatenated over the pairs: the patched run's extraction at `targetTokenPositions` (plus the
 * patching positions), `base_logits`, `target_clean_logits` and `target_patched_logits` (`[batch,
 * vocab]`, each row's last position), `kl_clean|base`, `kl_patched|base`, `kl_patched|clean` and
 * `kl_difference` (per pair of batches), and with dictionary indices `logit_diff_in_clean`,
 * `logit_diff_in_patched` and `logit_diff_variation` (per pair, one value per token pair: the mean
 * over rows of logit(target token) − logit(base token), and patched − clean).
 * @example
 * ```ts
 * const cache = await computePatching(model, {
 *   base: [['w7 w9 w4 w7 w9']], target: [['w7 w9 w4 w7 w3']],
 *   patchingQuery: [{ patchingElem: '@last', layersToPatch: [0], activationType: 'resid_in_{}' }],
 *   baseDictionaryIdxs: [[9]], targetDictionaryIdxs: [[4]],
 * });
 * cache.tensor('logit_diff_variation');
 * ```
 */
export async function computePatching(model: HookedModel, options: ComputePatchingOptions): Promise<ActivationCache> {
  const caller = 'computePatching';
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`${caller}: expected options { base, target, patchingQuery }, got ${describeValue(options)}`);
  const iterable = (v: unknown) => v !== null && typeof v === 'object' && Symbol.iterator in (v as object);
  if (!iterable(options.base) || !iterable(options.target)) throw new InvalidArgumentError(`${caller}: base and target must be iterables of batches (arrays), got ${describeValue(options.base)} and ${describeValue(options.target)}`);
  if (!Array.isArray(options.patchingQuery) || options.patchingQuery.length === 0) throw new InvalidArgumentError(`${caller}: patchingQuery must be a non-empty array of { patchingElem, layersToPatch, activationType }`);
  const withDiff = options.baseDictionaryIdxs !== undefined || options.targetDictionaryIdxs !== undefined;
  if (withDiff && (!Array.isArray(options.baseDictionaryIdxs) || !Array.isArray(options.targetDictionaryIdxs))) throw new InvalidArgumentError(`${caller}: give both baseDictionaryIdxs and targetDictionaryIdxs (per pair of batches, the token ids of each pair), or neither`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new InvalidArgumentError(`${caller}: onProgress must be a function (done, total) => void, got ${describeValue(options.onProgress)}`);
  checkSignal(options.signal, caller);
  const queries = options.patchingQuery.map((q, i) => parseQuery(q, i, model));
  const extractSpecs = [...new Set(queries.map((q) => JSON.stringify(q.spec)))].map((s) => JSON.parse(s) as TokenPosition);
  const targetSpecs = options.targetTokenPositions ?? ['last'];
  const patchedSpecs = [...new Set([...targetSpecs, ...extractSpecs].map((s) => JSON.stringify(s)))].map((s) => JSON.parse(s) as TokenPosition);
  const bases = [...options.base];
  const targets = [...options.target];
  if (bases.length !== targets.length) throw new InvalidArgumentError(`${caller}: ${bases.length} base batches and ${targets.length} target batches; they are paired`);
  if (withDiff && (options.baseDictionaryIdxs!.length < bases.length || options.targetDictionaryIdxs!.length < bases.length)) throw new InvalidArgumentError(`${caller}: the dictionary indices cover ${Math.min(options.baseDictionaryIdxs!.length, options.targetDictionaryIdxs!.length)} pairs of batches; there are ${bases.length}`);

  const all = new ActivationCache();
  for (let index = 0; index < bases.length; index++) {
    options.signal?.throwIfAborted();
    const base = unpack(bases[index]!);
    const target = unpack(targets[index]!);
    const owned: Tensor[] = [];
    try {
      const interventions: Intervention[] = [];
      // 1. the base run: per query its activation at its positions, and the logits
      const headOutputs = new Map<string, Tensor>();
      const hooks = Object.fromEntries(
        queries.filter((q) => q.kind === 'head_out').flatMap((q) => q.layers.map((l) => model.architecture.layers[l]!.points.head_output)).map((point) => [point, (x: Tensor) => void headOutputs.set(point, x.clone())]),
      );
      const baseCaches = new Map<string, ActivationCache>();
      for (const spec of extractSpecs) {
        const config: Record<string, boolean> = {};
        for (const q of queries) if (JSON.stringify(q.spec) === JSON.stringify(spec) && q.configField) config[q.configField] = true;
        const key = JSON.stringify(spec);
        baseCaches.set(key, await model.forwardAsync(base.input, { targetTokenPositions: [spec], extractionConfig: config, attentionMask: base.attentionMask, pivotPositions: base.pivotPositions, hooks: key === JSON.stringify(extractSpecs[0]) ? hooks : undefined, signal: options.signal }));
      }
      const baseForLogits = await model.forwardAsync(base.input, { targetTokenPositions: ['last'], attentionMask: base.attentionMask, pivotPositions: base.pivotPositions, signal: options.signal });
      for (const q of queries) {
        const cache = baseCaches.get(JSON.stringify(q.spec))!;
        for (const layer of q.layers) {
          let values: Tensor;
          if (q.kind === 'extraction') values = cache.tensor(q.activation(layer));
          else {
            // one head's output [batch, heads, seq, d_head] at each row's positions of the spec
            const z = headOutputs.get(model.architecture.layers[layer]!.points.head_output)!;
            const rows = model.resolvePositions(base.input, [q.spec], { attentionMask: base.attentionMask, pivotPositions: base.pivotPositions });
            const perRow = rows.map((positions, b) => {
              const index = tensor(positions, { dtype: 'int64' });
              owned.push(index);
              return z.index(b, q.head!, index);
            });
            values = stack(perRow, 0);
            owned.push(values, ...perRow);
          }
          interventions.push({ type: 'full', activation: q.activation(layer), tokenPositions: [q.spec], patchingValues: values });
        }
      }
      owned.push(...headOutputs.values());
      // 2. the target run unpatched, 3. patched
      const common = { attentionMask: target.attentionMask, pivotPositions: target.pivotPositions, signal: options.signal };
      const clean = await model.forwardAsync(target.input, { ...common, targetTokenPositions: ['last'] });
      const patched = await model.forwardAsync(target.input, { ...common, targetTokenPositions: patchedSpecs, extractionConfig: options.extractionConfig, interventions });

      const baseLog = lastLogProbs(baseForLogits.tensor('logits'));
      const cleanLog = lastLogProbs(clean.tensor('logits'));
      const patchedLogits = patched.tensor('logits');
      // the patched run's logits at the last position of its target axis: its 'last' spec
      const lastIndex = (patched.get('mapping_index') as Record<string, number[]>)['last']?.[0];
      const patchedLast = lastIndex === undefined ? lastLogits(patchedLogits) : patchedLogits.index({}, lastIndex).contiguous();
      const patchedLog = lastLogProbs(patchedLast.reshape(patchedLast.shape[0]!, 1, -1));
      if (patchedLog.batch !== baseLog.batch || patchedLog.vocab !== baseLog.vocab) throw new InvalidArgumentError(`${caller}: base batch ${index} has ${baseLog.batch} rows and target ${patchedLog.batch}; paired batches must match`);
      const klCleanBase = kl(baseLog.values, cleanLog.values, baseLog.batch);
      const klPatchedBase = kl(baseLog.values, patchedLog.values, baseLog.batch);
      const result = new ActivationCache();
      for (const [key, value] of patched) if (key !== 'logits' && key !== 'metadata') result.set(key, value);
      result.set('base_logits', lastLogits(baseForLogits.tensor('logits')));
      result.set('target_clean_logits', lastLogits(clean.tensor('logits')));
      result.set('target_patched_logits', patchedLast);
      result.set('kl_clean|base', tensor([klCleanBase]));
      result.set('kl_patched|base', tensor([klPatchedBase]));
      result.set('kl_patched|clean', tensor([kl(cleanLog.values, patchedLog.values, baseLog.batch)]));
      result.set('kl_difference', tensor([klPatchedBase - klCleanBase]));
      if (withDiff) {
        const baseTokens = options.baseDictionaryIdxs![index]!;
        const targetTokens = options.targetDictionaryIdxs![index]!;
        if (!Array.isArray(baseTokens) || !Array.isArray(targetTokens) || baseTokens.length !== targetTokens.length || !baseTokens.concat(targetTokens).every((t) => Number.isInteger(t) && t >= 0 && t < baseLog.vocab)) {
          throw new InvalidArgumentError(`${caller}: the dictionary indices of pair ${index} must be two arrays of as many token ids in [0, ${baseLog.vocab}), got ${describeValue(baseTokens)} and ${describeValue(targetTokens)}`);
        }
        const cleanRaw = lastLogits(clean.tensor('logits')).toFloat32Array();
        const patchedRaw = patchedLast.toFloat32Array();
        const meanDiff = (raw: Float32Array, s: number, c: number) => {
          let total = 0;
          for (let b = 0; b < baseLog.batch; b++) total += raw[b * baseLog.vocab + c]! - raw[b * baseLog.vocab + s]!;
          return total / baseLog.batch;
        };
        const inClean = baseTokens.map((s, i) => meanDiff(cleanRaw, s, targetTokens[i]!));
        const inPatched = baseTokens.map((s, i) => meanDiff(patchedRaw, s, targetTokens[i]!));
        result.set('logit_diff_in_clean', tensor(inClean));
        result.set('logit_diff_in_patched', tensor(inPatched));
        result.set('logit_diff_variation', tensor(inPatched.map((p, i) => p - inClean[i]!)));
      }
      for (const c of [...baseCaches.values(), baseForLogits, clean]) c.dispose();
      // the patched cache's tensors moved to the result (not its logits: replaced by the last position's)
      patchedLogits.dispose();
      all.cat(result);
      options.onProgress?.(index + 1, bases.length);
    } finally {
      for (const t of owned) if (!t.disposed) t.dispose();
    }
  }
  all.addMetadata({ patchingQuery: options.patchingQuery, targetTokenPositions: targetSpecs });
  return all;
}
