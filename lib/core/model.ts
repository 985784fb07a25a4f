/**
 * TorchScript models: load, inspect, run on the calling thread or on the model's own inference thread.
 * @module
 */
import { native, type NativeForwardOptions, type NativeHookSet, type NativeModel } from './binding';
import { AbortError, InvalidArgumentError, describeValue } from './errors';
import { toNativeSpec, type Hook, type HookHandle, type HookMap, type HookPoint, type HookPointKind, type NativeHookSpec } from './hooks';
import { HookSetCache } from './hook-set-cache';
import { Tensor, type Device } from './tensor';

/** A value a model's forward accepts: tensors, numbers, strings, booleans, null, and arrays/objects of them. */
export type ModelInput = Tensor | number | bigint | boolean | string | null | undefined | ModelInput[] | { [key: string]: ModelInput };

/** A value a model's forward returns: tensors (as handles), tuples/lists as arrays, string-keyed dicts as objects, other dicts as Maps. */
export type ModelOutput = Tensor | number | bigint | boolean | string | null | ModelOutput[] | { [key: string]: ModelOutput } | Map<ModelOutput, ModelOutput>;

/** A named tensor slot of a module (a parameter or a buffer) and its shape. */
export interface NamedShape {
  /** The attribute name within its module, e.g. `weight`. */
  name: string;
  /** The size of each dimension. */
  shape: number[];
}

/** A module of the model's tree. */
export interface ModuleInfo {
  /** Full dotted path from the root, e.g. `transformer.h.0.attn`; the root is `''`. */
  path: string;
  /** The module's class, e.g. `model.Attention` (`__torch__.` and tracing's mangling removed). */
  type: string;
  /** Parameters held directly by this module. */
  parameters: NamedShape[];
  /** Buffers held directly by this module (masks, running statistics...). */
  buffers: NamedShape[];
}

/** Options of {@link loadModel}. */
export interface LoadOptions {
  /** Where to load the weights (default `'cpu'`). A traced model also baked its trace device into its graph. */
  device?: Device;
  /** Load in training mode (default false: eval mode, dropout off). */
  training?: boolean;
  /**
   * Check every archive entry against its CRC-32 before libtorch parses it (default true). libtorch's
   * parsers can crash the process on damaged files; the check turns damage into a {@link ModelLoadError}.
   * It reads the whole file once (about 1 GB/s); turn it off only for files you trust.
   */
  verifyChecksums?: boolean;
}

/** Options of a forward call. */
export interface ForwardOptions {
  /** Record the autograd graph (default false: outputs do not require grad). */
  grad?: boolean;
  /**
   * Hooks for this call only, by point name (see {@link Model.hookPoints}); they run after the
   * model's persistent hooks on the same point. With no hooks at all the original forward runs
   * untouched; otherwise a graph with taps at exactly these points runs (built once per set of points).
   */
  hooks?: HookMap;
  /**
   * Extra points to tap with no hook on them. The graph that runs is built (and cached) per set of
   * tapped points, so naming a superset here lets calls with different hooks share one graph; it is
   * also how a benchmark measures taps alone.
   */
  taps?: string[];
  /**
   * Return the forward's output (default true). With false the forward returns null and its output
   * is freed at once, without a handle: for runs that need only what their hooks collect.
   */
  output?: boolean;
}

/** Options of {@link Model.forwardAsync}. */
export interface AsyncForwardOptions extends ForwardOptions {
  /** Cancels the forward if it has not started yet; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

function toNative(value: ModelInput): unknown {
  if (value instanceof Tensor) return value.native;
  if (Array.isArray(value)) return value.map(toNative);
  if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toNative(v);
    return out;
  }
  return value;
}

/** @internal Wraps native tensor handles found anywhere in a model output. */
export function fromNative(value: unknown): ModelOutput {
  if (value instanceof native.NativeTensor) return new Tensor(value as never);
  if (Array.isArray(value)) return value.map(fromNative);
  if (value instanceof Map) {
    const out = new Map<ModelOutput, ModelOutput>();
    for (const [k, v] of value) out.set(fromNative(k), fromNative(v));
    return out;
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, ModelOutput> = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromNative(v);
    return out;
  }
  return value as ModelOutput;
}

const registry = new FinalizationRegistry<NativeModel>((handle) => handle.dispose());

interface PersistentHook {
  point: string;
  hook: Hook;
}

/**
 * A loaded TorchScript model. Create with {@link loadModel}. `Output` is the type of what forward
 * returns (see {@link loadModel}).
 */
export class Model<Output extends ModelOutput = ModelOutput> implements Disposable {
  readonly #handle: NativeModel;
  #hooks: PersistentHook[] = [];
  #points: Map<string, HookPoint> | undefined;
  readonly #hookSets = new HookSetCache();
  // A frozen hook map (each HookedModel extraction plan passes one) cannot change: its set is found
  // by the map itself, without listing its hooks, while the persistent hooks stay as they were.
  #setsOfFrozenMaps = new WeakMap<HookMap, { hooksVersion: number; hookSet: NativeHookSet }>();
  #hooksVersion = 0;
  /** The file the model was loaded from. */
  readonly path: string;

  /** @internal */
  constructor(handle: NativeModel, path: string) {
    if (!(handle instanceof native.NativeModel)) throw new InvalidArgumentError('Model cannot be constructed from JS; use loadModel(path)');
    this.#handle = handle;
    this.path = path;
    registry.register(this, handle, this);
  }

  /** The device the weights were loaded on. */
  get device(): string {
    return this.#handle.device();
  }

  /** The forward signature as TorchScript declares it, e.g. `forward(Tensor idx) -> Tensor`. */
  get signature(): string {
    return this.#handle.signature();
  }

  /**
   * The extra files of the archive that loading reads, by name: `easyroutine.json` (the manifest
   * that `easyroutine export` writes, with the architecture mapping) and `tokenizer.json`, each when
   * the file has it.
   */
  get extraFiles(): Readonly<Record<string, string>> {
    return (this.#extraFiles ??= Object.freeze(this.#handle.extraFiles()));
  }

  #extraFiles: Readonly<Record<string, string>> | undefined;

  /** Every module of the tree, root first, depth-first in definition order. */
  modules(): ModuleInfo[] {
    return this.#handle.modules();
  }

  /** Every parameter by full dotted name, as tensors sharing the model's memory (edits change the model). */
  parameters(): Map<string, Tensor> {
    return new Map(this.#handle.parameters().map(([name, handle]) => [name, new Tensor(handle)]));
  }

  /**
   * Every hook point of the forward, in the order the forward reaches them: each module's input and
   * output by full path, and the internals of every attention found in the graph. See
   * {@link HookPoint} for the naming.
   */
  hookPoints(): HookPoint[] {
    return [...this.#pointMap().values()];
  }

  /** The shape of the value at every hook point for these inputs (null where the forward did not pass). */
  hookPointShapes(inputs: ModelInput | ModelInput[]): Map<string, number[] | null> {
    return new Map(this.#handle.hookPointShapes(argumentList(inputs)));
  }

  /**
   * The TorchScript IR of the graph that runs for this set of points, and how long building it took
   * (built afresh; forwards use a cached one). For inspection and benchmarks.
   */
  hookedGraph(points: string[]): {
    /** The graph's TorchScript IR, with an `easyroutine::tap` at each point. */
    graph: string;
    /** How long the passes took to build it. */
    buildMilliseconds: number;
  } {
    const { graph, buildMilliseconds } = this.#handle.hookedGraph(points);
    return { graph, buildMilliseconds };
  }

  /**
   * Adds a hook that runs on every later forward (sync and async) until removed. Persistent hooks
   * on a point run before per-call hooks, in the order they were added. An unknown point throws an
   * {@link InvalidArgumentError} suggesting the closest names.
   */
  addHook(point: string, hook: Hook): HookHandle {
    if (typeof point !== 'string') throw new InvalidArgumentError('Model.addHook: point must be a string');
    toNativeSpec(point, hook, undefined);
    this.#handle.validateHookPoints([point]);
    const entry: PersistentHook = { point, hook };
    this.#hooks.push(entry);
    this.#hooksVersion++;
    const remove = () => {
      const index = this.#hooks.indexOf(entry);
      if (index >= 0) this.#hooks.splice(index, 1);
      this.#hooksVersion++;
    };
    return { point, remove, [Symbol.dispose]: remove };
  }

  /** Removes every persistent hook, or those on one point. */
  clearHooks(point?: string): void {
    // a misspelt name would otherwise clear nothing, silently
    if (point !== undefined && !this.#hooks.some((h) => h.point === point) && !this.#pointMap().has(point)) this.#handle.validateHookPoints([point]);
    this.#hooks = point === undefined ? [] : this.#hooks.filter((h) => h.point !== point);
    this.#hooksVersion++;
  }

  /** The persistent hooks, in run order. */
  get hooks(): ReadonlyArray<{
    /** The hook point's name. */
    point: string;
    /** The closure or native hook added there. */
    hook: Hook;
  }> {
    return this.#hooks.map(({ point, hook }) => ({ point, hook }));
  }

  #pointMap(): Map<string, HookPoint> {
    if (!this.#points) {
      this.#points = new Map(
        this.#handle.hookPoints().map((p) => [p.name, Object.freeze({ ...p, kind: p.kind as HookPointKind })]),
      );
    }
    return this.#points;
  }

  #nativeOptions(options: ForwardOptions): NativeForwardOptions {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new InvalidArgumentError(`forward: options must be an object ({ hooks, grad, output, taps }), got ${describeValue(options)}`);
    }
    if (options.grad !== undefined && typeof options.grad !== 'boolean') throw new InvalidArgumentError(`forward: options.grad must be a boolean, got ${describeValue(options.grad)}`);
    const grad = options.grad ?? false;
    if (options.output !== undefined && typeof options.output !== 'boolean') throw new InvalidArgumentError('forward: options.output must be a boolean');
    const output = options.output === false ? ({ output: false } as const) : {};
    const perCall = options.hooks;
    const taps = options.taps ?? [];
    if (!(Array.isArray(taps) && taps.every((t) => typeof t === 'string'))) {
      throw new InvalidArgumentError('forward: options.taps must be an array of hook point names');
    }
    if (this.#hooks.length === 0 && (perCall === undefined || perCall === null) && taps.length === 0) return { grad, ...output };
    if (perCall !== undefined && perCall !== null && (typeof perCall !== 'object' || Array.isArray(perCall))) {
      throw new InvalidArgumentError('forward: options.hooks must be an object of point name -> hook or hooks');
    }
    const frozen = taps.length === 0 && perCall !== undefined && perCall !== null && Object.isFrozen(perCall);
    if (frozen) {
      const known = this.#setsOfFrozenMaps.get(perCall);
      if (known?.hooksVersion === this.#hooksVersion) return { grad, ...output, hookSet: known.hookSet };
    }
    const pairs: unknown[] = [];
    for (const { point, hook } of this.#hooks) pairs.push(point, hook);
    for (const point of Object.keys(perCall ?? {})) {
      const hooks = perCall![point]!;
      if (Array.isArray(hooks)) for (const hook of hooks) pairs.push(point, hook);
      else pairs.push(point, hooks);
    }
    const hookSet = this.#hookSets.get({ pairs, taps }, () => {
      const points = this.#pointMap();
      const specs: NativeHookSpec[] = [];
      for (let i = 0; i < pairs.length; i += 2) specs.push(toNativeSpec(pairs[i] as string, pairs[i + 1] as Hook, points.get(pairs[i] as string)));
      return this.#handle.hookSet(specs, taps);
    });
    if (frozen && Object.values(perCall).every((hooks) => !Array.isArray(hooks) || Object.isFrozen(hooks))) {
      this.#setsOfFrozenMaps.set(perCall, { hooksVersion: this.#hooksVersion, hookSet });
    }
    return { grad, ...output, hookSet };
  }

  /**
   * Runs forward on the calling thread. `inputs` is the argument list (a single non-array value
   * is taken as the only argument); arrays inside it become tuples or lists as the model declares.
   * JS hooks run inline on this thread.
   */
  forward(inputs: ModelInput | ModelInput[], options: ForwardOptions & { output: false }): null;
  forward(inputs: ModelInput | ModelInput[], options?: ForwardOptions): Output;
  forward(inputs: ModelInput | ModelInput[], options: ForwardOptions = {}): Output | null {
    return fromNative(this.#handle.forward(argumentList(inputs), this.#nativeOptions(options))) as Output | null;
  }

  /**
   * Runs forward on this model's inference thread, leaving the JS thread free. Tensors over JS
   * memory are copied first, so the caller may reuse its buffers at once. JS hooks still run on the
   * JS thread (the forward waits for each), with the forward's grad mode applied; the signal is
   * checked before each hook as well as before the forward starts.
   */
  forwardAsync(inputs: ModelInput | ModelInput[], options: AsyncForwardOptions & { output: false }): Promise<null>;
  forwardAsync(inputs: ModelInput | ModelInput[], options?: AsyncForwardOptions): Promise<Output>;
  async forwardAsync(inputs: ModelInput | ModelInput[], options: AsyncForwardOptions = {}): Promise<Output | null> {
    const { signal } = options;
    checkSignal(signal, 'forwardAsync');
    signal?.throwIfAborted();
    const token = signal ? new native.AbortToken() : null;
    const onAbort = () => token?.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return fromNative(await this.#handle.forwardAsync(argumentList(inputs), this.#nativeOptions(options), token)) as Output | null;
    } catch (error) {
      if (error instanceof AbortError && signal?.aborted) throw signal.reason;
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Whether the model is in training mode. */
  get training(): boolean {
    return this.#handle.isTraining();
  }

  /** Switches to training mode (dropout on) or back; returns the model. */
  train(mode = true): this {
    this.#handle.setTraining(mode);
    this.#points = undefined;
    this.#hookSets.clear();
    this.#setsOfFrozenMaps = new WeakMap();
    return this;
  }

  /** Switches to eval mode (the default after loading); returns the model. */
  eval(): this {
    return this.train(false);
  }

  /** Releases the model. Queued async forwards reject with {@link DisposedError}; a running one finishes. */
  dispose(): void {
    registry.unregister(this);
    this.#hookSets.clear();
    this.#setsOfFrozenMaps = new WeakMap();
    this.#handle.dispose();
  }

  /** Whether {@link Model.dispose} was called. */
  get disposed(): boolean {
    return this.#handle.isDisposed();
  }

  /** Same as {@link Model.dispose}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function argumentList(inputs: ModelInput | ModelInput[]): unknown[] {
  return (Array.isArray(inputs) ? inputs : [inputs]).map(toNative);
}

/** An InvalidArgumentError unless `signal` is undefined or an AbortSignal. */
export function checkSignal(signal: unknown, caller: string): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError(`${caller}: options.signal must be an AbortSignal (e.g. AbortSignal.timeout(ms) or an AbortController's signal), got ${signal === null ? 'null' : typeof signal}`);
  }
}

/**
 * Loads a TorchScript file saved with `torch.jit.save` (traced or scripted).
 *
 * `Output` types what `forward` returns: by default a {@link Tensor}, which is what Hugging Face
 * exports (`easyroutine export`), nanoGPT and most models return, so `model.forward(ids).shape`
 * compiles. The file's {@link Model.signature} says what yours returns; for another output, say
 * so: `loadModel<[Tensor, Tensor]>(path)`, `loadModel<{ logits: Tensor }>(path)`, or
 * `loadModel<ModelOutput>(path)` to check at run time.
 * @example
 * ```ts
 * using model = loadModel('models/tiny-gpt.pt');
 * const logits = model.forward(tensor([[1, 2, 3]], { dtype: 'int64' }));
 * logits.shape; // [1, 3, 64]
 * ```
 */
export function loadModel<Output extends ModelOutput = Tensor>(path: string, options: LoadOptions = {}): Model<Output> {
  if (typeof path !== 'string') throw new InvalidArgumentError('loadModel: path must be a string');
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`loadModel: options must be an object ({ device, training, verifyChecksums }), got ${typeof options}`);
  for (const flag of ['training', 'verifyChecksums'] as const) {
    if (options[flag] !== undefined && typeof options[flag] !== 'boolean') throw new InvalidArgumentError(`loadModel: options.${flag} must be a boolean, got ${typeof options[flag]} ${JSON.stringify(options[flag])}`);
  }
  if (options.device !== undefined && typeof options.device !== 'string') throw new InvalidArgumentError(`loadModel: options.device must be a string such as 'cpu' or 'cuda:0', got ${typeof options.device}`);
  const handle = native.loadModel(path, options.device ?? 'cpu', options.training ?? false, options.verifyChecksums ?? true);
  return new Model<Output>(handle, path);
}
