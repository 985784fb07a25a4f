/**
 * Hooks: code that runs at a named point of a model's forward (a module's input or output, or an
 * attention internal) and reads, edits or replaces the value there.
 *
 * A hook is either a JS function `(value, context) => Tensor | void` or a {@link NativeHook}: a C++
 * kernel that runs with no JS per call. At one point, the model's persistent hooks
 * ({@link Model.addHook}) run first in the order they were added, then the call's own hooks in the
 * order given; each sees the value the previous one left.
 * @module
 */
import { native, type NativeKernel, type NativeTensor } from './binding';
import { InvalidArgumentError, describeValue } from './errors';
import { Tensor } from './tensor';

/** What a hook point is. */
export type HookPointKind = 'input' | 'output' | 'queries' | 'keys' | 'values' | 'scores' | 'pattern' | 'head_output';

/**
 * A place in the forward where hooks can run. Names are `<module path>:<point>`:
 * - module points: `transformer.h.0.mlp:input`, `transformer.h.0:output`, `lm_head:output`; a forward
 *   taking several tensors has `:input` for its hidden states (the argument called `hidden_states`, else
 *   the first tensor) and `:input.<argument>` for each other; tuple and dict outputs have `:output.<index>` and
 *   `:output.<key>`; the root module's points are plain `input` and `output`;
 * - attention internals of an attention module found in the graph: `:queries`, `:keys`, `:values`
 *   (`[batch, heads, seq, d_head]`, after RoPE; keys and values with the key/value heads), `:scores`
 *   (before the softmax, mask applied), `:pattern` (after the softmax: the value that multiplies V) and
 *   `:head_output` (pattern times V, before the heads are merged and projected).
 */
export interface HookPoint {
  /** The point's full name, e.g. `transformer.h.0.attn:pattern`. */
  readonly name: string;
  /** The module's full path, e.g. `transformer.h.0.attn` (`''` for the root). */
  readonly module: string;
  /** The module's class, e.g. `model.GPTAttention`. */
  readonly type: string;
  /** What the point is. */
  readonly kind: HookPointKind;
  /** The block index taken from the module path (`h.3` -> 3), or null outside the blocks. */
  readonly layer: number | null;
}

/** What a JS hook receives besides the value: the hook point it runs at. */
export type HookContext = HookPoint;

/**
 * A JS hook. It receives the value (a tensor sharing memory with the forward's value when on the CPU,
 * so edits through `data` are seen downstream) and the point. Return a tensor of the same shape,
 * dtype and device to replace the value, or nothing to keep it. A hook that throws aborts the forward
 * with that error. Hooks are synchronous.
 *
 * The value is borrowed: its handle is released when the hook returns (later use throws a
 * `DisposedError`), so the forward's activations are not pinned until a garbage collection.
 * `value.clone()` keeps a copy; TypedArrays taken from `data` stay valid.
 */
export type HookFunction = (value: Tensor, context: HookContext) => Tensor | void | undefined;

/** A hook: a JS function or a native kernel. */
export type Hook = HookFunction | NativeHook;

/**
 * Per-call hooks: point name -> hook or hooks (run in array order). A frozen map whose arrays are
 * frozen too is read once: later forwards given the same map find its hook set by the map itself.
 */
export type HookMap = Record<string, Hook | readonly Hook[]>;

/**
 * A C++ kernel that runs at hook points with no JS per call. Create with {@link nativeHook}; one
 * instance may be put at several points and collects across forwards until {@link NativeHook.reset}.
 */
export class NativeHook {
  /** @internal */
  readonly native: NativeKernel;

  /** @internal */
  constructor(handle: NativeKernel) {
    this.native = handle;
  }

  /** The kernel's registered name. */
  get kernel(): string {
    return this.native.name();
  }

  /**
   * What the kernel collected. For `record`: `[point, tensor]` pairs in the order the values were
   * seen (detached copies).
   */
  results(): unknown {
    return wrapTensors(this.native.results());
  }

  /** Forgets what was collected. */
  reset(): void {
    this.native.reset();
  }

  /** @internal New per-call options (e.g. the next batch's positions), keeping what was collected. */
  configure(options: Record<string, unknown>): this {
    this.native.configure(options);
    return this;
  }
}

function wrapTensors(value: unknown): unknown {
  if (value instanceof native.NativeTensor) return new Tensor(value as NativeTensor);
  if (Array.isArray(value)) return value.map(wrapTensors);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, wrapTensors(v)]));
  return value;
}

/**
 * Creates an instance of a registered native kernel. Built in: `record` (keeps a copy of every value
 * it sees; `results()` gives `[point, tensor]` pairs) and `scale` (`{ factor }`: multiplies the value).
 * {@link nativeHookKernels} lists all registered kernels.
 */
export function nativeHook(kernel: string, options: Record<string, unknown> = {}): NativeHook {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError(`nativeHook('${String(kernel)}'): options must be an object, got ${describeValue(options)}`);
  }
  return new NativeHook(native.createKernel(kernel, options));
}

/** The registered native kernels, by name, with a line saying what each does. */
export function nativeHookKernels(): Record<string, string> {
  return native.kernelNames();
}

/** Returned by {@link Model.addHook}: removes the hook. */
export interface HookHandle extends Disposable {
  /** The point the hook is on. */
  readonly point: string;
  /** Removes the hook; later forwards no longer run it. Idempotent. */
  remove(): void;
}

/** @internal The form the addon takes: one entry per hook, in run order. */
export interface NativeHookSpec {
  point: string;
  fn?: (value: NativeTensor, context: HookContext) => NativeTensor | undefined;
  kernel?: NativeKernel;
  context?: HookContext;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'an object';
  return typeof value;
}

/** @internal Wraps a user hook for the addon: native handle in, native handle (or nothing) out. */
export function toNativeSpec(point: string, hook: Hook, context: HookContext | undefined): NativeHookSpec {
  if (hook instanceof NativeHook) return { point, kernel: hook.native };
  if (typeof hook !== 'function') {
    throw new InvalidArgumentError(`hook on '${point}' must be a function or a NativeHook (nativeHook()), got ${describe(hook)}`);
  }
  // One adapter per hook and point, made when the hook set is built: it knows the point's stand-in
  // for expired values without looking it up on every call.
  let expiry: NativeTensor | undefined;
  const fn: NonNullable<NativeHookSpec['fn']> = (value, ctx) => {
    const borrowed = new Tensor(value, false);
    try {
      const result = hook(borrowed, ctx);
      if (result === undefined) return undefined;
      if (result instanceof Tensor) return result.native;
      const what = result !== null && typeof (result as { then?: unknown }).then === 'function' ? 'a Promise (hooks must be synchronous)' : describe(result);
      throw new InvalidArgumentError(`hook on '${point}' returned ${what}; return a Tensor to replace the value, or nothing to keep it`);
    } finally {
      borrowed._revokeBorrowed((expiry ??= Tensor._borrowedExpiry(point)));
    }
  };
  return { point, fn, context };
}
