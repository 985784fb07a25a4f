/**
 * Process-level facts and settings of the libtorch runtime.
 * @module
 */
import { addonChoice, native } from './binding';

/** What this build of the addon runs on. */
export interface RuntimeInfo {
  /** The libtorch version the addon was compiled against, e.g. `1.13.0`. */
  libtorchVersion: string;
  /** Whether the addon was built against a CUDA libtorch. */
  cudaBuild: boolean;
  /** Whether a CUDA device can be used now. */
  cudaAvailable: boolean;
  /** How many CUDA devices are visible. */
  cudaDeviceCount: number;
  /** Whether `Tensor.data` can share memory (false in copy-only builds and under Electron's memory cage). */
  externalBuffers: boolean;
  /** Whether TorchScript fuses CPU operations (see {@link setCpuFusion}; off by default). */
  cpuFusion: boolean;
  /**
   * The thread count of OpenBLAS's own pool when libtorch's BLAS is OpenBLAS (Debian's libtorch),
   * else null. {@link setNumThreads} sets it too.
   */
  openBlasThreads: number | null;
  /**
   * OMP_WAIT_POLICY as libtorch's OpenMP runtime read it when the addon loaded, or null. Unless you
   * set one, loading sets `PASSIVE` for that moment (idle intra-op threads sleep instead of spinning
   * on cores that V8's and OpenBLAS's threads need) and then restores the environment.
   */
  ompWaitPolicy: string | null;
  /** The path of the native binary that was loaded (chosen for the libtorch found, or EASYROUTINE_ADDON). */
  binary: string;
  /**
   * The libtorch it was chosen for: where it came from (`python (python3)`, `LIBTORCH`, `system`),
   * its library directory and version; null when EASYROUTINE_ADDON named the binary.
   */
  libtorch: {
    /** Where it was found: `LIBTORCH`, `python (python3)` (that Python's torch), or `system` (Debian's). */
    source: string;
    /** The directory of its shared libraries. */
    libDir: string;
    /** Its version, e.g. `2.13.0`. */
    version: string;
    /** Whether it is a CUDA build. */
    cuda: boolean;
  } | null;
}

/** Facts about the loaded addon and libtorch. */
export function runtimeInfo(): RuntimeInfo {
  const { binary, libtorch } = addonChoice;
  return { ...native.runtimeInfo(), binary, libtorch: libtorch && { source: libtorch.source, libDir: libtorch.libDir, version: libtorch.version, cuda: libtorch.cuda } };
}

/**
 * Sets libtorch's intra-op thread count for every forward, on the JS thread and on inference
 * threads, and OpenBLAS's own pool when libtorch uses OpenBLAS (its idle threads would otherwise
 * spin beside a forward told to use fewer threads).
 */
export function setNumThreads(count: number): void {
  native.setNumThreads(count);
}

/**
 * Turns TorchScript's CPU fuser (NNC with LLVM) on or off for the whole process. It is off by
 * default: Debian's libtorch 2.6 hangs compiling Llama-like graphs with it (in Python too).
 */
export function setCpuFusion(enabled: boolean): void {
  native.setCpuFusion(enabled);
}

/** libtorch's intra-op thread count on the calling thread. */
export function getNumThreads(): number {
  return native.getNumThreads();
}

/** CPU memory held by live tensor handles, as reported to V8 (each storage counted once). */
export interface MemoryStats {
  /** Bytes of CPU tensor storage held by handles. */
  externalBytes: number;
  /** Number of distinct storages held. */
  storages: number;
}

/** CPU memory currently held by tensor handles of this environment. */
export function memoryStats(): MemoryStats {
  return native.memoryStats();
}
