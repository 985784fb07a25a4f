/**
 * HookedModel: easyroutine's extraction API over a TorchScript model. A forward takes target token
 * positions, an {@link ExtractionConfig} and returns an {@link ActivationCache} with easyroutine's keys
 * and shapes, every value gathered by a native kernel (no per-element JS).
 *
 * This file plans a forward (which hooks run where, in which order) and runs it; `./forward/` holds
 * the steps of the plan (positions, extraction kernels, running averages, the cache's assembly) and
 * `./interventions` the edits.
 * @module
 */
import { InvalidArgumentError, MissingDependencyError, describeValue } from '../core/errors';
import type { Hook, HookMap } from '../core/hooks';
import { checkSignal, loadModel, type LoadOptions, type Model } from '../core/model';
import { Tensor, tensor } from '../core/tensor';
import { ActivationCache } from './activation-cache';
import { detectArchitecture } from './architecture/detect';
import { mappingFromManifest, readManifest } from './architecture/manifest';
import { applyOverrides, type ArchitectureMapping, type ArchitectureOverrides } from './architecture/mapping';
import { OutputProjections } from './architecture/output-projection';
import { extractionConfig, type ExtractionConfigInput } from './extraction-config';
import { assembleCache } from './forward/cache-assembly';
import { fullMask, takesAttentionMask } from './forward/inputs';
import { generate, type GenerateOptions, type Generation } from './generation';
import { topK } from './softmax';
import { ExtractionKernels } from './forward/extraction';
import { PositionResolver } from './forward/positions';
import { RunningAverages } from './forward/running-averages';
import { interventionHooks, type Intervention } from './interventions';
import { embeddedTokenizer, encodeText, type Tokenizer } from './tokenization';
import { resolveTokenPositions, spansFromAttentionMask, type SequenceSpan, type TokenPosition } from './token-positions';

/**
 * What a HookedModel runs on: token ids (a `[batch, seq]` int64 tensor, or rows of ids) or text (a
 * prompt, or an array of prompts), which needs a tokenizer that encodes (the one the export embeds,
 * or one given). Rows or prompts of unequal lengths are padded on the left and masked.
 */
export type HookedInput = Tensor | number[][] | string | readonly string[];

/** One of the top predictions of {@link HookedModel.predict}. */
export interface Prediction {
  /** The token id. */
  token: number;
  /** Its probability (softmax of the logits at the last real position). */
  probability: number;
  /** The decoded token, when the model has a tokenizer. */
  text?: string;
}

/** One batch of {@link HookedModel.extractCache}. */
export type ExtractionBatch =
  | HookedInput
  | {
      /** The batch's ids or prompts. */
      inputIds: HookedInput;
      /** Its mask, when the ids are padded (prompts make their own). */
      attentionMask?: Tensor | number[][];
      /** Its cut points for `inputs-partition-K` specs. */
      pivotPositions?: number[];
    };

/** Options of {@link HookedModel.forward}. */
export interface HookedForwardOptions {
  /** Which positions to extract (default `['all']`); see the token position grammar. */
  targetTokenPositions?: TokenPosition[];
  /** Cut points of the `inputs-partition-K` specs. */
  pivotPositions?: number[];
  /** What to extract (default: logits only). */
  extractionConfig?: ExtractionConfigInput;
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
  /**
   * Record the autograd graph (default: only with `keepGradient`), for gradients with respect to
   * tensors your hooks keep (e.g. a `gradient_site` native hook's).
   */
  grad?: boolean;
}

/** Options of {@link HookedModel.extractCache}. */
export interface ExtractCacheOptions extends HookedForwardOptions {
  /** Called after each batch with the number done and `total` when given. */
  onProgress?: (done: number, total: number | undefined) => void;
  /** The number of batches, for progress reports (default: the array's length when batches is an array). */
  total?: number;
  /** Stops the extraction between hooks and between batches; the promise rejects with the reason. */
  signal?: AbortSignal;
}

/** What one forward runs and how it turns the kernels' results into a cache. */
interface Plan {
  ids: Tensor;
  /** The forward's arguments: the ids, and the attention mask where the export takes one. */
  args: Tensor[];
  hooks: Record<string, Hook[]>;
  grad: boolean;
  /** Whether the cache needs the forward's output (keepGradient's gradient of a logit), else null. */
  output: boolean;
  /** Builds the cache and frees the extraction kernels for the next forward. */
  finish(output: Tensor | null): ActivationCache;
  /** Frees the extraction kernels after a failed forward. */
  release(): void;
}

/** An InvalidArgumentError unless `tokenizer` is undefined or has `decode(ids) -> string`. */
function checkTokenizer(tokenizer: unknown): void {
  if (tokenizer !== undefined && (tokenizer === null || typeof (tokenizer as Tokenizer).decode !== 'function')) {
    throw new InvalidArgumentError(`HookedModel: tokenizer must have decode(ids: number[]) => string (e.g. a tokenizers.js Tokenizer), got ${describeValue(tokenizer)}`);
  }
}

/**
 * The ids as a tensor, and the attention mask: the one given, or, for rows of unequal lengths, one
 * built from the left padding this adds (`padId`; causal LMs continue the right end, so that is
 * where the real tokens go).
 */
function batchOf(inputIds: Tensor | number[][], mask: Tensor | number[][] | undefined, padId: number): { ids: Tensor; mask: Tensor | number[][] | undefined } {
  if (inputIds instanceof Tensor) return { ids: inputIds, mask };
  if (!Array.isArray(inputIds) || !inputIds.every(Array.isArray)) throw new InvalidArgumentError(`HookedModel.forward: inputIds must be a Tensor, an array of token id rows, a string or an array of strings, got ${describeValue(inputIds)}`);
  if (inputIds.length === 0 || inputIds.some((row) => row.length === 0)) throw new InvalidArgumentError('HookedModel.forward: inputIds must have at least one row, and every row at least one token');
  const longest = Math.max(...inputIds.map((row) => row.length));
  if (mask !== undefined || inputIds.every((row) => row.length === longest)) return { ids: tensor(inputIds, { dtype: 'int64' }), mask };
  const padded = inputIds.map((row) => [...new Array<number>(longest - row.length).fill(padId), ...row]);
  const built = inputIds.map((row) => [...new Array<number>(longest - row.length).fill(0), ...new Array<number>(row.length).fill(1)]);
  return { ids: tensor(padded, { dtype: 'int64' }), mask: built };
}

/**
 * A model with easyroutine's extraction API.
 * @example
 * ```ts
 * using model = HookedModel.load('models/induction-2l.pt');
 * const cache = model.forward('w7 w9 w4 w7 w9', { targetTokenPositions: ['last'], extractionConfig: { extractResidOut: true, extractAttnPattern: true } });
 * cache.tensor('resid_out_1').shape; // [1, 1, 64]
 * ```
 */
export class HookedModel {
  /** The underlying model (its own hooks and forwards still work). */
  readonly model: Model;
  /** Where the semantic sites are; see {@link detectArchitecture}. */
  readonly architecture: ArchitectureMapping;
  #interventions: Intervention[] = [];
  readonly #positions = new PositionResolver();
  readonly #kernels: ExtractionKernels;
  readonly #projections: OutputProjections;
  /** Whether the export's forward takes `(input_ids, attention_mask)`. */
  readonly #takesMask: boolean;

  #givenTokenizer: Tokenizer | undefined;
  /** The archive's tokenizer once read (null: it has none, or @huggingface/tokenizers is absent). */
  #embedded: Tokenizer | null | undefined;

  /**
   * `overrides` replace what the mapping says. The mapping is the file's manifest (written by
   * `easyroutine export`) when it has one, unless `options.useManifest` is false; otherwise it is
   * detected from the graph ({@link detectArchitecture}).
   */
  constructor(model: Model, overrides: ArchitectureOverrides = {}, tokenizer?: Tokenizer, options: { useManifest?: boolean } = {}) {
    checkTokenizer(tokenizer);
    this.model = model;
    const manifest = options.useManifest === false ? undefined : readManifest(model);
    // a file with the exporter's manifest needs no heuristics
    this.architecture = manifest ? applyOverrides(mappingFromManifest(model, manifest), overrides) : detectArchitecture(model, overrides);
    this.#takesMask = takesAttentionMask(model);
    this.#givenTokenizer = tokenizer;
    this.#projections = new OutputProjections(model, this.architecture);
    this.#kernels = new ExtractionKernels(this.architecture, this.#projections, new Set(model.hookPoints().map((p) => p.name)));
  }

  /** Loads a TorchScript file and maps its architecture (see the constructor). */
  static load(path: string, options: LoadOptions & { architecture?: ArchitectureOverrides; tokenizer?: Tokenizer; useManifest?: boolean } = {}): HookedModel {
    checkTokenizer(options?.tokenizer);
    return new HookedModel(loadModel(path, options), options.architecture, options.tokenizer, { useManifest: options.useManifest });
  }

  /**
   * Releases the model and everything this HookedModel keeps for it (extraction plans and their
   * kernels, the output projections' handles); later calls throw {@link DisposedError}.
   */
  dispose(): void {
    this.#kernels.clear();
    this.#projections.dispose();
    this.model.dispose();
  }

  /** Whether {@link HookedModel.dispose} (or the model's own dispose) was called. */
  get disposed(): boolean {
    return this.model.disposed;
  }

  /** Same as {@link HookedModel.dispose}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * Decodes token ids for {@link HookedModel.toStringTokens}, predictions and `token_dict`, and
   * encodes string prompts: the one given (to the constructor, {@link HookedModel.load} or set here),
   * else the one the export embeds (`tokenizer.json`, read on first use), else undefined.
   */
  get tokenizer(): Tokenizer | undefined {
    if (this.#givenTokenizer) return this.#givenTokenizer;
    if (this.#embedded === undefined) {
      try {
        this.#embedded = embeddedTokenizer(this.model) ?? null;
      } catch (error) {
        // without the optional package the ids still work; string prompts say what is missing
        if (!(error instanceof MissingDependencyError)) throw error;
        this.#embedded = null;
      }
    }
    return this.#embedded ?? undefined;
  }

  /** Sets the tokenizer used from now on (undefined: back to the embedded one, if any). */
  set tokenizer(tokenizer: Tokenizer | undefined) {
    checkTokenizer(tokenizer);
    this.#givenTokenizer = tokenizer;
  }

  // Single tokens decoded so far, for the tokenizer they were decoded with: every cache names the
  // tokens at its targets, and decoding one took ~0.4 us, 13 us of a 33-token forward.
  #tokenStrings: { tokenizer: Tokenizer; strings: Map<number, string> } | undefined;

  /** A function decoding one token id with the current tokenizer (remembered), or undefined without one. */
  #tokenDecoder(): ((id: number) => string) | undefined {
    const tokenizer = this.tokenizer;
    if (!tokenizer) return undefined;
    if (this.#tokenStrings?.tokenizer !== tokenizer) this.#tokenStrings = { tokenizer, strings: new Map() };
    const { strings } = this.#tokenStrings;
    return (id) => {
      let text = strings.get(id);
      if (text === undefined) {
        text = tokenizer.decode([id]);
        strings.set(id, text);
      }
      return text;
    };
  }

  /** The tokenizer for text, or an error that says why there is none. */
  #textTokenizer(caller: string): Tokenizer {
    const tokenizer = this.tokenizer;
    if (tokenizer) return tokenizer;
    // the archive has a tokenizer.json: the optional package is what is missing (this throws it)
    if (this.model.extraFiles['tokenizer.json']) embeddedTokenizer(this.model);
    throw new InvalidArgumentError(`${caller}: text needs a tokenizer, and this model has none; pass token ids, or a tokenizer (HookedModel.load(path, { tokenizer: loadTokenizer(json) })), or export the model with its tokenizer.json (easyroutine export)`);
  }

  /** Token id rows of a prompt or prompts; anything else is returned as it is. */
  #tokenRows(input: HookedInput, caller: string): Tensor | number[][] {
    if (typeof input === 'string') return [encodeText(this.#textTokenizer(caller), input, caller)];
    if (Array.isArray(input) && input.length > 0 && input.every((p) => typeof p === 'string')) {
      const tokenizer = this.#textTokenizer(caller);
      return (input as readonly string[]).map((text) => encodeText(tokenizer, text, caller));
    }
    return input as Tensor | number[][];
  }

  /**
   * Every hook point's shape on this input (null where the value is no tensor), as
   * {@link Model.hookPointShapes}, with the attention mask where the export takes one.
   */
  hookPointShapes(input: HookedInput): Map<string, number[] | null> {
    const { ids, mask } = batchOf(this.#tokenRows(input, 'HookedModel.hookPointShapes'), undefined, this.tokenizer?.padTokenId ?? 0);
    const maskArgument = !this.#takesMask ? undefined : mask === undefined ? fullMask(ids) : tensor(mask as number[][], { dtype: 'int64' });
    try {
      return this.model.hookPointShapes(maskArgument ? [ids, maskArgument] : [ids]);
    } finally {
      if (ids !== input) ids.dispose();
      maskArgument?.dispose();
    }
  }

  /**
   * Where token position specs land in each row of this input, as a forward resolves them (per row,
   * on its real tokens: padding shifts them), the specs' positions one after the other.
   */
  resolvePositions(input: HookedInput, specs: TokenPosition[], options: { attentionMask?: Tensor | number[][]; pivotPositions?: number[]; seed?: number } = {}): number[][] {
    const caller = 'HookedModel.resolvePositions';
    const { ids, mask } = batchOf(this.#tokenRows(input, caller), options.attentionMask, this.tokenizer?.padTokenId ?? 0);
    try {
      const [batch, seq] = ids.shape as [number, number];
      return this.#spans(mask, batch, seq).map((span, row) => resolveTokenPositions(specs, span, { pivotPositions: options.pivotPositions, seed: options.seed, row }).flat());
    } finally {
      if (ids !== input) ids.dispose();
    }
  }

  /** The token ids of a prompt as the tokenizer encodes it, with the special tokens it adds (TransformerLens's `to_tokens`, unpadded). */
  toTokens(text: string): number[] {
    const caller = 'HookedModel.toTokens';
    if (typeof text !== 'string') throw new InvalidArgumentError(`${caller}: expected a string, got ${describeValue(text)}`);
    return encodeText(this.#textTokenizer(caller), text, caller);
  }

  /**
   * Each token as text (needs a tokenizer): of these ids, or of a prompt as the tokenizer encodes it
   * (with the special tokens it adds), as TransformerLens's `to_str_tokens`.
   */
  toStringTokens(input: readonly number[] | string): string[] {
    const caller = 'HookedModel.toStringTokens';
    const ids = typeof input === 'string' ? encodeText(this.#textTokenizer(caller), input, caller) : input;
    if (!Array.isArray(ids)) throw new InvalidArgumentError(`${caller}: expected an array of token ids or a string, got ${describeValue(input)}`);
    const decode = this.#tokenDecoder();
    if (!decode) throw new InvalidArgumentError(`${caller}: no tokenizer; pass one to HookedModel.load({ tokenizer }) or set model.tokenizer`);
    return ids.map((id) => decode(id));
  }

  /**
   * The k most likely next tokens after each row's last real token, with their probabilities
   * (softmax of the logits), most likely first.
   */
  predict(inputIds: HookedInput, options: { k?: number; attentionMask?: Tensor | number[][] } = {}): Prediction[][] {
    const k = options.k ?? 5;
    if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`HookedModel.predict: k must be a positive integer, got ${k}`);
    const logits = this.forward(inputIds, { targetTokenPositions: ['last'], attentionMask: options.attentionMask }).tensor('logits');
    const [batch, , vocab] = logits.shape as [number, number, number];
    const values = logits.toFloat32Array();
    return Array.from({ length: batch }, (_, b) => {
      const top = topK(values.subarray(b * vocab, (b + 1) * vocab), k);
      return top.map((p) => ({ ...p, ...(this.tokenizer ? { text: this.tokenizer.decode([p.token]) } : {}) }));
    });
  }

  /**
   * Runs the model on `inputIds` (`[batch, seq]`) and returns what `extractionConfig` asks for at the
   * target positions, under easyroutine's keys, plus `mapping_index` (spec -> indices on the
   * position axis; with `avg`, `info: 'avg'` too) and `logits` at the target positions (never
   * averaged over positions, as in easyroutine).
   * @example
   * ```ts
   * const cache = model.forward([[0, 7, 9, 4, 7, 9]], {
   *   targetTokenPositions: ['last', [1, 3]],
   *   extractionConfig: { extractResidOut: true },
   *   interventions: [{ type: 'full', activation: 'head_out_L1H1', tokenPositions: ['last'], patchingValues: 'ablation' }],
   * });
   * cache.get('mapping_index'); // { last: [0], '[1,3]': [1, 2] }
   * ```
   */
  forward(inputIds: HookedInput, options: HookedForwardOptions = {}): ActivationCache {
    const plan = this.#plan(inputIds, options);
    let output: Tensor | null;
    try {
      output = this.model.forward(plan.args, { hooks: plan.hooks, grad: plan.grad, output: plan.output }) as Tensor | null;
    } catch (error) {
      plan.release();
      throw error;
    }
    return plan.finish(output);
  }

  /** {@link HookedModel.forward} on the model's inference thread; `signal` cancels between hooks. */
  async forwardAsync(inputIds: HookedInput, options: HookedForwardOptions & { signal?: AbortSignal } = {}): Promise<ActivationCache> {
    checkSignal(options.signal, 'HookedModel.forwardAsync');
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
   * @example
   * ```ts
   * const merged = await model.extractCache([['w1 w2 w3', 'w4 w5'], ['w6 w7']], {
   *   targetTokenPositions: ['last'],
   *   extractionConfig: { extractResidOut: true },
   *   onProgress: (done, total) => console.log(`${done}/${total}`),
   * });
   * merged.tensor('resid_out_0').shape; // [3, 1, 64]
   * ```
   */
  async extractCache(batches: Iterable<ExtractionBatch> | AsyncIterable<ExtractionBatch>, options: ExtractCacheOptions = {}): Promise<ActivationCache> {
    checkSignal(options.signal, 'HookedModel.extractCache');
    const iterable = batches !== null && typeof batches === 'object' && (Symbol.iterator in batches || Symbol.asyncIterator in batches);
    if (!iterable) throw new InvalidArgumentError(`HookedModel.extractCache: batches must be an iterable or async iterable of batches (an array, a generator), got ${describeValue(batches)}`);
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
      throw new InvalidArgumentError(`HookedModel.extractCache: onProgress must be a function (done, total) => void, got ${describeValue(options.onProgress)}`);
    }
    // an array says how many batches there are
    const total = options.total ?? (Array.isArray(batches) ? batches.length : undefined);
    const merged = new ActivationCache();
    const running = new RunningAverages(this.architecture, this.#projections);
    let done = 0;
    {
      using _deferred = merged.deferredMode();
      for await (const batch of batches as AsyncIterable<ExtractionBatch>) {
        options.signal?.throwIfAborted();
        const { inputIds, attentionMask, pivotPositions } = batch instanceof Tensor || Array.isArray(batch) || typeof batch === 'string' ? { inputIds: batch as HookedInput, attentionMask: undefined, pivotPositions: undefined } : (batch as Exclude<ExtractionBatch, HookedInput>);
        const plan = this.#plan(inputIds, { ...options, attentionMask: attentionMask ?? options.attentionMask, pivotPositions: pivotPositions ?? options.pivotPositions }, running);
        merged.cat(await this.#runAsync(plan, options.signal));
        options.onProgress?.(++done, total);
      }
    }
    running.addTo(merged);
    // the file's name (without .pt) names the model, for ActivationSaver's folders
    const modelName = this.model.path.split(/[\\/]/).pop()!.replace(/\.pt$/, '');
    merged.addMetadata({ modelName, batches: done, targetTokenPositions: options.targetTokenPositions ?? ['all'], extractionConfig: extractionConfig(options.extractionConfig ?? {}), interventions: [...this.#interventions, ...(options.interventions ?? [])].map((i) => ({ ...i, patchingValues: i.patchingValues instanceof Tensor ? 'tensor' : i.patchingValues ?? 'ablation' })) });
    return merged;
  }

  async #runAsync(plan: Plan, signal: AbortSignal | undefined): Promise<ActivationCache> {
    let output: Tensor | null;
    try {
      output = (await this.model.forwardAsync(plan.args, { hooks: plan.hooks, grad: plan.grad, output: plan.output, signal })) as Tensor | null;
    } catch (error) {
      plan.release();
      throw error;
    }
    return plan.finish(output);
  }

  #plan(input: HookedInput, options: HookedForwardOptions, running?: RunningAverages): Plan {
    const inputIds = this.#tokenRows(input, 'HookedModel.forward');
    if (inputIds !== input && options.attentionMask !== undefined) {
      throw new InvalidArgumentError('HookedModel.forward: attentionMask cannot be given with text prompts; the mask of their left padding is built');
    }
    const { ids, mask } = batchOf(inputIds, options.attentionMask, this.tokenizer?.padTokenId ?? 0);
    const [batch, seq] = ids.shape as [number, number];
    const config = extractionConfig(options.extractionConfig ?? {});
    const specs = options.targetTokenPositions ?? ['all'];
    if (!Array.isArray(specs)) throw new InvalidArgumentError(`HookedModel.forward: targetTokenPositions must be an array of token positions, e.g. ['last'] or [0, [2, 5]], got ${JSON.stringify(specs)}`);
    const spans = this.#spans(mask, batch, seq);
    const { perRow, groupSizes, target, extractionKey } = this.#positions.resolve(config, specs, spans, seq, { pivotPositions: options.pivotPositions, seed: options.seed, masked: mask !== undefined });
    // the export takes the mask as its second argument: the given one, else all ones
    const maskArgument = !this.#takesMask ? undefined : mask === undefined ? fullMask(ids) : mask instanceof Tensor ? mask : tensor(mask, { dtype: 'int64' });
    const extraction = this.#kernels.acquire(extractionKey, config, target);

    // Order at a point: registered interventions, then per-call interventions on attention patterns
    // and scores (so pattern extraction sees the edit), then extraction, then per-call interventions
    // elsewhere (extraction sees the value before the edit), then your own hooks.
    if (options.interventions !== undefined && !Array.isArray(options.interventions)) {
      throw new InvalidArgumentError(`HookedModel.forward: interventions must be an array of interventions, got ${describeValue(options.interventions)}`);
    }
    const extractionOnly = !running && this.#interventions.length === 0 && !options.interventions?.length && options.hooks === undefined;
    let hookMap: Record<string, Hook[]> = extraction.hookMap;
    if (!extractionOnly) {
      const hooks = [...extraction.hooks];
      if (running) hooks.push(...running.hooks(config, target));
      const edits = (list: Intervention[]) => list.flatMap((iv) => interventionHooks(this.architecture, iv, spans, options));
      const registered = edits(this.#interventions);
      const perCall = edits(options.interventions ?? []);
      const isAttentionMatrix = (point: string) => /:(pattern|scores)$/.test(point);
      hookMap = {};
      for (const [point, hook] of registered) (hookMap[point] ??= []).push(hook);
      for (const [point, hook] of perCall) if (isAttentionMatrix(point)) (hookMap[point] ??= []).push(hook);
      for (const [point, hook] of hooks) (hookMap[point] ??= []).push(hook);
      for (const [point, hook] of perCall) if (!isAttentionMatrix(point)) (hookMap[point] ??= []).push(hook);
      for (const [point, own] of Object.entries(options.hooks ?? {})) (hookMap[point] ??= []).push(...(Array.isArray(own) ? own : [own]));
    }

    // `collected`: the cache was built, which took the collectors' results (and reset them)
    const release = (collected = false) => {
      // ids and masks made here are ours to free
      if (ids !== inputIds) ids.dispose();
      if (maskArgument !== undefined && maskArgument !== options.attentionMask) maskArgument.dispose();
      this.#kernels.release(extraction, collected);
    };
    const finish = (output: Tensor | null) => {
      let collected = false;
      try {
        const cache = assembleCache(output, {
          architecture: this.architecture,
          decodeToken: this.#tokenDecoder(),
          ids,
          config,
          specs,
          perRow,
          groupSizes,
          positions: target.positions,
          wholeSequence: target.wholeSequence,
          extraction,
          pivotPositions: options.pivotPositions,
          vocabularyIndex: options.vocabularyIndex,
        });
        collected = true;
        return cache;
      } finally {
        // what the cache needs of the output (logits at the targets) was copied by a kernel
        output?.dispose();
        release(collected);
      }
    };
    return { ids, args: maskArgument ? [ids, maskArgument] : [ids], hooks: hookMap, grad: config.keepGradient || options.grad === true, output: extraction.leaf !== undefined, finish, release };
  }

  /**
   * Generates tokens after each prompt: greedy, or sampled with `temperature`, `topK`, `topP` and a
   * `seed`; up to `maxNewTokens`, a row stopping after one of `stopTokens`. Every step is a full
   * forward of the sequence so far, so it works for any export, with the registered interventions,
   * `interventions` and `hooks` applied at every step (positions resolve on the sequence so far:
   * `'last'` is the newest token). `extractionConfig` extracts from the finished sequences (and
   * from every step with `extractEachStep`). `signal` stops between steps; `onToken` reports each.
   * @example
   * ```ts
   * const { tokens, text } = await model.generate('w7 w9 w4 w7', { maxNewTokens: 3 });
   * text; // [' w9 w4 w7']: the induction heads continue the repeat
   * ```
   */
  generate(input: HookedInput, options: GenerateOptions = {}): Promise<Generation> {
    return generate(this, input, options);
  }

  /** Adds interventions that apply to every later forward (before per-call ones). */
  registerInterventions(interventions: Intervention[]): void {
    if (!Array.isArray(interventions)) throw new InvalidArgumentError(`HookedModel.registerInterventions: expected an array of interventions, got ${describeValue(interventions)}`);
    for (const intervention of interventions) interventionHooks(this.architecture, intervention, [], {}, true);
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

  #spans(mask: Tensor | number[][] | undefined, batch: number, seq: number): SequenceSpan[] {
    if (mask === undefined) {
      const spans: SequenceSpan[] = [];
      for (let row = 0; row < batch; row++) spans.push({ offset: 0, length: seq });
      return spans;
    }
    const values = mask instanceof Tensor ? Array.from(mask.to('float64').data as Float64Array) : mask.flat();
    if (values.length !== batch * seq) throw new InvalidArgumentError(`HookedModel.forward: attentionMask has ${values.length} entries; the input is [${batch}, ${seq}]`);
    return spansFromAttentionMask(values, batch, seq);
  }
}
