/**
 * ActivationCache: what an extraction returns, a map from keys (`resid_out_3`, `pattern_L1H2`, ...)
 * to tensors and other values, that merges batch after batch and saves as safetensors.
 *
 * Merging ({@link ActivationCache.cat}): both caches must have the same keys; tensors are
 * concatenated on dim 0 when their other dimensions agree, else stacked when 0-d; keys with a
 * registered aggregation use it (defaults: `mapping_index` keeps the newest, which must equal the
 * one held, `token_dict` and `offset` concatenate lists, `last_layernorm` concatenates each
 * statistic). In deferred mode merges
 * are queued and done once, which turns n concatenations of growing tensors into one.
 *
 * Differences from easyroutine, on purpose: tensors whose dimensions beyond the first differ (batches
 * of different lengths extracted at every position), and mapping indices that differ, are an
 * {@link InvalidArgumentError} naming the key and both shapes (easyroutine kept a list of the two
 * tensors and the newest index, which describes only the last batch); sizes below 1 KB print in bytes, the grouped memory
 * tree groups every `<name>_L{l}H{h}` key (easyroutine misses `head_values_L*H*`), and the cache
 * saves to safetensors (readable by Python's `safetensors`) instead of pickle.
 * @module
 */
import { InvalidArgumentError, describeValue } from '../core/errors';
import { Tensor, cat, stack, type DType, type Device } from '../core/tensor';
import { isResolvedExtractionConfig } from './extraction-config';
import { readSafetensorsFile, writeSafetensorsFile, type SafetensorsContents } from './safetensors-file';

/** A value held by the cache. */
export type CacheValue = Tensor | number | string | boolean | null | CacheValue[] | { [key: string]: CacheValue };

type CacheObject = { [key: string]: CacheValue };

/** Merges the value already in the cache with the incoming one. */
export type Aggregation = (current: CacheValue, incoming: CacheValue, key: string) => CacheValue;

function isTensor(value: unknown): value is Tensor {
  return value instanceof Tensor;
}

function isPlainObject(value: unknown): value is CacheObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !isTensor(value);
}

/**
 * Concatenates on dim 0 when the other dimensions agree, else stacks equal shapes (0-d tensors); a
 * tensor whose other dimensions differ (batches of different lengths with 'all' positions) is an
 * error, where easyroutine made a list of the two that no later step expects.
 */
function mergeValues(current: CacheValue, incoming: CacheValue, key: string): CacheValue {
  if (isTensor(current) && isTensor(incoming)) {
    const a = current.shape;
    const b = incoming.shape;
    if (a.length > 0 && a.length === b.length && a.every((d, i) => i === 0 || d === b[i])) return cat([current, incoming], 0);
    if (a.length === b.length && a.every((d, i) => d === b[i])) return stack([current, incoming], 0);
    throw new InvalidArgumentError(
      `ActivationCache.cat: '${key}' has shape [${a.join(', ')}] here and [${b.join(', ')}] in the new batch, which differ beyond dim 0; extract positions that select as many tokens in every batch (e.g. 'last'), pad the batches to one length (attentionMask), or registerAggregation('${key}', (current, incoming) => …) to merge them your way`,
    );
  }
  if (Array.isArray(current)) return [...current, ...(Array.isArray(incoming) ? incoming : [incoming])];
  return [current, incoming];
}

function concatLists(current: CacheValue, incoming: CacheValue): CacheValue {
  const list = (v: CacheValue) => (Array.isArray(v) ? v : [v]);
  return [...list(current), ...list(incoming)];
}

function perStatistic(current: CacheValue, incoming: CacheValue, key: string): CacheValue {
  if (!isPlainObject(current) || !isPlainObject(incoming)) return mergeValues(current, incoming, key);
  const out: CacheObject = {};
  for (const statistic of Object.keys(current)) out[statistic] = statistic in incoming ? mergeValues(current[statistic] as CacheValue, incoming[statistic] as CacheValue, `${key}.${statistic}`) : (current[statistic] as CacheValue);
  return out;
}

/** Keeps the newest mapping_index, which must equal the one held: rows of both batches use it. */
function sameMappingIndex(current: CacheValue, incoming: CacheValue): CacheValue {
  if (JSON.stringify(current) !== JSON.stringify(incoming)) {
    throw new InvalidArgumentError(
      `ActivationCache.cat: 'mapping_index' differs between the batches (${JSON.stringify(current)} and ${JSON.stringify(incoming)}): the token positions select a different number of positions in each; use positions that select as many in every batch (e.g. 'last'), or keep the batches as separate caches`,
    );
  }
  return incoming;
}

/** The key that holds {@link ActivationCache.metadata}, as easyroutine stores it. */
const METADATA_KEY = 'metadata';

const DEFAULT_AGGREGATIONS: ReadonlyMap<string, Aggregation> = new Map<string, Aggregation>([
  ['mapping_index', sameMappingIndex],
  ['token_dict', concatLists],
  ['target_tokens', concatLists],
  ['offset', concatLists],
  ['last_layernorm', perStatistic],
]);

function nbytes(value: CacheValue | undefined): number {
  if (value === undefined || value === null) return 0;
  if (isTensor(value)) return value.numel * BYTES[value.dtype as DType];
  if (Array.isArray(value)) return value.reduce((sum: number, v) => sum + nbytes(v), 0);
  if (isPlainObject(value)) return Object.values(value).reduce((sum: number, v) => sum + nbytes(v), 0);
  return 0;
}

const BYTES: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };

/** "512 B", "4.00 KB", "1.50 MB": decimal units, two decimals from 1 KB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(2)} ${units[unit]}`;
}

/** `resid_out_3` -> `resid_out`, `pattern_L1H2` -> `pattern_L1`, `head_values_L0H3` -> `head_values_L0`. */
export function cacheKeyGroup(key: string): string {
  const perHead = /^(.*_L\d+)H\d+$/.exec(key);
  if (perHead) return perHead[1]!;
  const perLayer = /^(.*?)_(\d+)$/.exec(key);
  if (perLayer) return perLayer[1]!;
  return key;
}

/** The descriptions of a cache with none, shared until one is added (see #ownInfo). */
const NO_INFO: Map<string, string> = new Map();

/** A value a cache computes when it is first read (see ActivationCache._setDeferred). */
class Deferred {
  constructor(readonly compute: () => CacheValue) {}
}

/** Keys and values of an extraction; see the module documentation. */
export class ActivationCache implements Iterable<[string, CacheValue]>, Disposable {
  // Deferred: computed on first read (a forward's token_dict, target_tokens, mapping_index, which
  // loops seldom read, cost it more than its tensors did)
  #values = new Map<string, CacheValue | Deferred>();
  #hasDeferred = false;
  // Descriptions by key. A forward's cache starts with its plan's, shared and read-only until this
  // cache changes one (a Map per forward, filled key by key, cost more than the rest of the cache).
  #info: Map<string, string> = NO_INFO;
  #infoShared = true;
  // the defaults until one is registered or removed (a forward makes a cache; most never change them)
  #aggregations: ReadonlyMap<string, Aggregation> = DEFAULT_AGGREGATIONS;
  #deferred: ActivationCache[] | undefined;
  #metadata: Record<string, unknown> = {};

  /**
   * Free-form description of how the cache was made (positions, config, interventions). Once set or
   * added to, it is also the `metadata` key, as in easyroutine (the same object).
   */
  get metadata(): Record<string, unknown> {
    return this.#metadata;
  }

  /** Replaces the metadata (a plain object), and the `metadata` key with it. */
  set metadata(value: Record<string, unknown>) {
    if (!isPlainObject(value)) throw new InvalidArgumentError(`ActivationCache.metadata must be a plain object, got ${describeValue(value)}`);
    this.#metadata = value as Record<string, unknown>;
    this.#values.set(METADATA_KEY, this.#metadata as CacheValue);
  }

  /** The value of `key`, or undefined. */
  get(key: string): CacheValue | undefined {
    return this.#read(key);
  }

  /** The tensor at `key`; throws an {@link InvalidArgumentError} when it is missing or not a tensor. */
  tensor(key: string): Tensor {
    const value = this.#read(key);
    if (!isTensor(value)) {
      throw new InvalidArgumentError(value === undefined ? `no key '${key}' in the cache (it has ${this.size} keys)` : `'${key}' holds a ${Array.isArray(value) ? 'list' : typeof value}, not a tensor`);
    }
    return value;
  }

  /** Stores a value under `key` (replacing what was there); returns the cache. */
  set(key: string, value: CacheValue): this {
    this.#values.set(key, value);
    return this;
  }

  /** Stores a value with a description of its shape or meaning, e.g. `[batch, position, d_model]`. */
  addWithInfo(key: string, value: CacheValue, info: string): this {
    this.#values.set(key, value);
    if (!this.#infoShared || this.#info.get(key) !== info) this.#ownInfo().set(key, info);
    return this;
  }

  /** The description given to {@link ActivationCache.addWithInfo}. */
  info(key: string): string | undefined {
    return this.#values.has(key) ? this.#info.get(key) : undefined;
  }

  /** Whether `key` is in the cache. */
  has(key: string): boolean {
    return this.#values.has(key);
  }

  /** Removes `key` and its info, without disposing its tensors; whether it was there. */
  delete(key: string): boolean {
    if (this.#info.has(key)) this.#ownInfo().delete(key);
    return this.#values.delete(key);
  }

  /** The keys, in insertion order. */
  keys(): string[] {
    return [...this.#values.keys()];
  }

  /** The values, in insertion order. */
  values(): CacheValue[] {
    return [...this.#resolved().values()];
  }

  /** `[key, value]` pairs, in insertion order. */
  entries(): [string, CacheValue][] {
    return [...this.#resolved().entries()];
  }

  /** The number of keys. */
  get size(): number {
    return this.#values.size;
  }

  /** Iterates `[key, value]` pairs, as a Map does (`for (const [key, value] of cache)`). */
  [Symbol.iterator](): Iterator<[string, CacheValue]> {
    return this.#resolved().entries();
  }

  /** Sets every key of `other` (overwriting). */
  update(other: ActivationCache | Record<string, CacheValue>): this {
    const entries = other instanceof ActivationCache ? other.entries() : Object.entries(other);
    for (const [key, value] of entries) {
      // the metadata key is this cache's own object, never one shared with `other`
      if (key === METADATA_KEY && isPlainObject(value)) this.addMetadata(value as Record<string, unknown>);
      else this.#values.set(key, value);
    }
    if (other instanceof ActivationCache) for (const [key, info] of other.#info) if (other.#values.has(key)) this.#ownInfo().set(key, info);
    return this;
  }

  /** Merges keys starting with `prefix` with `fn` from now on (the longest matching prefix wins). */
  registerAggregation(prefix: string, fn: Aggregation): void {
    if (typeof prefix !== 'string') throw new InvalidArgumentError(`ActivationCache.registerAggregation: prefix must be a string, got ${describeValue(prefix)}`);
    if (typeof fn !== 'function') throw new InvalidArgumentError(`ActivationCache.registerAggregation: fn must be a function (current, incoming) => merged, got ${describeValue(fn)}`);
    this.#ownAggregations().set(prefix, fn);
  }

  /** Stops merging keys of `prefix` with the function registered for it. */
  removeAggregation(prefix: string): void {
    this.#ownAggregations().delete(prefix);
  }

  #ownAggregations(): Map<string, Aggregation> {
    if (this.#aggregations === DEFAULT_AGGREGATIONS) this.#aggregations = new Map(DEFAULT_AGGREGATIONS);
    return this.#aggregations as Map<string, Aggregation>;
  }

  #aggregationFor(key: string): Aggregation {
    let best: [string, Aggregation] | undefined;
    for (const entry of this.#aggregations) if (key.startsWith(entry[0]) && (!best || entry[0].length > best[0].length)) best = entry;
    return best ? best[1] : mergeValues;
  }

  /**
   * Merges another batch into this cache. An empty cache takes `other`'s values; otherwise the key
   * sets must match (an {@link InvalidArgumentError} lists the differences).
   */
  cat(other: ActivationCache): this {
    if (!(other instanceof ActivationCache)) {
      throw new InvalidArgumentError(`ActivationCache.cat: expected an ActivationCache, got ${describeValue(other)}`);
    }
    if (this.#deferred) {
      this.#deferred.push(other);
      return this;
    }
    this.#merge([other]);
    return this;
  }

  #merge(batches: ActivationCache[]): void {
    const pending: ActivationCache[] = [];
    for (const other of batches) {
      if (other === this || other.size === 0) continue;
      if (this.size === 0) {
        this.update(other);
        continue;
      }
      pending.push(other);
      // metadata describes a cache, it is not a batch's value: one side may have it alone
      const missing = this.keys().filter((k) => k !== METADATA_KEY && !other.has(k));
      const extra = other.keys().filter((k) => k !== METADATA_KEY && !this.has(k));
      if (missing.length || extra.length) {
        throw new InvalidArgumentError(
          `ActivationCache.cat: key sets differ (missing from the new batch: ${missing.join(', ') || 'none'}; only in the new batch: ${extra.join(', ') || 'none'})`,
        );
      }
    }
    if (pending.length === 0) return;
    for (const batch of pending) {
      const incoming = batch.get(METADATA_KEY);
      if (isPlainObject(incoming)) this.addMetadata(incoming as Record<string, unknown>);
    }
    for (const key of this.keys()) {
      if (key === METADATA_KEY) continue;
      const aggregate = this.#aggregationFor(key);
      if (aggregate === mergeValues && pending.every((b) => isTensor(b.get(key))) && isTensor(this.get(key))) {
        const all = [this.get(key) as Tensor, ...pending.map((b) => b.get(key) as Tensor)];
        const first = all[0]!.shape;
        const catable = first.length > 0 && all.every((t) => t.shape.length === first.length && t.shape.every((d, i) => i === 0 || d === first[i]));
        if (catable) {
          this.#values.set(key, cat(all, 0));
          continue;
        }
      }
      let value = this.get(key) as CacheValue;
      for (const batch of pending) value = aggregate(value, batch.get(key) as CacheValue, key);
      this.#values.set(key, value);
    }
  }

  /**
   * Queues merges until the returned handle is disposed, then merges them all at once (one
   * concatenation per key). `using deferred = cache.deferredMode();`
   */
  deferredMode(): Disposable {
    if (this.#deferred) throw new InvalidArgumentError('ActivationCache.deferredMode: already deferred');
    this.#deferred = [];
    return {
      [Symbol.dispose]: () => {
        const queued = this.#deferred ?? [];
        this.#deferred = undefined;
        if (this.size === 0 && queued.length > 0) this.update(queued.shift()!);
        this.#merge(queued);
      },
    };
  }

  /** Adds entries to {@link ActivationCache.metadata} (and so to the `metadata` key). */
  addMetadata(entries: Record<string, unknown>): this {
    Object.assign(this.#metadata, entries);
    this.#values.set(METADATA_KEY, this.#metadata as CacheValue);
    return this;
  }

  /** A cache whose tensors are on `device` (other values shared). */
  to(device: string): ActivationCache {
    const out = new ActivationCache();
    const move = (value: CacheValue): CacheValue => {
      if (isTensor(value)) return value.to(device as Device);
      if (Array.isArray(value)) return value.map(move);
      if (isPlainObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, move(v)]));
      return value;
    };
    for (const [key, value] of this.#resolved()) out.#values.set(key, move(value));
    out.#info = new Map(this.#info);
    out.#infoShared = false;
    out.#aggregations = this.#aggregations === DEFAULT_AGGREGATIONS ? DEFAULT_AGGREGATIONS : new Map(this.#aggregations);
    if (this.has(METADATA_KEY)) out.metadata = { ...this.metadata };
    return out;
  }

  /** The same as `to('cpu')`. */
  cpu(): ActivationCache {
    return this.to('cpu');
  }

  /** The bytes held by tensors, of one key or all, as text ("4.00 KB"). */
  memorySize(key?: string): string {
    return formatBytes(key === undefined ? this.values().reduce((sum: number, v) => sum + nbytes(v), 0) : nbytes(this.#read(key)));
  }

  /** Bytes per key, or per group of keys (`resid_out_*` -> `resid_out`, `pattern_L1H*` -> `pattern_L1`). */
  memoryTree(grouped = false): Record<string, string> {
    const totals = new Map<string, number>();
    for (const [key, value] of this.#resolved()) {
      const name = grouped ? cacheKeyGroup(key) : key;
      totals.set(name, (totals.get(name) ?? 0) + nbytes(value));
    }
    return Object.fromEntries([...totals].map(([k, v]) => [k, formatBytes(v)]));
  }

  /**
   * Releases every tensor the cache holds (nested ones too) and empties it. Tensors are released by
   * GC otherwise; disposing right away keeps memory flat in loops (`using cache = model.forward(...)`).
   */
  dispose(): void {
    const tensors: Tensor[] = [];
    // primitives (most of the metadata's values) are skipped without a call, and so is a forward's
    // extraction config (in its metadata), which holds no tensor
    const gather = (value: object) => {
      if (isTensor(value)) {
        tensors.push(value);
        return;
      }
      if (isResolvedExtractionConfig(value)) return;
      for (const item of Array.isArray(value) ? value : Object.values(value)) if (item !== null && typeof item === 'object') gather(item);
    };
    // a deferred value is plain data, never computed here
    for (const value of this.#values.values()) if (value !== null && typeof value === 'object' && !(value instanceof Deferred)) gather(value);
    Tensor._disposeAll(tensors);
    this.#values.clear();
    this.#hasDeferred = false;
    this.#info = NO_INFO;
    this.#infoShared = true;
  }

  /** @internal `key` holds what `compute` returns, computed when first read (from plain data only). */
  _setDeferred(key: string, compute: () => CacheValue): void {
    this.#values.set(key, new Deferred(compute));
    this.#hasDeferred = true;
  }

  #read(key: string): CacheValue | undefined {
    const value = this.#values.get(key);
    if (!(value instanceof Deferred)) return value;
    const computed = value.compute();
    this.#values.set(key, computed);
    return computed;
  }

  /** The values, every deferred one computed. */
  #resolved(): Map<string, CacheValue> {
    if (this.#hasDeferred) {
      for (const [key, value] of this.#values) if (value instanceof Deferred) this.#values.set(key, value.compute());
      this.#hasDeferred = false;
    }
    return this.#values as Map<string, CacheValue>;
  }

  /**
   * @internal Starts the descriptions from `infos` (an extraction plan's, for the keys it may add),
   * shared until this cache changes one.
   */
  _shareInfo(infos: ReadonlyMap<string, string>): void {
    this.#info = infos as Map<string, string>;
    this.#infoShared = true;
  }

  #ownInfo(): Map<string, string> {
    if (this.#infoShared) {
      this.#info = new Map(this.#info);
      this.#infoShared = false;
    }
    return this.#info;
  }

  /** Same as {@link ActivationCache.dispose}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Saves as a safetensors file: tensors by key (nested ones as `key.sub` / `key.0`), everything else in its metadata. */
  save(path: string): void {
    const { tensors, metadata } = encodeCache(this);
    try {
      writeSafetensorsFile(path, tensors, metadata);
    } catch (error) {
      throw fileError('save', path, error);
    }
  }

  /** Loads a file written by {@link ActivationCache.save} (or any safetensors file: its tensors become keys). */
  static load(path: string): ActivationCache {
    let contents: SafetensorsContents;
    try {
      contents = readSafetensorsFile(path, 'ActivationCache.load');
    } catch (error) {
      if (error instanceof InvalidArgumentError) throw error;
      throw fileError('load', path, error);
    }
    return decodeCache(contents);
  }
}

/** A file system failure as an InvalidArgumentError naming the path and what it is, the original as its cause. */
function fileError(operation: 'save' | 'load', path: string, error: unknown): InvalidArgumentError {
  const code = (error as NodeJS.ErrnoException)?.code;
  const why =
    code === 'ENOENT' ? (operation === 'load' ? 'no such file' : 'its folder does not exist') : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : String((error as Error)?.message ?? error);
  const wrapped = new InvalidArgumentError(`ActivationCache.${operation}: cannot ${operation === 'load' ? 'read' : 'write'} '${path}': ${why}`);
  (wrapped as { cause?: unknown }).cause = error;
  return wrapped;
}

// ---------------------------------------------------------------- the cache in a safetensors file

type Layout = { tensor: string } | { list: Layout[] } | { object: Record<string, Layout> } | { value: unknown };

/**
 * Refuses what the safetensors header's JSON would drop or cannot hold (a bigint, a function, a
 * symbol, a cycle) with an error naming where it is, instead of a TypeError or a value silently
 * missing after load. `what` names the root (`metadata`, `key 'x'`).
 */
function checkJson(value: unknown, what: string, at = '', seen = new Set<unknown>()): void {
  const where = `${what}${at}`;
  if (typeof value === 'bigint') throw new InvalidArgumentError(`ActivationCache.save: ${where} is a bigint (${value}n), which the file's JSON cannot hold; store it as a string or a number`);
  if (typeof value === 'function' || typeof value === 'symbol') throw new InvalidArgumentError(`ActivationCache.save: ${where} is a ${typeof value}, which the file cannot hold`);
  if (value === null || typeof value !== 'object' || isTensor(value)) return;
  if (seen.has(value)) throw new InvalidArgumentError(`ActivationCache.save: ${where} refers back to itself, which the file's JSON cannot hold`);
  seen.add(value);
  if (Array.isArray(value)) value.forEach((item, i) => checkJson(item, what, `${at}[${i}]`, seen));
  else for (const [k, item] of Object.entries(value)) checkJson(item, what, `${at}.${k}`, seen);
  seen.delete(value);
}

/** The cache as a safetensors file's tensors and metadata strings (its layout, infos and metadata). */
function encodeCache(cache: ActivationCache): { tensors: [string, Tensor][]; metadata: Record<string, string> } {
  const tensors: [string, Tensor][] = [];
  const describe = (value: CacheValue, name: string): Layout => {
    if (isTensor(value)) {
      tensors.push([name, value]);
      return { tensor: name };
    }
    if (Array.isArray(value)) return { list: value.map((v, i) => describe(v, `${name}.${i}`)) };
    if (isPlainObject(value)) return { object: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v, `${name}.${k}`)])) };
    return { value };
  };
  const layout: Record<string, Layout> = {};
  for (const [key, value] of cache) {
    // the metadata key is written once, as easyroutine.metadata
    if (key === METADATA_KEY) continue;
    checkJson(value, `key '${key}'`);
    layout[key] = describe(value, key);
  }
  checkJson(cache.metadata, 'metadata');
  const info = Object.fromEntries(cache.keys().filter((k) => cache.info(k) !== undefined).map((k) => [k, cache.info(k)]));

  return {
    tensors,
    metadata: { 'easyroutine.layout': JSON.stringify(layout), 'easyroutine.info': JSON.stringify(info), 'easyroutine.metadata': JSON.stringify(cache.metadata) },
  };
}

/** The cache a safetensors file holds: its layout rebuilt, or each tensor a key (a file from elsewhere). */
function decodeCache({ metadata: meta, tensors }: SafetensorsContents): ActivationCache {
  const cache = new ActivationCache();
  const layout: Record<string, Layout> | undefined = meta['easyroutine.layout'] ? JSON.parse(meta['easyroutine.layout']) : undefined;
  const build = (l: Layout): CacheValue => {
    if ('tensor' in l) return tensors.get(l.tensor)!;
    if ('list' in l) return l.list.map(build);
    if ('object' in l) return Object.fromEntries(Object.entries(l.object).map(([k, v]) => [k, build(v)]));
    return l.value as CacheValue;
  };
  if (layout) {
    for (const [key, l] of Object.entries(layout)) cache.set(key, build(l));
  } else {
    for (const [name, t] of tensors) cache.set(name, t);
  }
  const info: Record<string, string> = meta['easyroutine.info'] ? JSON.parse(meta['easyroutine.info']) : {};
  for (const [key, text] of Object.entries(info)) cache.addWithInfo(key, cache.get(key)!, text);
  if (meta['easyroutine.metadata']) cache.metadata = JSON.parse(meta['easyroutine.metadata']);
  return cache;
}
