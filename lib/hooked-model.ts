/**
 * HookedModel: easyroutine's extraction API over a TorchScript model. A forward takes target token
 * positions, an {@link ExtractionConfig} and returns an {@link ActivationCache} with easyroutine's keys
 * and shapes, every value gathered by a native kernel (no per-element JS).
 * @module
 */
import { ActivationCache, type CacheValue } from './activation-cache';
import { native } from './binding';
import { detectArchitecture, type ArchitectureMapping, type ArchitectureOverrides } from './architecture';
import { InvalidArgumentError } from './errors';
import { extractionConfig, type ExtractionConfig } from './extraction-config';
import { nativeHook, type Hook, type HookMap, type NativeHook } from './hooks';
import { loadModel, type LoadOptions, type Model } from './model';
import { Tensor, grad, tensor } from './tensor';
import { resolveTokenPositions, spansFromAttentionMask, validateTokenPosition, type SequenceSpan, type TokenPosition } from './token-positions';

/** Where an intervention acts: the cell selection of easyroutine's intervention types. */
export type InterventionType = 'full' | 'columns' | 'rows' | 'grid' | 'columns_pre_softmax' | 'rows_pre_softmax' | 'grid_pre_softmax';

/**
 * An edit of an activation during the forward, named like the cache key it acts on:
 * `resid_in_{i}`, `resid_mid_{i}`, `resid_out_{i}`, `attn_in_{i}`, `attn_out_{i}`, `mlp_out_{i}`,
 * `queries_L{i}`, `keys_L{i}`, `values_L{i}` (type `full`: the token positions of every head),
 * `head_queries_L{l}H{h}`, `head_keys_L{l}H{h}`, `head_values_L{l}H{h}` (one head; for keys and values
 * a key/value head), `head_out_L{l}H{h}` (one head's output before the projection), and
 * `pattern_L{l}H{h}` (types `columns`: every query row x the key positions, `rows`: the query positions
 * x every key, `grid`: `[query specs, key specs]`; `*_pre_softmax` act on the scores, where an
 * ablation masks with -inf).
 */
export interface Intervention {
  type: InterventionType;
  activation: string;
  /** The positions edited (`grid`: a pair `[query positions, key positions]`). */
  tokenPositions: TokenPosition[] | [TokenPosition[], TokenPosition[]];
  /** `'ablation'` (default: multiply by `multiplicationValue`) or the values to write, of exactly the selected shape. */
  patchingValues?: 'ablation' | Tensor | null;
  /** The factor of an ablation (default 0: zero ablation; on scores 0 masks with -inf). */
  multiplicationValue?: number;
  /** Renormalise the edited head's pattern rows after the edit. */
  applySoftmax?: boolean;
}

/** Turns token ids into text (e.g. a tokenizers.js or transformers.js tokenizer). */
export interface Tokenizer {
  decode(ids: number[]): string;
}

/** One of the top predictions of {@link HookedModel.predict}. */
export interface Prediction {
  token: number;
  probability: number;
  /** The decoded token, when the model has a tokenizer. */
  text?: string;
}

/** One batch of {@link HookedModel.extractCache}. */
export type ExtractionBatch = Tensor | number[][] | { inputIds: Tensor | number[][]; attentionMask?: Tensor | number[][]; pivotPositions?: number[] };

/** Options of {@link HookedModel.forward}. */
export interface HookedForwardOptions {
  /** Which positions to extract (default `['all']`); see the token position grammar. */
  targetTokenPositions?: TokenPosition[];
  /** Cut points of the `inputs-partition-K` specs. */
  pivotPositions?: number[];
  /** What to extract (default: logits only). */
  extractionConfig?: Partial<ExtractionConfig> | Record<string, unknown>;
  /** `[batch, seq]` of 0/1: which tokens are real (left or right padding); default all. */
  attentionMask?: Tensor | number[][];
  /** Seed of the random position specs (default 0). */
  seed?: number;
  /**
   * With `keepGradient`: the logit whose gradient is taken, `logits[0, -1, vocabularyIndex]`
   * (default: the top prediction there).
   */
  vocabularyIndex?: number;
  /** Interventions for this forward only (after the registered ones). */
  interventions?: Intervention[];
  /** Your own hooks, run together with the built-in ones (after them, on shared points). */
  hooks?: HookMap;
}

/** Options of {@link HookedModel.extractCache}. */
export interface ExtractCacheOptions extends HookedForwardOptions {
  /** Called after each batch with the number done and `total` when given. */
  onProgress?: (done: number, total: number | undefined) => void;
  /** The number of batches, for progress reports. */
  total?: number;
  /** Stops the extraction between hooks and between batches; the promise rejects with the reason. */
  signal?: AbortSignal;
}

/** The resolved target positions of one forward. */
interface Target {
  /** Per batch row, the positions to extract, groups concatenated. */
  positions: number[][];
  groupSizes: number[];
  /** Per batch row, where the real tokens start (left padding). */
  offsets: number[];
  /** Per batch row, the query-row groups of the pattern (attnPatternRowPositions). */
  rows: number[][][] | undefined;
}

/** Everything a forward's options resolve to before it runs: equal for equal options and shapes. */
interface Resolution {
  perRow: number[][][];
  groupSizes: number[];
  target: Target;
  /** The key of the extraction plan for this config and these positions. */
  extractionKey: string;
}

/** How many resolutions (config x positions x input shape) a model remembers. */
const RESOLUTION_CACHE_SIZE = 64;

/** What one forward runs and how it turns the kernels' results into a cache. */
interface Plan {
  ids: Tensor;
  hooks: Record<string, Hook[]>;
  grad: boolean;
  /** Whether the cache needs the forward's output (keepGradient's gradient of a logit), else null. */
  output: boolean;
  /** Builds the cache and frees the extraction kernels for the next forward. */
  finish(output: Tensor | null): ActivationCache;
  /** Frees the extraction kernels after a failed forward. */
  release(): void;
}

/** The extraction kernels of a plan and how each one's results enter the cache. */
interface Extraction {
  collectors: Collector[];
  hooks: [string, Hook][];
  leaf: NativeHook | undefined;
  busy: boolean;
}

/** How many distinct extraction plans (config x positions) a model keeps ready. */
const EXTRACTION_CACHE_SIZE = 16;

const configIds = new WeakMap<object, string>();
const idsByContent = new Map<string, string>();
let nextConfigId = 0;

/** A short string equal for equal configs (configs are frozen: the id is worked out once per object). */
function configKey(config: Readonly<ExtractionConfig>): string {
  let id = configIds.get(config);
  if (id === undefined) {
    const content = JSON.stringify(config);
    id = idsByContent.get(content);
    if (id === undefined) {
      id = `#${nextConfigId++}`;
      idsByContent.set(content, id);
    }
    if (Object.isFrozen(config)) configIds.set(config, id);
  }
  return id;
}

/** Row 0's token ids (its start, read in place, when the ids are a contiguous int64 CPU tensor). */
function firstRowIds(ids: Tensor): BigInt64Array {
  return ids.dtype === 'int64' && ids.device === 'cpu' && ids.isContiguous ? (ids.data as BigInt64Array) : (ids.to('int64').index(0).copyData() as BigInt64Array);
}

/** The groups of one row, one after the other (Array.prototype.flat is slow on hot paths). */
function concatenated(groups: readonly number[][]): number[] {
  const out: number[] = [];
  for (const group of groups) for (const p of group) out.push(p);
  return out;
}

/** Remembers `value` under `key` in an LRU map of at most `size` entries. */
function remember<V>(map: Map<string, V>, key: string, value: V, size: number): void {
  map.set(key, value);
  if (map.size > size) map.delete(map.keys().next().value!);
}

/**
 * Reads what the kernels of one forward collected into one native pack: each result is a Tensor
 * whose handle is made on first use, so results that are disposed unread never cost a handle.
 * A kernel whose point did not run gives undefined.
 */
class PackedResults {
  readonly #pack = new native.NativeTensorPack();

  #at(slot: number): Tensor {
    return Tensor._fromPack(this.#pack, slot);
  }

  tensor(hook: NativeHook): Tensor | undefined {
    const slot = hook.native.results(this.#pack) as number | undefined;
    return slot === undefined ? undefined : this.#at(slot);
  }

  tensors(hook: NativeHook): Tensor[] | undefined {
    return (hook.native.results(this.#pack) as number[] | undefined)?.map((slot) => this.#at(slot));
  }

  heads(hook: NativeHook): [number, Tensor][] {
    return ((hook.native.results(this.#pack) as [number, number][] | undefined) ?? []).map(([head, slot]) => [head, this.#at(slot)]);
  }

  record(hook: NativeHook): Record<string, Tensor> | undefined {
    const slots = hook.native.results(this.#pack) as Record<string, number> | undefined;
    return slots && Object.fromEntries(Object.entries(slots).map(([name, slot]) => [name, this.#at(slot)]));
  }
}

/** Whether `attnHeads` selects head `head` of layer `layer`. */
function headWanted(config: Readonly<ExtractionConfig>, layer: number, head: number): boolean {
  return config.attnHeads === 'all' || config.attnHeads.some((h) => h.layer === layer && h.head === head);
}

/** The heads of `layer` that `attnHeads` selects, in order. */
function wantedHeads(config: Readonly<ExtractionConfig>, layer: number, nHeads: number): number[] {
  return Array.from({ length: nHeads }, (_, h) => h).filter((h) => headWanted(config, layer, h));
}

/** Adds `value` under `key` unless the kernel gave nothing. */
function addResult(cache: ActivationCache, key: string, value: CacheValue | undefined, info: string): void {
  if (value !== undefined) cache.addWithInfo(key, value, info);
}

interface Collector {
  key: string;
  hook: NativeHook;
  collect(cache: ActivationCache, results: PackedResults): void;
}

function idsTensor(inputIds: Tensor | number[][]): Tensor {
  if (inputIds instanceof Tensor) return inputIds;
  if (!Array.isArray(inputIds) || !inputIds.every(Array.isArray)) throw new InvalidArgumentError('HookedModel.forward: inputIds must be a Tensor or an array of token id rows');
  return tensor(inputIds, { dtype: 'int64' });
}

/** A model with easyroutine's extraction API. */
export class HookedModel {
  /** The underlying model (its own hooks and forwards still work). */
  readonly model: Model;
  /** Where the semantic sites are; see {@link detectArchitecture}. */
  readonly architecture: ArchitectureMapping;
  #interventions: Intervention[] = [];

  /** Decodes token ids for {@link HookedModel.toStringTokens}, predictions and `token_dict`. */
  tokenizer: Tokenizer | undefined;

  constructor(model: Model, overrides: ArchitectureOverrides = {}, tokenizer?: Tokenizer) {
    this.model = model;
    this.architecture = detectArchitecture(model, overrides);
    this.tokenizer = tokenizer;
  }

  /** Loads a TorchScript file and maps its architecture. */
  static load(path: string, options: LoadOptions & { architecture?: ArchitectureOverrides; tokenizer?: Tokenizer } = {}): HookedModel {
    return new HookedModel(loadModel(path, options), options.architecture, options.tokenizer);
  }

  /** Each token id as text (needs a tokenizer). */
  toStringTokens(ids: readonly number[]): string[] {
    if (!this.tokenizer) throw new InvalidArgumentError('HookedModel.toStringTokens: no tokenizer; pass one to HookedModel.load({ tokenizer }) or set model.tokenizer');
    return ids.map((id) => this.tokenizer!.decode([id]));
  }

  /**
   * The k most likely next tokens after each row's last real token, with their probabilities
   * (softmax of the logits), most likely first.
   */
  predict(inputIds: Tensor | number[][], options: { k?: number; attentionMask?: Tensor | number[][] } = {}): Prediction[][] {
    const k = options.k ?? 5;
    if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`HookedModel.predict: k must be a positive integer, got ${k}`);
    const logits = this.forward(inputIds, { targetTokenPositions: ['last'], attentionMask: options.attentionMask }).tensor('logits');
    const [batch, , vocab] = logits.shape as [number, number, number];
    const values = logits.toFloat32Array();
    return Array.from({ length: batch }, (_, b) => {
      const row = values.subarray(b * vocab, (b + 1) * vocab);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let total = 0;
      for (const v of row) total += Math.exp(v - max);
      const order = Array.from({ length: vocab }, (_, i) => i).sort((x, y) => row[y]! - row[x]!).slice(0, k);
      return order.map((token) => ({ token, probability: Math.exp(row[token]! - max) / total, ...(this.tokenizer ? { text: this.tokenizer.decode([token]) } : {}) }));
    });
  }

  /**
   * Runs the model on `inputIds` (`[batch, seq]`) and returns what `extractionConfig` asks for at the
   * target positions, under easyroutine's keys, plus `mapping_index` (spec -> indices on the
   * position axis) and `logits` at the target positions.
   */
  forward(inputIds: Tensor | number[][], options: HookedForwardOptions = {}): ActivationCache {
    const plan = this.#plan(inputIds, options);
    let output: Tensor | null;
    try {
      output = this.model.forward(plan.ids, { hooks: plan.hooks, grad: plan.grad, output: plan.output }) as Tensor | null;
    } catch (error) {
      plan.release();
      throw error;
    }
    return plan.finish(output);
  }

  /** {@link HookedModel.forward} on the model's inference thread; `signal` cancels between hooks. */
  async forwardAsync(inputIds: Tensor | number[][], options: HookedForwardOptions & { signal?: AbortSignal } = {}): Promise<ActivationCache> {
    return this.#runAsync(this.#plan(inputIds, options), options.signal);
  }

  /**
   * Extraction over a dataset: runs {@link HookedModel.forwardAsync} on each batch (a token id
   * tensor or rows, or `{ inputIds, attentionMask?, pivotPositions? }`) and merges the caches as it
   * goes (one concatenation per key at the end). With `extractAvgAttnPattern`, `avg_pattern_L{l}H{h}`
   * holds the running mean over batches of the batch-mean pattern at the target positions, in
   * constant memory; with `extractHeadValuesProjected` too, `avg_value_weighted_pattern_L{l}H{h}`
   * holds the same for the pattern rows weighted per key by the norm of its projected value
   * (easyroutine's extract_avg_value, which it stored under `projected_value_…`). `onProgress(done, total)` is called after each batch; `signal` stops between
   * hooks and batches.
   */
  async extractCache(batches: Iterable<ExtractionBatch> | AsyncIterable<ExtractionBatch>, options: ExtractCacheOptions = {}): Promise<ActivationCache> {
    const merged = new ActivationCache();
    const running = new Map<string, NativeHook>();
    let done = 0;
    {
      using _deferred = merged.deferredMode();
      for await (const batch of batches as AsyncIterable<ExtractionBatch>) {
        options.signal?.throwIfAborted();
        const { inputIds, attentionMask, pivotPositions } = batch instanceof Tensor || Array.isArray(batch) ? { inputIds: batch, attentionMask: undefined, pivotPositions: undefined } : batch;
        const plan = this.#plan(inputIds, { ...options, attentionMask: attentionMask ?? options.attentionMask, pivotPositions: pivotPositions ?? options.pivotPositions }, running);
        merged.cat(await this.#runAsync(plan, options.signal));
        options.onProgress?.(++done, options.total);
      }
    }
    for (const [name, hook] of running) {
      if (name.startsWith('value_norms')) continue;
      const info = name.startsWith('avg_pattern') ? '[1, position, position]: running mean over batches' : '[1, position, key]: running mean of pattern x value norm';
      for (const [head, value] of hook.results() as [number, Tensor][]) merged.addWithInfo(`${name}H${head}`, value, info);
    }
    merged.addMetadata({ batches: done, targetTokenPositions: options.targetTokenPositions ?? ['all'], extractionConfig: extractionConfig(options.extractionConfig ?? {}), interventions: [...this.#interventions, ...(options.interventions ?? [])].map((i) => ({ ...i, patchingValues: i.patchingValues instanceof Tensor ? 'tensor' : i.patchingValues ?? 'ablation' })) });
    return merged;
  }

  async #runAsync(plan: Plan, signal: AbortSignal | undefined): Promise<ActivationCache> {
    let output: Tensor | null;
    try {
      output = (await this.model.forwardAsync(plan.ids, { hooks: plan.hooks, grad: plan.grad, output: plan.output, signal })) as Tensor | null;
    } catch (error) {
      plan.release();
      throw error;
    }
    return plan.finish(output);
  }

  #plan(inputIds: Tensor | number[][], options: HookedForwardOptions, running?: Map<string, NativeHook>): Plan {
    const ids = idsTensor(inputIds);
    const [batch, seq] = ids.shape as [number, number];
    const config = extractionConfig(options.extractionConfig ?? {});
    const specs = options.targetTokenPositions ?? ['all'];
    const spans = this.#spans(options.attentionMask, batch, seq);
    const { perRow, groupSizes, target, extractionKey } = this.#resolve(config, specs, spans, options);
    const extraction = this.#extraction(extractionKey, config, target);
    const hooks = [...extraction.hooks];
    if (running) hooks.push(...this.#runningAverages(config, target, running));

    // Order at a point: registered interventions, then per-call interventions on attention patterns
    // and scores (so pattern extraction sees the edit), then extraction, then per-call interventions
    // elsewhere (extraction sees the value before the edit), then your own hooks.
    const edits = (list: Intervention[]) => list.flatMap((iv) => this.#interventionHooks(iv, spans, options));
    const registered = edits(this.#interventions);
    const perCall = edits(options.interventions ?? []);
    const isAttentionMatrix = (point: string) => /:(pattern|scores)$/.test(point);
    const hookMap: Record<string, Hook[]> = {};
    for (const [point, hook] of registered) (hookMap[point] ??= []).push(hook);
    for (const [point, hook] of perCall) if (isAttentionMatrix(point)) (hookMap[point] ??= []).push(hook);
    for (const [point, hook] of hooks) (hookMap[point] ??= []).push(hook);
    for (const [point, hook] of perCall) if (!isAttentionMatrix(point)) (hookMap[point] ??= []).push(hook);
    for (const [point, own] of Object.entries(options.hooks ?? {})) (hookMap[point] ??= []).push(...(Array.isArray(own) ? own : [own]));

    const release = () => {
      // ids made here from number rows are ours to free
      if (ids !== inputIds) ids.dispose();
      for (const collector of extraction.collectors) collector.hook.reset();
      extraction.leaf?.reset();
      extraction.busy = false;
    };
    const finish = (output: Tensor | null) => {
      try {
        return this.#collect(output, { ids, config, specs, perRow, groupSizes, positions: target.positions, extraction, options });
      } finally {
        // what the cache needs of the output (logits at the targets) was copied by a kernel
        output?.dispose();
        release();
      }
    };
    return { ids, hooks: hookMap, grad: config.keepGradient, output: extraction.leaf !== undefined, finish, release };
  }

  #resolutions = new Map<string, Resolution>();

  /**
   * Resolves the target positions (and the pattern's row groups) per batch row. Without an attention
   * mask the result depends only on the options and the input's shape, so an extraction loop
   * resolves once (random specs too: they are seeded, per row).
   */
  #resolve(config: Readonly<ExtractionConfig>, specs: TokenPosition[], spans: SequenceSpan[], options: HookedForwardOptions): Resolution {
    const memoKey =
      options.attentionMask === undefined ? `${configKey(config)} ${JSON.stringify(specs)} ${spans.length}x${spans[0]?.length} ${JSON.stringify(options.pivotPositions ?? null)} ${options.seed ?? 0}` : undefined;
    const known = memoKey === undefined ? undefined : this.#resolutions.get(memoKey);
    if (known) return known;
    const resolveRows = (list: TokenPosition[]) => spans.map((span, row) => resolveTokenPositions(list, span, { pivotPositions: options.pivotPositions, seed: options.seed, row }));
    const perRow = resolveRows(specs);
    const groupSizes = perRow[0]!.map((g) => g.length);
    perRow.forEach((groups, row) => {
      if (groups.some((g, i) => g.length !== groupSizes[i])) {
        throw new InvalidArgumentError(`HookedForward: the target positions resolve to ${groups.map((g) => g.length)} positions in row ${row} but ${groupSizes} in row 0; rows must give equal counts`);
      }
    });
    const rowSpecs = config.attnPatternRowPositions;
    const target: Target = {
      positions: perRow.map(concatenated),
      groupSizes,
      offsets: spans.map((s) => s.offset),
      rows: config.extractAttnPattern && rowSpecs ? resolveRows(rowSpecs) : undefined,
    };
    const rows = target.rows ? target.rows.map((r) => r.map((g) => g.join(',')).join('|')).join(';') : '';
    const extractionKey = `${configKey(config)} ${target.positions.join(';')} ${target.groupSizes} ${target.offsets} ${rows}`;
    const resolution = { perRow, groupSizes, target, extractionKey };
    if (memoKey !== undefined) remember(this.#resolutions, memoKey, resolution, RESOLUTION_CACHE_SIZE);
    return resolution;
  }

  /** Builds the cache of one forward from what the extraction's kernels collected. */
  #collect(
    output: Tensor | null,
    { ids, config, specs, perRow, groupSizes, positions, extraction, options }: { ids: Tensor; config: Readonly<ExtractionConfig>; specs: TokenPosition[]; perRow: number[][][]; groupSizes: number[]; positions: number[][]; extraction: Extraction; options: HookedForwardOptions },
  ): ActivationCache {
    const arch = this.architecture;
    const { leaf, collectors } = extraction;
    const cache = new ActivationCache();
    if (leaf) {
      const embeddings = leaf.results() as Tensor;
      const last = output!.index(0, -1);
      const vocabularyIndex = options.vocabularyIndex ?? argmax(last.toFloat32Array());
      const [gradient] = grad(last.index(vocabularyIndex), [embeddings]);
      cache.addWithInfo('input_embeddings', embeddings, `${arch.embeddings}: [batch, seq, d_model], a leaf that requires grad`);
      cache.addWithInfo('input_embeddings_gradients', gradient!, `d logits[0, -1, ${vocabularyIndex}] / d input_embeddings: [batch, seq, d_model]`);
    }
    const results = new PackedResults();
    for (const collector of collectors) collector.collect(cache, results);
    if (config.saveInputIds) {
      const index = tensor(positions, { dtype: 'int64' });
      cache.addWithInfo('input_ids', gatherRows(ids, index), '[batch, position]: token ids');
    }
    let start = 0;
    const mappingIndex: Record<string, number[]> = {};
    specs.forEach((spec, i) => {
      const count = config.avg ? 1 : groupSizes[i]!;
      const indices = new Array<number>(count);
      for (let j = 0; j < count; j++) indices[j] = start + j;
      mappingIndex[typeof spec === 'string' ? spec : JSON.stringify(spec)] = indices;
      start += count;
    });
    cache.set('mapping_index', mappingIndex);
    // token_dict: per spec, the tokens of row 0 at its positions (text with a tokenizer, else ids)
    const rowIds = firstRowIds(ids);
    const tokenDict: Record<string, (string | number)[]> = {};
    specs.forEach((spec, i) => {
      const at = perRow[0]![i]!.map((p) => Number(rowIds[p]!));
      tokenDict[typeof spec === 'string' ? spec : JSON.stringify(spec)] = this.tokenizer ? at.map((id) => this.tokenizer!.decode([id])) : at;
    });
    cache.set('token_dict', tokenDict);
    cache.addMetadata({ targetTokenPositions: specs, pivotPositions: options.pivotPositions ?? null, extractionConfig: config });
    return cache;
  }

  /**
   * The extraction kernels for a config and resolved positions. Kernels are stateless between
   * forwards once reset, so a later forward with the same config and positions reuses them (creating
   * them costs more than a small model's forward); a plan still in use by a concurrent forward is not
   * shared.
   */
  #extraction(key: string, config: Readonly<ExtractionConfig>, target: Target): Extraction {
    const cached = this.#extractions.get(key);
    if (cached && !cached.busy) {
      // most recently used last
      this.#extractions.delete(key);
      this.#extractions.set(key, cached);
      cached.busy = true;
      return cached;
    }
    const built = this.#buildExtraction(config, target);
    built.busy = true;
    if (!cached) remember(this.#extractions, key, built, EXTRACTION_CACHE_SIZE);
    return built;
  }

  #extractions = new Map<string, Extraction>();

  #buildExtraction(config: Readonly<ExtractionConfig>, { positions, groupSizes, offsets, rows }: Target): Extraction {
    const groups = config.avg ? groupSizes : undefined;
    const collectors: Collector[] = [];
    const tokens = (key: string, point: string | undefined, what: string) => {
      if (!point) throw new InvalidArgumentError(`HookedModel: ${what} was not found in this architecture; pass it in the architecture overrides`);
      const hook = nativeHook('positions', { positions, groups, layout: 'tokens', avgOverExample: config.avgOverExample });
      collectors.push({ key, hook, collect: (cache, r) => addResult(cache, key, r.tensor(hook), `${point}: [batch, ${config.avg ? 'position group' : 'position'}, d]`) });
      return [point, hook] as const;
    };
    const hooks: [string, Hook][] = [];
    const add = (entry: readonly [string, NativeHook]) => hooks.push([entry[0], entry[1]]);
    const arch = this.architecture;

    if (config.extractEmbed) add(tokens('embeddings', arch.embeddings, 'the embeddings'));
    arch.layers.forEach((layer, i) => {
      const p = layer.points;
      if (config.extractResidIn) add(tokens(`resid_in_${i}`, p.resid_in, 'resid_in'));
      if (config.extractResidMid) add(tokens(`resid_mid_${i}`, p.resid_mid, 'the MLP norm (resid_mid is its input)'));
      if (config.extractResidOut) add(tokens(`resid_out_${i}`, p.resid_out, 'resid_out'));
      if (config.extractResidInPostLayernorm) add(tokens(`resid_in_post_layernorm_${i}`, p.attn_in, 'attn_in'));
      if (config.extractAttnIn) add(tokens(`attn_in_${i}`, p.attn_in, 'attn_in'));
      if (config.extractAttnOut) add(tokens(`attn_out_${i}`, p.attn_out, 'attn_out'));
      if (config.extractMlpOut) add(tokens(`mlp_out_${i}`, p.mlp_out, 'the MLP'));
      for (const [flag, name, point] of [
        [config.extractQueries, 'queries', p.queries],
        [config.extractKeys, 'keys', p.keys],
        [config.extractValues, 'values', p.values],
      ] as const) {
        if (!flag) continue;
        const hook = nativeHook('positions', { positions, groups, layout: 'heads', avgOverExample: config.avgOverExample });
        const key = `${name}_L${i}`;
        collectors.push({ key, hook, collect: (cache, r) => addResult(cache, key, r.tensor(hook), `${point}: [batch, position, heads * d_head]`) });
        hooks.push([point, hook]);
      }
      for (const [flag, name, point, kv] of [
        [config.extractHeadQueries, 'head_queries', p.queries, false],
        [config.extractHeadKeys, 'head_keys', p.keys, true],
        [config.extractHeadValues, 'head_values', p.values, true],
      ] as const) {
        if (!flag) continue;
        const hook = nativeHook('positions', { positions, groups, layout: 'per_head', avgOverExample: config.avgOverExample });
        collectors.push({
          key: `${name}_L${i}`,
          hook,
          collect: (cache, r) => {
            const perHead = r.tensors(hook);
            if (!perHead) return;
            const group = kv ? arch.nHeads / perHead.length : 1;
            for (let head = 0; head < arch.nHeads; head++) {
              if (!headWanted(config, i, head)) continue;
              // under grouped-query attention, query head h reads key/value head h // (H / Hkv)
              cache.addWithInfo(`${name}_L${i}H${head}`, perHead[Math.floor(head / group)]!, `${point}: [batch, position, d_head]`);
            }
          },
        });
        hooks.push([point, hook]);
      }
      for (const [flag, name, point] of [
        [config.extractHeadOut, 'head_out', p.head_output],
        [config.extractHeadValuesProjected, 'projected_value', p.values],
        [config.extractHeadKeysProjected, 'projected_key', p.keys],
        [config.extractHeadQueriesProjected, 'projected_query', p.queries],
      ] as const) {
        if (!flag) continue;
        const heads = wantedHeads(config, i, arch.nHeads);
        if (heads.length === 0) continue;
        const { weight, bias } = this.#outputProjection(i);
        const hook = nativeHook('project_heads', { positions, groups, avgOverExample: config.avgOverExample, weight: weight.native, bias: name === 'head_out' ? bias?.native : undefined, heads, nHeads: arch.nHeads });
        collectors.push({
          key: `${name}_L${i}`,
          hook,
          collect: (cache, r) => {
            for (const [head, value] of r.heads(hook)) cache.addWithInfo(`${name}_L${i}H${head}`, value, `${point} x W_O block: [batch, position, d_model]`);
          },
        });
        hooks.push([point, hook]);
      }
      const patternHeads = wantedHeads(config, i, arch.nHeads);
      if (config.extractAttnPattern && patternHeads.length > 0) {
        const heads = patternHeads;
        const hook = nativeHook('pattern', {
          positions,
          groups: groupSizes,
          rows: rows?.map((g) => g.flat()),
          rowGroups: rows?.[0]!.map((g) => g.length),
          offsets,
          heads,
          reduction: config.attnPatternAvg,
        });
        collectors.push({
          key: `pattern_L${i}`,
          hook,
          collect: (cache, r) => {
            for (const [head, value] of r.heads(hook)) {
              cache.addWithInfo(`pattern_L${i}H${head}`, value, rows && config.attnPatternAvg !== 'none' ? '[batch, row group, position group]' : '[batch, position, position]');
            }
          },
        });
        hooks.push([p.pattern, hook]);
      }
    });
    if (config.extractLastLayernorm) {
      if (!arch.finalNorm) throw new InvalidArgumentError('HookedModel: no final norm found for last_layernorm; pass finalNorm in the architecture overrides');
      const hook = nativeHook('statistics', { positions });
      collectors.push({ key: 'last_layernorm', hook, collect: (cache, r) => addResult(cache, 'last_layernorm', r.record(hook), '{mean, variance, second_moment}: [batch, position]') });
      hooks.push([`${arch.finalNorm}:input`, hook]);
    }
    let leaf: NativeHook | undefined;
    if (config.keepGradient) {
      leaf = nativeHook('gradient_leaf');
      hooks.push([arch.embeddings, leaf]);
    }
    if (config.saveLogits) {
      const hook = nativeHook('positions', { positions, groups, layout: 'tokens', avgOverExample: config.avgOverExample });
      collectors.push({ key: 'logits', hook, collect: (cache, r) => addResult(cache, 'logits', r.tensor(hook), '[batch, position, vocabulary]') });
      hooks.push(['output', hook]);
    }

    return { collectors, hooks, leaf, busy: false };
  }

  /** The running-average kernels of {@link HookedModel.extractCache}, kept across its batches. */
  #runningAverages(config: Readonly<ExtractionConfig>, { positions, groupSizes, offsets }: Target, running: Map<string, NativeHook>): [string, Hook][] {
    if (!config.extractAvgAttnPattern) return [];
    const arch = this.architecture;
    const hooks: [string, Hook][] = [];
    arch.layers.forEach((layer, i) => {
      const p = layer.points;
      const patternHeads = wantedHeads(config, i, arch.nHeads);
      if (patternHeads.length > 0) {
        let hook = running.get(`avg_pattern_L${i}`);
        if (!hook) {
          hook = nativeHook('pattern', { positions, groups: groupSizes, offsets, heads: patternHeads, reduction: 'none', runningMean: true });
          running.set(`avg_pattern_L${i}`, hook);
        } else {
          hook.configure({ positions, offsets });
        }
        hooks.push([p.pattern, hook]);
        if (config.extractHeadValuesProjected) {
          // easyroutine's extract_avg_value: each key weighted by the norm of its projected value
          let norms = running.get(`value_norms_L${i}`);
          let weighted = running.get(`avg_value_weighted_pattern_L${i}`);
          if (!norms || !weighted) {
            norms = nativeHook('value_norms', { weight: this.#outputProjection(i).weight.native, nHeads: arch.nHeads });
            weighted = nativeHook('value_weighted_pattern', { positions, heads: patternHeads, valueNorms: norms.native });
            running.set(`value_norms_L${i}`, norms);
            running.set(`avg_value_weighted_pattern_L${i}`, weighted);
          } else {
            weighted.configure({ positions });
          }
          hooks.push([p.values, norms], [p.pattern, weighted]);
        }
      }
    });
    return hooks;
  }

  #projections = new Map<number, { weight: Tensor; bias: Tensor | undefined }>();

  /** W_O and b_O of a layer (sharing the model's memory). */
  #outputProjection(layer: number): { weight: Tensor; bias: Tensor | undefined } {
    let found = this.#projections.get(layer);
    if (!found) {
      const path = this.architecture.layers[layer]?.outputProjection;
      if (!path) throw new InvalidArgumentError(`HookedModel: no output projection (W_O) found for layer ${layer}; pass outputProjection in the architecture overrides`);
      const parameters = this.model.parameters();
      const weight = parameters.get(`${path}.weight`);
      if (!weight) throw new InvalidArgumentError(`HookedModel: '${path}' has no weight to use as W_O`);
      found = { weight, bias: parameters.get(`${path}.bias`) };
      this.#projections.set(layer, found);
    }
    return found;
  }

  /** Adds interventions that apply to every later forward (before per-call ones). */
  registerInterventions(interventions: Intervention[]): void {
    for (const intervention of interventions) this.#interventionHooks(intervention, [], {}, true);
    this.#interventions.push(...interventions);
  }

  /** Removes every registered intervention. */
  cleanInterventions(): void {
    this.#interventions = [];
  }

  /** The registered interventions. */
  get interventions(): readonly Intervention[] {
    return this.#interventions;
  }

  /** The hooks that carry out one intervention on this batch (`validateOnly`: just check it). */
  #interventionHooks(iv: Intervention, spans: SequenceSpan[], options: HookedForwardOptions, validateOnly = false): [string, Hook][] {
    const arch = this.architecture;
    const fail = (why: string) => new InvalidArgumentError(`intervention on '${String(iv?.activation)}': ${why}`);
    if (iv === null || typeof iv !== 'object') throw new InvalidArgumentError('an intervention must be an object {type, activation, tokenPositions, ...}');
    const ablation = iv.patchingValues === undefined || iv.patchingValues === null || iv.patchingValues === 'ablation';
    if (!ablation && !(iv.patchingValues instanceof Tensor)) throw fail("patchingValues must be 'ablation', null or a Tensor");
    const edit = ablation ? { factor: iv.multiplicationValue ?? 0 } : { patch: (iv.patchingValues as Tensor).native };
    const resolve = (specs: TokenPosition[]) => {
      if (!Array.isArray(specs)) throw fail('tokenPositions must be an array of token positions');
      if (validateOnly) {
        specs.forEach(validateTokenPosition);
        return [];
      }
      return spans.map((span, row) => resolveTokenPositions(specs, span, { pivotPositions: options.pivotPositions, seed: options.seed, row }).flat());
    };
    const layerOf = (i: string) => {
      const layer = arch.layers[Number(i)];
      if (!layer) throw fail(`layer ${i} does not exist (the model has ${arch.layers.length})`);
      return layer;
    };
    let match: RegExpExecArray | null;
    if ((match = /^pattern_L(\d+)H(\d+)$/.exec(iv.activation))) {
      const layer = layerOf(match[1]!);
      const head = Number(match[2]);
      if (head >= arch.nHeads) throw fail(`head ${head} does not exist (${arch.nHeads} heads)`);
      const kind = iv.type.replace(/_pre_softmax$/, '');
      const preSoftmax = iv.type.endsWith('_pre_softmax');
      let rows: number[][] | undefined;
      let columns: number[][] | undefined;
      if (kind === 'columns') columns = resolve(iv.tokenPositions as TokenPosition[]);
      else if (kind === 'rows') rows = resolve(iv.tokenPositions as TokenPosition[]);
      else if (kind === 'grid') {
        const pair = iv.tokenPositions as [TokenPosition[], TokenPosition[]];
        if (!Array.isArray(pair) || pair.length !== 2 || !pair.every(Array.isArray)) throw fail("type 'grid' takes tokenPositions [query positions, key positions]");
        rows = resolve(pair[0]);
        columns = resolve(pair[1]);
      } else throw fail(`type '${iv.type}' does not apply to a pattern; use columns, rows or grid (or their _pre_softmax forms)`);
      if (validateOnly) return [];
      const point = preSoftmax ? layer.points.scores : layer.points.pattern;
      return [[point, nativeHook('edit_pattern', { head, rows, columns, preSoftmax, applySoftmax: iv.applySoftmax ?? false, ...edit })]];
    }
    if (iv.type !== 'full') throw fail(`type '${iv.type}' applies to patterns only; use 'full'`);
    const positions = resolve(iv.tokenPositions as TokenPosition[]);
    if ((match = /^(resid_in|resid_mid|resid_out|attn_in|attn_out|mlp_out)_(\d+)$/.exec(iv.activation))) {
      const point = layerOf(match[2]!).points[match[1] as 'resid_in'];
      if (!point) throw fail(`${match[1]} was not found in this architecture`);
      return validateOnly ? [] : [[point, nativeHook('edit_positions', { positions, ...edit })]];
    }
    if ((match = /^(queries|keys|values)_L(\d+)$/.exec(iv.activation))) {
      const layer = layerOf(match[2]!);
      const heads = match[1] === 'queries' ? arch.nHeads : arch.nKvHeads;
      if (validateOnly) return [];
      const point = layer.points[match[1] as 'queries'];
      return Array.from({ length: heads }, (_, head) => {
        // a patch is given as the cache key's [batch, position, heads * d_head]: each head takes its slice
        const perHead = ablation ? edit : { patch: (iv.patchingValues as Tensor).index('...', { start: head * arch.dHead, stop: (head + 1) * arch.dHead }).contiguous().native };
        return [point, nativeHook('edit_positions', { positions, head, ...perHead })] as [string, Hook];
      });
    }
    if ((match = /^head_(queries|keys|values|out)_L(\d+)H(\d+)$/.exec(iv.activation))) {
      const layer = layerOf(match[2]!);
      const head = Number(match[3]);
      const heads = match[1] === 'keys' || match[1] === 'values' ? arch.nKvHeads : arch.nHeads;
      if (head >= heads) throw fail(`head ${head} does not exist (${heads} ${heads === arch.nKvHeads && heads !== arch.nHeads ? 'key/value ' : ''}heads)`);
      const point = match[1] === 'out' ? layer.points.head_output : layer.points[match[1] as 'queries'];
      return validateOnly ? [] : [[point, nativeHook('edit_positions', { positions, head, ...edit })]];
    }
    throw fail('unknown activation; see Intervention for the names');
  }

  #spans(mask: Tensor | number[][] | undefined, batch: number, seq: number): SequenceSpan[] {
    if (mask === undefined) return Array.from({ length: batch }, () => ({ offset: 0, length: seq }));
    const values = mask instanceof Tensor ? Array.from(mask.to('float64').data as Float64Array) : mask.flat();
    if (values.length !== batch * seq) throw new InvalidArgumentError(`HookedModel.forward: attentionMask has ${values.length} entries; the input is [${batch}, ${seq}]`);
    return spansFromAttentionMask(values, batch, seq);
  }
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** ids[b, index[b, j]] for every row b. */
function gatherRows(ids: Tensor, index: Tensor): Tensor {
  const [batch, seq] = ids.shape as [number, number];
  const n = index.shape[1]!;
  const source = ids.to('int64').contiguous().copyData() as BigInt64Array;
  const at = index.copyData() as BigInt64Array;
  const out = new BigInt64Array(batch * n);
  for (let b = 0; b < batch; b++) for (let j = 0; j < n; j++) out[b * n + j] = source[b * seq + Number(at[b * n + j])]!;
  return tensor(out, [batch, n], { dtype: 'int64' });
}
