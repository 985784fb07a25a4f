import { describe, expect, it } from 'vitest';
import {
  DTYPES,
  DTypeError,
  DeviceError,
  DisposedError,
  InvalidArgumentError,
  ShapeError,
  Tensor,
  TensorIndexError,
  fromTypedArray,
  memoryStats,
  runtimeInfo,
  tensor,
  type DType,
} from '../lib/index';
import { expectThrows, numbers } from './helpers';

// CI also runs this file against a build compiled with NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED, where
// `data` must fall back to copies (as under Electron's memory cage).
const copyOnly = process.env.EASYROUTINE_EXPECT_COPY_DATA === '1';

describe('runtime', () => {
  it('reports the data mode this build was compiled for', () => {
    expect(runtimeInfo().externalBuffers).toBe(!copyOnly);
    expect(runtimeInfo().libtorchVersion).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

describe('tensor creation', () => {
  it('infers shape and dtype from nested arrays', () => {
    const t = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.device).toBe('cpu');
    expect(t.numel).toBe(6);
    expect(t.toArray()).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
  });

  it('creates every dtype and round-trips values', () => {
    const expected: Record<DType, unknown> = {
      float32: [1.5, -2],
      float64: [1.5, -2],
      float16: [1.5, -2],
      bfloat16: [1.5, -2],
      int64: [3, -4],
      int32: [3, -4],
      int16: [3, -4],
      int8: [3, -4],
      uint8: [3, 4],
      bool: [true, false],
    };
    for (const dtype of DTYPES) {
      const values = expected[dtype] as (number | boolean)[];
      const t = tensor(values, { dtype });
      expect(t.dtype).toBe(dtype);
      expect(t.toArray()).toEqual(values);
    }
  });

  it('maps each dtype to its TypedArray', () => {
    const kinds: Record<DType, unknown> = {
      float32: Float32Array,
      float64: Float64Array,
      float16: Uint16Array,
      bfloat16: Uint16Array,
      int64: BigInt64Array,
      int32: Int32Array,
      int16: Int16Array,
      int8: Int8Array,
      uint8: Uint8Array,
      bool: Uint8Array,
    };
    for (const dtype of DTYPES) expect(tensor([0, 1], { dtype }).data).toBeInstanceOf(kinds[dtype]);
  });

  it('copies a TypedArray with tensor()', () => {
    const source = new Float32Array([1, 2, 3, 4]);
    const t = tensor(source, [2, 2]);
    source[0] = 100;
    expect(t.toArray()).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });

  it('shares a TypedArray with fromTypedArray(), both ways, at any byte offset', () => {
    const buffer = new Float64Array(10);
    const window = buffer.subarray(2, 8);
    const t = fromTypedArray(window, [2, 3]);
    window[0] = 7;
    expect(t.item === undefined).toBe(false);
    expect(t.index(0, 0).item()).toBe(7);
    t.index(1, 2).data; // views over JS memory resolve to the same buffer
    const data = t.data as Float64Array;
    expect(data.buffer).toBe(buffer.buffer);
    expect(data.byteOffset).toBe(window.byteOffset);
    data[5] = 9;
    expect(buffer[7]).toBe(9);
  });

  it('keeps JS memory alive while the tensor lives', async () => {
    let t: Tensor | undefined = (() => fromTypedArray(new Int32Array([5, 6, 7]), [3]))();
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 10));
    expect(t.toArray()).toEqual([5, 6, 7]);
    t.dispose();
    t = undefined;
  });

  it('interprets Uint16Array as float16 or bfloat16 bits, with a converting accessor', () => {
    // 1.0 in float16 is 0x3c00, in bfloat16 0x3f80
    expect(tensor(new Uint16Array([0x3c00]), [1], { dtype: 'float16' }).toFloat32Array()).toEqual(new Float32Array([1]));
    expect(tensor(new Uint16Array([0x3f80]), [1], { dtype: 'bfloat16' }).toFloat32Array()).toEqual(new Float32Array([1]));
    const half = tensor([0.5, 2], { dtype: 'float16' });
    expect(Array.from(half.data as Uint16Array)).toEqual([0x3800, 0x4000]);
  });

  it('rejects a length that does not match the shape', () => {
    expectThrows(() => tensor(new Float32Array(5), [2, 3]), ShapeError, /\[2, 3\] holds 6 elements but the Float32Array has 5/);
    expectThrows(() => fromTypedArray(new Float32Array(5), [2, 3]), ShapeError, /holds 6 elements/);
    expectThrows(() => tensor(new Float32Array(4), [2, -2]), ShapeError, /shape\[1\] = -2 is out of range/);
    expectThrows(() => tensor(new Float32Array(4), [2, 1.5]), ShapeError, /shape\[1\] is 1\.5; a shape holds non-negative integers/);
    expectThrows(() => tensor([[1, 2], [3]]), ShapeError, /ragged/);
  });

  it('rejects unknown dtypes and mismatched arrays', () => {
    expectThrows(() => tensor([1], { dtype: 'float8' as DType }), DTypeError, /unknown dtype 'float8'/, /accepted: float32, float64/);
    expectThrows(() => tensor(new Float32Array(2), [2], { dtype: 'int32' }), DTypeError, /'int32' does not match a Float32Array/, /Int32Array/);
    expectThrows(() => tensor(new Uint16Array(2), [2]), DTypeError, /Uint16Array needs an explicit dtype: 'float16' or 'bfloat16'/);
    expectThrows(() => tensor(new Uint32Array(2) as never, [2]), DTypeError, /Uint32Array has no torch dtype/);
    expectThrows(() => tensor('abc' as never), InvalidArgumentError, /data must be a TypedArray or nested arrays/);
    expectThrows(() => tensor([1, 'x'] as never), InvalidArgumentError, /data\[1\] is string/);
  });
});

describe('data sharing', () => {
  it(copyOnly ? 'falls back to copies and says so' : 'shares memory both ways', () => {
    const t = tensor([1, 2, 3, 4]);
    const data = t.data as Float32Array;
    expect(t.dataIsShared).toBe(!copyOnly);
    data[0] = 42;
    expect(t.index(0).item()).toBe(copyOnly ? 1 : 42);
    t.write(new Float32Array([5, 6, 7, 8]));
    expect(t.toArray()).toEqual([5, 6, 7, 8]);
    if (!copyOnly) expect(data[3]).toBe(8);
  });

  it('gives views of one storage as TypedArrays over one ArrayBuffer', () => {
    const base = tensor(new Float32Array(12).map((_, i) => i), [3, 4]);
    const row = base.index(1);
    const tail = base.reshape(12).index({ start: 6 });
    expect(row.sharesMemoryWith(base)).toBe(true);
    expect(numbers(row.data)).toEqual([4, 5, 6, 7]);
    expect(numbers(tail.data)).toEqual([6, 7, 8, 9, 10, 11]);
    if (!copyOnly) {
      expect(row.data.buffer).toBe(base.data.buffer);
      expect(tail.data.buffer).toBe(base.data.buffer);
      expect(row.data.byteOffset).toBe(16);
      (row.data as Float32Array)[0] = -1;
      expect(base.index(1, 0).item()).toBe(-1);
    }
  });

  it('refuses non-contiguous and offers explicit copies', () => {
    const t = tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    const columns = t.index('...', { start: 0, stop: 3, step: 2 });
    expect(columns.isContiguous).toBe(false);
    expectThrows(() => columns.data, ShapeError, /not contiguous/, /contiguous\(\)/);
    expect(numbers(columns.copyData())).toEqual([1, 3, 4, 6]);
    expect(numbers(columns.contiguous().data)).toEqual([1, 3, 4, 6]);
  });

  it('accounts CPU bytes once per storage and releases them on dispose', () => {
    const before = memoryStats().externalBytes;
    const t = tensor(new Float32Array(1000), [1000]);
    const view = t.reshape(10, 100);
    expect(memoryStats().externalBytes - before).toBe(4000);
    t.dispose();
    expect(memoryStats().externalBytes - before).toBe(4000);
    view.dispose();
    expect(memoryStats().externalBytes - before).toBe(0);
  });

  it('keeps data arrays valid after the tensor is disposed', () => {
    const t = tensor([1, 2, 3]);
    const data = t.data;
    t.dispose();
    (globalThis as { gc?: () => void }).gc?.();
    expect(numbers(data)).toEqual([1, 2, 3]);
  });
});

describe('tensor operations', () => {
  const grid = () => tensor(new Float32Array(24).map((_, i) => i), [2, 3, 4]);

  it('reshapes and views, inferring one dimension', () => {
    expect(grid().reshape(6, -1).shape).toEqual([6, 4]);
    expect(grid().view([4, 6]).shape).toEqual([4, 6]);
    expectThrows(() => grid().reshape(5, 5), ShapeError, /Tensor.Reshape/, /invalid for input of size 24/);
    const strided = grid().index('...', { start: 0, step: 3 });
    expectThrows(() => strided.view(-1), ShapeError, /Tensor.View/, /not compatible/);
  });

  it('indexes like PyTorch', () => {
    const t = grid();
    expect(t.index(1, 2, 3).item()).toBe(23);
    expect(t.index(-1, -1, -1).item()).toBe(23);
    expect(t.index(0, { start: 1 }).shape).toEqual([2, 4]);
    expect(t.index('...', 0).toArray()).toEqual([
      [0, 4, 8],
      [12, 16, 20],
    ]);
    expect(t.index(null, 0).shape).toEqual([1, 3, 4]);
    const positions = tensor([2, 0], { dtype: 'int64' });
    expect(t.index(0, positions, 0).toArray()).toEqual([8, 0]);
    const mask = tensor([true, false]);
    expect(t.index(mask).shape).toEqual([1, 3, 4]);
  });

  it('rejects bad indices with TensorIndexError', () => {
    const t = grid();
    expectThrows(() => t.index(2), TensorIndexError, /index 2 is out of bounds for dimension 0 with size 2/);
    expectThrows(() => t.index(0.5), TensorIndexError, /index item 0 must be an integer/);
    expectThrows(() => t.index({ start: 0, step: 0 }), TensorIndexError, /step must be positive/);
    expectThrows(() => t.index(0, 0, 0, 0), TensorIndexError);
  });

  it('converts dtype and device, clones and reads scalars', () => {
    const t = tensor([1.7, -2.2]);
    expect(t.to('int32').toArray()).toEqual([1, -2]);
    expect(t.to({ dtype: 'float64' }).dtype).toBe('float64');
    expect(t.to('cpu').sharesMemoryWith(t)).toBe(true);
    const copy = t.clone();
    expect(copy.sharesMemoryWith(t)).toBe(false);
    expect(tensor([5], { dtype: 'int64' }).item()).toBe(5);
    expect(tensor([true]).item()).toBe(true);
    expect(tensor(new BigInt64Array([2n ** 60n]), [1]).item()).toBe(2n ** 60n);
    expectThrows(() => t.item(), ShapeError, /exactly one element/, /\[2\]/);
  });

  it('rejects unknown devices and unavailable CUDA', () => {
    const t = tensor([1]);
    expectThrows(() => t.to('tpu' as never), DeviceError, /unknown device 'tpu'/, /'cpu', 'cuda', 'cuda:N'/);
    if (!runtimeInfo().cudaAvailable) {
      expectThrows(() => t.to('cuda'), DeviceError, /CUDA is not available/);
      expectThrows(() => tensor([1], { device: 'cuda:0' }), DeviceError, /CUDA is not available/);
    }
  });
});

describe('dispose', () => {
  it('fails every use after dispose with DisposedError', () => {
    const t = tensor([1, 2]);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(String(t)).toBe('Tensor(disposed)');
    expectThrows(() => t.shape, DisposedError, /Tensor.shape: the tensor was disposed/);
    expectThrows(() => t.data, DisposedError, /disposed/);
    expectThrows(() => t.reshape(2), DisposedError, /disposed/);
    expectThrows(() => tensor([1]).sharesMemoryWith(t), DisposedError, /disposed/);
    t.dispose(); // idempotent
  });

  it('supports using-declarations through Symbol.dispose', () => {
    let captured: Tensor;
    {
      const t = tensor([1]);
      captured = t;
      t[Symbol.dispose]();
    }
    expect(captured.disposed).toBe(true);
  });

  it('releases collected handles through the FinalizationRegistry backstop', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) return expect.fail('run vitest with --expose-gc (see vitest.config.ts)');
    const before = memoryStats().externalBytes;
    (() => {
      for (let i = 0; i < 20; i++) tensor(new Float32Array(10_000), [10_000]);
    })();
    expect(memoryStats().externalBytes - before).toBe(20 * 40_000);
    for (let i = 0; i < 10 && memoryStats().externalBytes > before; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    // other tests' garbage may go too, so the total can fall below `before`
    expect(memoryStats().externalBytes).toBeLessThanOrEqual(before);
  });
});

describe('creation follows torch.tensor where JS would be silent', () => {
  it('values an integer dtype cannot hold are a DTypeError naming the value, its index and the range', () => {
    expectThrows(() => tensor([1, 300], { dtype: 'uint8' }), DTypeError, /value 300 at index 1 is outside uint8's range 0 to 255/);
    expectThrows(() => tensor([-200], { dtype: 'int8' }), DTypeError, /value -200 at index 0 is outside int8's range -128 to 127/);
    expectThrows(() => tensor([2 ** 64], { dtype: 'int64' }), DTypeError, /outside int64's range/);
    expectThrows(() => tensor([2 ** 31], { dtype: 'int32' }), DTypeError, /outside int32's range/);
    expectThrows(() => tensor([[1, 1.5]], { dtype: 'int64' }), DTypeError, /value 1\.5 at index 1 is not an integer; int64 holds integers/);
    expectThrows(() => tensor([NaN], { dtype: 'int64' }), DTypeError, /value NaN at index 0 is not an integer/);
    // the edges themselves are fine
    expect(tensor([0, 255], { dtype: 'uint8' }).toArray()).toEqual([0, 255]);
    expect(tensor([-(2n ** 63n), 2n ** 63n - 1n], { dtype: 'int64' }).toArray()).toEqual([-(2n ** 63n), 2n ** 63n - 1n]);
  });

  it('without a dtype: bigints make int64 (no precision lost), booleans with numbers are numbers', () => {
    const big = tensor([2n ** 60n + 1n]);
    expect(big.dtype).toBe('int64');
    expect(big.toArray()).toEqual([2n ** 60n + 1n]);
    const mixed = tensor([[true, 2]]);
    expect(mixed.dtype).toBe('float32');
    expect(mixed.toArray()).toEqual([[1, 2]]);
    expect(tensor([[true, false]]).dtype).toBe('bool');
  });

  it('a shape that is not an array, or options that are not an object, are refused', () => {
    expectThrows(() => tensor([1, 2], 'x' as never), InvalidArgumentError, /the second argument must be a shape \(an array of sizes\) or options, got string "x"/);
    expectThrows(() => tensor([1, 2], [2], 5 as never), InvalidArgumentError, /options must be an object/);
  });
});
