/**
 * safetensors files read and written in pieces: the header, then each tensor's bytes straight
 * between the file and the tensor's own memory, at most {@link CHUNK_BYTES} per system call. No
 * Buffer of the whole file is ever made, so files of any size load (a single `readFileSync` stops at
 * 2 GiB with ERR_FS_FILE_TOO_LARGE) and saving needs no second copy of the cache. Offsets are
 * JS numbers: exact up to 2^53 bytes.
 *
 * The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header size, the
 * JSON header (name -> { dtype, shape, data_offsets }, and `__metadata__` of strings), padded with
 * spaces to 8 bytes as the reference writer does, then the tensors' bytes.
 * @module
 */
import * as fs from 'node:fs';
import { InvalidArgumentError } from '../core/errors';
import { Tensor, fromTypedArray, type DType } from '../core/tensor';

/** The most bytes one read or write moves (fs caps a call at 2 GiB - 1). */
export const CHUNK_BYTES = 1 << 30;

const SAFETENSORS_DTYPE: Record<DType, string> = {
  float32: 'F32', float64: 'F64', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};
const FROM_SAFETENSORS = Object.fromEntries(Object.entries(SAFETENSORS_DTYPE).map(([k, v]) => [v, k as DType]));
const BYTES: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };
const TYPED: Record<DType, new (buffer: ArrayBuffer, offset: number, length: number) => ArrayBufferView> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, bfloat16: Uint16Array, int64: BigInt64Array,
  int32: Int32Array, int16: Int16Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) {
    const n = fs.writeSync(fd, bytes, done, Math.min(CHUNK_BYTES, bytes.length - done), position + done);
    done += n;
  }
}

function readAll(fd: number, target: Uint8Array, position: number): void {
  for (let done = 0; done < target.length; ) {
    const n = fs.readSync(fd, target, done, Math.min(CHUNK_BYTES, target.length - done), position + done);
    if (n === 0) throw new InvalidArgumentError(`the file ends ${target.length - done} bytes early`);
    done += n;
  }
}

/** Writes `tensors` (name -> tensor, on any device or layout) and `metadata` to `path`. Throws the fs error as it is. */
export function writeSafetensorsFile(path: string, tensors: readonly [string, Tensor][], metadata: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, tensor] of tensors) {
    const bytes = tensor.numel * BYTES[tensor.dtype as DType];
    header[name] = { dtype: SAFETENSORS_DTYPE[tensor.dtype as DType], shape: tensor.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  header['__metadata__'] = metadata;
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padding = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(padding, 0x20)]);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  const fd = fs.openSync(path, 'w');
  try {
    writeAll(fd, size, 0);
    writeAll(fd, json, 8);
    let position = 8 + json.length;
    for (const [, tensor] of tensors) {
      // the tensor's own memory where JS can see it (CPU, contiguous), a copy only otherwise
      const cpu = tensor.to('cpu').contiguous();
      const data = cpu.dataIsShared ? cpu.data : cpu.copyData();
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      writeAll(fd, bytes, position);
      position += bytes.length;
      // a handle of its own even when it shares the tensor's memory: releasing it frees nothing of the tensor's
      if (cpu !== tensor) cpu.dispose();
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The header and tensors of a safetensors file. */
export interface SafetensorsContents {
  metadata: Record<string, string>;
  /** In the file's order. */
  tensors: Map<string, Tensor>;
}

/**
 * Reads `path` tensor by tensor. Throws an InvalidArgumentError (prefixed with `caller`) for a file
 * that is not safetensors or is damaged, the fs error as it is otherwise.
 */
export function readSafetensorsFile(path: string, caller: string): SafetensorsContents {
  const fd = fs.openSync(path, 'r');
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) throw new InvalidArgumentError(`${caller}: not a safetensors file (shorter than its header size)`);
    const sizeBytes = Buffer.alloc(8);
    readAll(fd, sizeBytes, 0);
    const headerSize = Number(sizeBytes.readBigUInt64LE(0));
    if (headerSize > fileSize - 8) throw new InvalidArgumentError(`${caller}: not a safetensors file (header size beyond the end)`);
    const headerBytes = Buffer.alloc(headerSize);
    readAll(fd, headerBytes, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBytes.toString('utf8'));
    } catch {
      throw new InvalidArgumentError(`${caller}: not a safetensors file (header is not JSON)`);
    }
    const base = 8 + headerSize;
    const available = fileSize - base;
    type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };
    const tensors = new Map<string, Tensor>();
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const entry = raw as Entry;
      const dtype = FROM_SAFETENSORS[entry.dtype];
      if (!dtype) throw new InvalidArgumentError(`${caller}: tensor '${name}' has dtype ${entry.dtype}, which easyroutine does not hold`);
      const [begin, end] = Array.isArray(entry.data_offsets) ? entry.data_offsets : [];
      if (!Number.isInteger(begin) || !Number.isInteger(end) || begin! < 0 || begin! > end! || end! > available) {
        throw new InvalidArgumentError(`${caller}: tensor '${name}' has data_offsets ${JSON.stringify(entry.data_offsets)} but the file holds ${available} data bytes (truncated, or a damaged header)`);
      }
      const elements = Array.isArray(entry.shape) && entry.shape.every((d) => Number.isInteger(d) && d >= 0) ? entry.shape.reduce((a, b) => a * b, 1) : NaN;
      if (elements * BYTES[dtype] !== end! - begin!) {
        throw new InvalidArgumentError(`${caller}: tensor '${name}' of shape ${JSON.stringify(entry.shape)} and dtype ${entry.dtype} needs ${elements * BYTES[dtype]} bytes but its data_offsets span ${end! - begin!}`);
      }
      const memory = new ArrayBuffer(end! - begin!);
      readAll(fd, new Uint8Array(memory), base + begin!);
      tensors.set(name, fromTypedArray(new TYPED[dtype](memory, 0, elements) as never, entry.shape, { dtype }));
    }
    return { metadata: (header['__metadata__'] ?? {}) as Record<string, string>, tensors };
  } finally {
    fs.closeSync(fd);
  }
}
