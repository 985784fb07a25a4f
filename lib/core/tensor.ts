/**
 * Tensors as handles over libtorch tensors. `data` shares memory with a contiguous CPU tensor in
 * O(1); every other access that needs a different layout or device is an explicit copy.
 * @module
 */
import { native, type NativeIndexItem, type NativeTensor, type NativeTensorPack, type TensorData } from './binding';
import { DTypeError, DisposedError, InvalidArgumentError, ShapeError, describeValue } from './errors';

export type { TensorData };

/** The dtypes a tensor can have in JS. float16 and bfloat16 data are raw bits in a `Uint16Array`. */
export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

/** Every {@link DType}, in a stable order. */
export const DTYPES: readonly DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

/** `'cpu'`, `'cuda'` or `'cuda:N'`. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

/** A slice along one dimension: `start` (default 0) to `stop` (exclusive, default the end), with `step` (default 1). */
export interface Slice {
  /** First index (negative counts from the end); default 0. */
  start?: number;
  /** Index to stop before (negative counts from the end); default the end. */
  stop?: number;
  /** Distance between taken indices, positive; default 1. */
  step?: number;
}

/**
 * One item of {@link Tensor.index}: an integer selects (and removes the dimension), a {@link Slice}
 * keeps it, `null` inserts a new axis, `'...'` stands for all remaining dimensions, a boolean or
 * integer Tensor indexes by mask or by positions (PyTorch's advanced indexing).
 */
export type IndexItem = number | boolean | null | '...' | Slice | Tensor;

/** Nested arrays of numbers (or booleans, or bigints beyond 2^53) mirroring a tensor's shape. */
export type NestedArray = number | boolean | bigint | NestedArray[];

const registry = new FinalizationRegistry<NativeTensor>((handle) => handle.dispose());

/** A stand-in for a released handle: every method throws, except the idempotent disposal ones. */
function revokedHandle(why: string): NativeTensor {
  return new Proxy({} as NativeTensor, {
    get(_, name) {
      if (name === 'dispose') return () => undefined;
      if (name === 'isDisposed') return () => true;
      return () => {
        throw new DisposedError(`Tensor.${String(name)}: ${why}`);
      };
    },
  });
}
// one stand-in serves every tensor disposed while still in its pack
const disposedHandle: NativeTensor = revokedHandle('the tensor was disposed');

// One stand-in per hook point, made on first use: a hook's value is revoked after every call.
const expiredAt = new Map<string, NativeTensor>();
let copyWarningShown = false;

/**
 * A handle on a libtorch tensor. Dispose it (`using t = ...` or `t.dispose()`) to release its memory
 * now; otherwise garbage collection releases it. Views made from a tensor (reshape, view, index,
 * `data`) share its memory.
 */
export class Tensor implements Disposable {
  // #handle is undefined while the tensor still waits in a pack (see Tensor._fromPack)
  #handle: NativeTensor | undefined;
  #pack: NativeTensorPack | undefined;
  #slot = 0;
  #data: TensorData | undefined;
  // A tensor's shape, dtype, device and layout never change while its handle lives (no method
  // resizes in place); reading one through the addon costs ~0.2-0.3 us, and a forward reads its
  // inputs' several times. Cleared with the handle.
  #shape: number[] | undefined;
  #dtype: DType | undefined;
  #device: string | undefined;
  #contiguous: boolean | undefined;

  /**
   * @internal Use {@link tensor}, {@link fromTypedArray} or a model's outputs. `owned` is false for
   * handles the addon releases itself (a hook's borrowed value): no GC backstop needed.
   */
  constructor(handle: NativeTensor | undefined, owned = true) {
    this.#handle = handle;
    if (owned && handle) registry.register(this, handle, this);
  }

  /**
   * @internal A tensor that stays in a kernel's result pack until first used: results that are
   * never read cost no handle. The pack frees unread slots when it is collected.
   */
  static _fromPack(pack: NativeTensorPack, slot: number): Tensor {
    const tensor = new Tensor(undefined);
    tensor.#pack = pack;
    tensor.#slot = slot;
    return tensor;
  }

  /** The handle, taken from the pack on first use. */
  get #live(): NativeTensor {
    if (this.#handle) return this.#handle;
    const handle = this.#pack!.take(this.#slot);
    this.#pack = undefined;
    this.#handle = handle;
    registry.register(this, handle, this);
    return handle;
  }

  /**
   * @internal Ends the life of a hook's borrowed value: `expiry` ({@link Tensor._borrowedExpiry} of
   * its point) makes every later use throw a DisposedError saying so. The addon reuses the native
   * handle of a hook's value for the next call; this wrapper must not follow it there.
   */
  _revokeBorrowed(expiry: NativeTensor): void {
    this.#pack = undefined;
    this.#handle = expiry;
    this.#forgetHandle();
  }

  /** @internal The stand-in that {@link Tensor._revokeBorrowed} puts in a hook's value at `point`. */
  static _borrowedExpiry(point: string): NativeTensor {
    let handle = expiredAt.get(point);
    if (!handle) {
      handle = revokedHandle(`the value at hook point '${point}' is only valid during the hook; clone() it to keep it`);
      expiredAt.set(point, handle);
    }
    return handle;
  }

  /** Disposed while still in its pack, whose slot the caller released. */
  #leavePack(): void {
    this.#forgetHandle();
    this.#pack = undefined;
    this.#handle = disposedHandle;
  }

  #forgetHandle(): void {
    this.#data = undefined;
    this.#shape = undefined;
    this.#dtype = undefined;
    this.#device = undefined;
    this.#contiguous = undefined;
  }

  /** @internal The native handle, for passing the tensor to the addon. */
  get native(): NativeTensor {
    return this.#live;
  }

  /** The size of each dimension. */
  get shape(): number[] {
    // a copy: callers may change the array they get
    return (this.#shape ??= this.#live.shape()).slice();
  }

  /** The element stride of each dimension. */
  get strides(): number[] {
    return this.#live.strides();
  }

  /** The element type. Tensors of other torch dtypes (complex, ...) report torch's name. */
  get dtype(): DType {
    return (this.#dtype ??= this.#live.dtype() as DType);
  }

  /** Where the tensor lives: `'cpu'` or `'cuda:N'`. */
  get device(): string {
    return (this.#device ??= this.#live.device());
  }

  /** The number of elements. */
  get numel(): number {
    return this.#live.numel();
  }

  /** The number of dimensions. */
  get rank(): number {
    return (this.#shape ??= this.#live.shape()).length;
  }

  /** Whether the elements are laid out densely in row-major order (required by {@link Tensor.data}). */
  get isContiguous(): boolean {
    return (this.#contiguous ??= this.#live.isContiguous());
  }

  /** Whether autograd tracks this tensor. */
  get requiresGrad(): boolean {
    return this.#live.requiresGrad();
  }

  /**
   * The elements as a TypedArray sharing memory with the tensor: writes are visible both ways, and
   * the cost does not depend on the size. float16/bfloat16 come as raw `Uint16Array` bits (see
   * {@link Tensor.toFloat32Array}), bool as `Uint8Array`. Only contiguous CPU tensors have it; use
   * {@link Tensor.copyData} otherwise. Where the runtime forbids external memory (Electron's memory
   * cage), this is a copy instead: {@link Tensor.dataIsShared} tells, and a warning is emitted once.
   */
  get data(): TensorData {
    if (this.#data) return this.#data;
    const [array, shared] = this.#live.data();
    if (shared) {
      this.#data = array;
    } else if (!copyWarningShown) {
      copyWarningShown = true;
      process.emitWarning(
        'external ArrayBuffers are not allowed in this runtime (e.g. Electron memory cage): Tensor.data returns copies; write back with Tensor.write()',
        { code: 'EASYROUTINE_DATA_COPY' },
      );
    }
    return array;
  }

  /** Whether {@link Tensor.data} shares memory with the tensor (false under Electron's memory cage). */
  get dataIsShared(): boolean {
    void this.data;
    return this.#data !== undefined;
  }

  /**
   * Copies `values` (a TypedArray of the same type and length as {@link Tensor.data}) into this
   * contiguous CPU tensor. Where {@link Tensor.dataIsShared} is false this is how to write; elsewhere
   * writing into `data` does the same.
   */
  write(values: TensorData): void {
    this.#live.write(values);
  }

  /** A copy of the elements as a new TypedArray, from any device or layout. */
  copyData(): TensorData {
    return this.#live.copyData();
  }

  /** A copy of the elements converted to float32 (the readable form of float16/bfloat16 data). */
  toFloat32Array(): Float32Array {
    return this.#live.toFloat32Array();
  }

  /** This tensor on another device and/or with another dtype (a new tensor, or this data when nothing changes). */
  to(target: Device | DType | { device?: Device; dtype?: DType }): Tensor {
    let device: string | null = null;
    let dtype: string | null = null;
    if (typeof target === 'string') {
      if ((DTYPES as readonly string[]).includes(target)) dtype = target;
      else device = target;
    } else if (target && typeof target === 'object') {
      device = target.device ?? null;
      dtype = target.dtype ?? null;
    } else {
      throw new InvalidArgumentError('Tensor.to expects a device, a dtype or { device, dtype }');
    }
    return new Tensor(this.#live.to(device, dtype));
  }

  /** A contiguous tensor with the same elements (this data when already contiguous). */
  contiguous(): Tensor {
    return new Tensor(this.#live.contiguous());
  }

  /** A copy with its own memory. */
  clone(): Tensor {
    return new Tensor(this.#live.clone());
  }

  /** The elements in a new shape (a view when possible, else a copy); one dimension may be -1. */
  reshape(...shape: number[] | [number[]]): Tensor {
    return new Tensor(this.#live.reshape(flattenShape(shape)));
  }

  /** A view with a new shape over the same memory; fails when the layout does not allow one. */
  view(...shape: number[] | [number[]]): Tensor {
    return new Tensor(this.#live.view(flattenShape(shape)));
  }

  /**
   * Indexing and slicing, as `t[...]` in PyTorch: `t.index(0, { start: 1, stop: 3 })` is `t[0, 1:3]`.
   * See {@link IndexItem}.
   */
  index(...items: IndexItem[]): Tensor {
    const nativeItems: NativeIndexItem[] = items.map((item) => (item instanceof Tensor ? item.native : item));
    return new Tensor(this.#live.index(nativeItems));
  }

  /** The single element of a one-element tensor as a number (bigint beyond 2^53, boolean for bool). */
  item(): number | boolean | bigint {
    return this.#live.item();
  }

  /** The elements as nested arrays (a copy), e.g. for printing or JSON. */
  toArray(): NestedArray {
    return this.#live.toArray() as NestedArray;
  }

  /** Whether this tensor and `other` share memory (e.g. a view and its base). */
  sharesMemoryWith(other: Tensor): boolean {
    return this.#live.sameStorage(other.native);
  }

  /** Releases this handle's reference to the tensor now. Views and `data` arrays stay valid. */
  dispose(): void {
    if (this.#pack) {
      this.#pack.release(this.#slot);
      this.#leavePack();
      return;
    }
    this.#forgetHandle();
    registry.unregister(this);
    this.#handle!.dispose();
  }

  /**
   * @internal {@link Tensor.dispose} of each; the ones still waiting in a pack are released with one
   * call per pack (an extraction's cache disposes ten or more at once, and each call into the addon
   * costs more than the release itself).
   */
  static _disposeAll(tensors: readonly Tensor[]): void {
    // runs of consecutive slots of one pack, each released with one call
    let pack: NativeTensorPack | undefined;
    let start = 0;
    let end = 0;
    for (const tensor of tensors) {
      const waiting = tensor.#pack;
      if (!waiting) {
        tensor.dispose();
        continue;
      }
      if (waiting !== pack || tensor.#slot !== end) {
        if (pack) pack.releaseRange(start, end);
        pack = waiting;
        start = tensor.#slot;
      }
      end = tensor.#slot + 1;
      tensor.#leavePack();
    }
    if (pack) pack.releaseRange(start, end);
  }

  /** Whether {@link Tensor.dispose} was called. */
  get disposed(): boolean {
    return this.#pack ? false : this.#live.isDisposed();
  }

  /** Same as {@link Tensor.dispose}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** A short description: `Tensor(float32 [2, 3] cpu)`. */
  toString(): string {
    if (this.disposed) return 'Tensor(disposed)';
    return `Tensor(${this.dtype} [${this.shape.join(', ')}] ${this.device})`;
  }
}

function flattenShape(shape: number[] | [number[]]): number[] {
  return shape.length === 1 && Array.isArray(shape[0]) ? shape[0] : (shape as number[]);
}

/** Options for creating a tensor. */
export interface TensorOptions {
  /** The dtype; by default the TypedArray's own (required for `Uint16Array`: float16 or bfloat16). */
  dtype?: DType;
  /** Where to put the tensor (default `'cpu'`). */
  device?: Device;
}

/** A TypedArray a tensor can be created from: any {@link TensorData} kind, or a `Uint8ClampedArray` (as uint8). */
export type TensorSource = TensorData | Uint8ClampedArray;

function isTypedArray(value: unknown): value is TensorSource {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

/**
 * A tensor over `array`'s memory without a copy (like `torch.from_numpy`): writes through either
 * side are seen by the other, and the tensor keeps the memory alive. The array's length must match
 * `shape`. Do not transfer or detach the array's buffer while the tensor lives.
 */
export function fromTypedArray(array: TensorSource, shape: number[], options: { dtype?: DType } = {}): Tensor {
  if (!isTypedArray(array)) throw new InvalidArgumentError('fromTypedArray: expected a TypedArray');
  return new Tensor(native.fromTypedArray(array, shape, options.dtype ?? null, true));
}

/**
 * A new tensor holding a copy of `data`: a TypedArray with a shape, or nested arrays of numbers or
 * booleans (the shape is inferred). Numbers become float32 unless `dtype` says otherwise.
 */
export function tensor(data: TensorSource | NestedArray, shape?: number[] | TensorOptions, options: TensorOptions = {}): Tensor {
  if (!Array.isArray(shape) && shape !== undefined) {
    if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError(`tensor: the second argument must be a shape (an array of sizes) or options, got ${typeof shape} ${JSON.stringify(shape)}`);
    options = shape;
    shape = undefined;
  }
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`tensor: options must be an object ({ dtype, device }), got ${typeof options}`);
  let handle: NativeTensor;
  if (isTypedArray(data)) {
    const dims = (shape as number[] | undefined) ?? [data.length];
    handle = native.fromTypedArray(data, dims, options.dtype ?? null, false);
  } else {
    if (!Array.isArray(data) && !['number', 'boolean', 'bigint'].includes(typeof data)) {
      throw new InvalidArgumentError('tensor: data must be a TypedArray or nested arrays of numbers, booleans or bigints');
    }
    const dims = (shape as number[] | undefined) ?? inferShape(data);
    const flat = flatten(data, dims);
    const dtype = options.dtype ?? inferDType(flat);
    checkRange(flat, dtype);
    handle = fromNumbers(flat, dims, dtype);
  }
  if (options.device && options.device !== 'cpu') {
    const moved = handle.to(options.device, null);
    handle.dispose();
    handle = moved;
  }
  return new Tensor(handle);
}

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let level: NestedArray = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0] as NestedArray;
  }
  return shape;
}

function flatten(data: NestedArray, shape: number[]): (number | boolean | bigint)[] {
  const out: (number | boolean | bigint)[] = [];
  const walk = (value: NestedArray, depth: number, where: string): void => {
    if (depth === shape.length) {
      if (Array.isArray(value)) throw new ShapeError(`tensor: ${where} is nested deeper than the shape [${shape.join(', ')}]`);
      if (typeof value !== 'number' && typeof value !== 'boolean' && typeof value !== 'bigint') {
        throw new InvalidArgumentError(`tensor: ${where} is ${typeof value}; expected a number, boolean or bigint`);
      }
      out.push(value);
      return;
    }
    if (!Array.isArray(value) || value.length !== shape[depth]) {
      throw new ShapeError(`tensor: ${where} should be an array of ${shape[depth]} (ragged nesting)`);
    }
    value.forEach((v, i) => walk(v, depth + 1, `${where}[${i}]`));
  };
  walk(data, 0, 'data');
  return out;
}

/**
 * The dtype of values given without one: bool when all are booleans; int64 when any is a bigint
 * (a JS integer beyond 2^53 exists only as one, and float32 would lose it) and every number is an
 * integer; otherwise float32 (JS numbers are all doubles, and float32 is what models take), with
 * booleans as 0 and 1, as torch.tensor mixes them.
 */
function inferDType(values: (number | boolean | bigint)[]): DType {
  if (values.length > 0 && values.every((v) => typeof v === 'boolean')) return 'bool';
  if (values.some((v) => typeof v === 'bigint') && values.every((v) => typeof v !== 'number' || Number.isInteger(v))) return 'int64';
  return 'float32';
}

/** The values each integer dtype holds, as torch.tensor checks them (it refuses 300 as uint8). */
const INTEGER_RANGES: Partial<Record<DType, [bigint, bigint]>> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  int16: [-(2n ** 15n), 2n ** 15n - 1n],
  int8: [-128n, 127n],
  uint8: [0n, 255n],
};

/**
 * A DTypeError naming the first value an integer dtype cannot hold: out of its range, or not an
 * integer (torch.tensor truncates 1.5 to 1; for token ids that hides a bug, so this refuses it).
 */
function checkRange(values: (number | boolean | bigint)[], dtype: DType): void {
  const range = INTEGER_RANGES[dtype];
  if (!range) return;
  const [low, high] = range;
  values.forEach((v, i) => {
    if (typeof v === 'boolean') return;
    if (typeof v === 'number' && !Number.isInteger(v)) throw new DTypeError(`tensor: value ${v} at index ${i} is not an integer; ${dtype} holds integers from ${low} to ${high}`);
    const integer = BigInt(v);
    if (integer < low || integer > high) throw new DTypeError(`tensor: value ${v} at index ${i} is outside ${dtype}'s range ${low} to ${high}`);
  });
}

function fromNumbers(values: (number | boolean | bigint)[], shape: number[], dtype: DType): NativeTensor {
  const numbers = () => values.map(Number);
  switch (dtype) {
    case 'float32':
      return native.fromTypedArray(Float32Array.from(numbers()), shape, null, false);
    case 'float64':
      return native.fromTypedArray(Float64Array.from(numbers()), shape, null, false);
    case 'float16':
    case 'bfloat16': {
      const wide = native.fromTypedArray(Float32Array.from(numbers()), shape, null, false);
      const narrow = wide.to(null, dtype);
      wide.dispose();
      return narrow;
    }
    case 'int64':
      return native.fromTypedArray(BigInt64Array.from(values.map((v) => BigInt(typeof v === 'boolean' ? Number(v) : v))), shape, null, false);
    case 'int32':
      return native.fromTypedArray(Int32Array.from(numbers()), shape, null, false);
    case 'int16':
      return native.fromTypedArray(Int16Array.from(numbers()), shape, null, false);
    case 'int8':
      return native.fromTypedArray(Int8Array.from(numbers()), shape, null, false);
    case 'uint8':
      return native.fromTypedArray(Uint8Array.from(numbers()), shape, null, false);
    case 'bool':
      return native.fromTypedArray(Uint8Array.from(values.map((v) => (v ? 1 : 0))), shape, 'bool', false);
    default:
      throw new DTypeError(`unknown dtype '${String(dtype)}'; accepted: ${DTYPES.join(', ')}`);
  }
}

/** Concatenates tensors along an existing dimension (`torch.cat`); shapes must agree elsewhere. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return new Tensor(native.cat(tensors.map((t) => t.native), dim));
}

/** Stacks tensors of one shape along a new dimension (`torch.stack`). */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return new Tensor(native.stack(tensors.map((t) => t.native), dim));
}

/**
 * `input @ weight.T + bias` over the last dimension (`torch.nn.functional.linear`): weight
 * `[out, in]`, input `[..., in]`, bias `[out]`; what an unembedding or a projection computes, in
 * libtorch.
 */
export function linear(input: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  for (const [name, value] of [['input', input], ['weight', weight]] as const) {
    if (!(value instanceof Tensor)) throw new InvalidArgumentError(`linear: ${name} must be a Tensor, got ${describeValue(value)}`);
  }
  if (bias !== undefined && !(bias instanceof Tensor)) throw new InvalidArgumentError(`linear: bias must be a Tensor or undefined, got ${describeValue(bias)}`);
  return new Tensor(native.linear(input.native, weight.native, bias?.native));
}

/**
 * Gradients of a one-element `output` with respect to each of `inputs` (`torch.autograd.grad`):
 * null for an input the output does not depend on. Nothing accumulates into parameters. The output
 * must come from a forward run with `{ grad: true }`. With `options.gradOutput` (torch's
 * `grad_outputs`, the output's shape) the output may have any shape: the gradients are those of
 * the sum of its elements weighted by `gradOutput`, in one backward pass.
 */
export function grad(output: Tensor, inputs: readonly Tensor[], options: { gradOutput?: Tensor } = {}): (Tensor | null)[] {
  if (!(output instanceof Tensor)) throw new InvalidArgumentError(`grad: output must be a Tensor, got ${describeValue(output)}`);
  if (!Array.isArray(inputs) || !inputs.every((t) => t instanceof Tensor)) throw new InvalidArgumentError('grad: inputs must be an array of Tensors');
  if (options.gradOutput !== undefined && !(options.gradOutput instanceof Tensor)) throw new InvalidArgumentError(`grad: options.gradOutput must be a Tensor, got ${describeValue(options.gradOutput)}`);
  return native.grad(output.native, inputs.map((t) => t.native), options.gradOutput?.native).map((g) => (g ? new Tensor(g) : null));
}
