/**
 * Loads the native addon and declares its shape. Everything else in lib/ talks to libtorch through
 * this module only.
 * @internal
 * @module
 */
import * as path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { loadAddon, type AddonChoice } from './addon-loader';
import { errorClasses } from './errors';

/** A TypedArray that can hold tensor data. */
export type TensorData =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array;

/** One item of an index expression, as the addon takes it. */
export type NativeIndexItem = number | boolean | null | '...' | { start?: number; stop?: number; step?: number } | NativeTensor;

export interface NativeTensor {
  shape(): number[];
  strides(): number[];
  dtype(): string;
  device(): string;
  numel(): number;
  isContiguous(): boolean;
  requiresGrad(): boolean;
  data(): [TensorData, boolean];
  copyData(): TensorData;
  write(values: TensorData): void;
  toFloat32Array(): Float32Array;
  to(device: string | null, dtype: string | null): NativeTensor;
  contiguous(): NativeTensor;
  clone(): NativeTensor;
  reshape(shape: number[]): NativeTensor;
  view(shape: number[]): NativeTensor;
  index(items: NativeIndexItem[]): NativeTensor;
  item(): number | boolean | bigint;
  toArray(): unknown;
  sameStorage(other: NativeTensor): boolean;
  dispose(): void;
  isDisposed(): boolean;
}

export interface NativeModuleInfo {
  path: string;
  type: string;
  parameters: { name: string; shape: number[] }[];
  buffers: { name: string; shape: number[] }[];
}

export interface NativeAbortToken {
  abort(): void;
  aborted(): boolean;
}

/** Tensors a kernel collected, held natively until one is taken (see cpp/tensor/tensor_pack.h). */
export interface NativeTensorPack {
  /** The slot's tensor as a handle; the slot is emptied. */
  take(slot: number): NativeTensor;
  /** Drops the slot's tensor (idempotent). */
  release(slot: number): void;
  /** release() of slots start .. end - 1, in one call. */
  releaseRange(start: number, end: number): void;
}

export interface NativeKernel {
  results(): unknown;
  reset(): void;
  configure(options: Record<string, unknown>): void;
  name(): string;
}

/** Extraction kernels whose results one call takes into a pack (see cpp/hooks/kernel_group.h). */
export interface NativeKernelGroup {
  /**
   * Each kernel's tensors into a pack, in order, `counts[i]` of kernel i (the array given at
   * construction); each kernel is reset. The pack is the previous take's when none of its slots is
   * in use any more, else a new one.
   */
  take(): NativeTensorPack;
}

export interface NativeHookPoint {
  name: string;
  module: string;
  type: string;
  kind: string;
  layer: number | null;
}

export interface NativeModel {
  hookPoints(): NativeHookPoint[];
  hookPointShapes(args: unknown[]): [string, number[] | null][];
  hookedGraph(names: string[]): { graph: string; buildMilliseconds: number; sites: number };
  validateHookPoints(names: string[]): void;
  modules(): NativeModuleInfo[];
  parameters(): [string, NativeTensor][];
  signature(): string;
  extraFiles(): Record<string, string>;
  hookSet(hooks: unknown[], taps: string[] | undefined): NativeHookSet;
  forward(args: unknown[], options: NativeForwardOptions): unknown;
  forwardAsync(args: unknown[], options: NativeForwardOptions, token: NativeAbortToken | null): Promise<unknown>;
  setTraining(training: boolean): void;
  isTraining(): boolean;
  device(): string;
  dispose(): void;
  isDisposed(): boolean;
}

/** A model's hooks and taps read once by the addon (Model keeps the last few and reuses them). */
export interface NativeHookSet {
  readonly __nativeHookSet: never;
}

export interface NativeForwardOptions {
  grad: boolean;
  output?: false;
  hookSet?: NativeHookSet;
}

export interface NativeRuntimeInfo {
  libtorchVersion: string;
  cudaBuild: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  externalBuffers: boolean;
  cpuFusion: boolean;
  openBlasThreads: number | null;
  ompWaitPolicy: string | null;
}

export interface NativeBinding {
  NativeTensor: abstract new (...args: never[]) => NativeTensor;
  NativeModel: abstract new (...args: never[]) => NativeModel;
  AbortToken: new () => NativeAbortToken;
  NativeKernel: abstract new (...args: never[]) => NativeKernel;
  NativeTensorPack: new () => NativeTensorPack;
  NativeHookSet: abstract new (...args: never[]) => NativeHookSet;
  NativeKernelGroup: new (kernels: NativeKernel[], counts: Int32Array) => NativeKernelGroup;
  createKernel(name: string, options: Record<string, unknown>): NativeKernel;
  kernelNames(): Record<string, string>;
  setErrorClasses(classes: typeof errorClasses): void;
  fromTypedArray(data: TensorData | Uint8ClampedArray, shape: number[], dtype: string | null, share: boolean): NativeTensor;
  loadModel(path: string, device: string, training: boolean, verifyChecksums: boolean): NativeModel;
  cat(tensors: NativeTensor[], dim: number): NativeTensor;
  stack(tensors: NativeTensor[], dim: number): NativeTensor;
  linear(input: NativeTensor, weight: NativeTensor, bias?: NativeTensor): NativeTensor;
  grad(output: NativeTensor, inputs: NativeTensor[], gradOutput?: NativeTensor): (NativeTensor | null)[];
  setNumThreads(count: number): void;
  getNumThreads(): number;
  setCpuFusion(enabled: boolean): void;
  runtimeInfo(): NativeRuntimeInfo;
  memoryStats(): { externalBytes: number; storages: number };
  prepareForExit(): void;
}

/** Which binary and which libtorch were chosen (see addon-loader.ts). */
export let addonChoice: AddonChoice;

/**
 * Settings that libraries read once, when libtorch loads them (in `load`). Each applies only where
 * the user has not set it, and only for the load: the environment is restored after, so child
 * processes see the user's own.
 */
const LOAD_ENVIRONMENT: [name: string, value: string][] = [
  // libgomp: by default its idle intra-op threads spin after each parallel region, taking the cores
  // from threads that still have work (OpenBLAS's, V8's GC helpers, libuv's): on 2 cores, forwards of
  // the bundled model at 2 threads stalled for milliseconds in some runs. Passive threads sleep at once.
  ['OMP_WAIT_POLICY', 'PASSIVE'],
  // UCX, which Debian's libtorch 2.x pulls in through Open MPI (nothing here uses MPI). Its memory
  // hooks assume they load at process start: at load they rewrite libc's mmap, munmap, brk and
  // madvise while Node's threads run, then test the hooks with sbrk(+page) and sbrk(-page). When the
  // program break cannot grow (V8 often reserves the pages right above it), the first fails and the
  // second still shrinks the heap by a page, unmapping live malloc'd memory: about one process in
  // 100 that loaded the addon on Debian 13 then segfaulted, in V8 or in teardown (traced with strace
  // and core dumps: brk(+4096) refused, brk(-4096) done, the fault in that page).
  ['UCX_MEM_EVENTS', 'no'],
  // The rest of UCX's load: a thread that looks for its VFS daemon, which is never there, and its
  // own handlers for SIGSEGV (V8's), SIGBUS, SIGILL and SIGFPE.
  ['UCX_VFS_ENABLE', 'n'],
  ['UCX_ERROR_SIGNALS', ''],
];

function load(): NativeBinding {
  // EASYROUTINE_ADDON selects a specific build (e.g. the copy-only variant tested in CI).
  const unset = LOAD_ENVIRONMENT.filter(([name]) => process.env[name] === undefined);
  for (const [name, value] of unset) process.env[name] = value;
  let binding: NativeBinding;
  try {
    ({ addon: binding, choice: addonChoice } = loadAddon<NativeBinding>(path.join(__dirname, '..', '..')));
  } finally {
    for (const [name] of unset) delete process.env[name];
  }
  binding.setErrorClasses(errorClasses);
  // Inference threads must stop while libtorch is still whole: the 'exit' event comes before any C++
  // exit handler. Only the main thread's exit ends the process (a worker's ends its environment,
  // whose cleanup hooks stop that worker's threads).
  if (isMainThread) process.once('exit', () => binding.prepareForExit());
  return binding;
}

/** The addon, loaded once per environment (main thread or worker). */
export const native: NativeBinding = load();
