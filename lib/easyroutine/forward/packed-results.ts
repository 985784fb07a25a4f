/**
 * What the extraction kernels of one forward collected, taken from all of them with one native call
 * into one pack (which also resets them for the next forward). Each kernel's tensors sit in the
 * pack in the order its results() lists them; each result is a Tensor whose handle is made on first
 * use, so results that are disposed unread never cost a handle. A kernel whose point did not run
 * gave none.
 * @module
 */
import { native, type NativeKernel, type NativeKernelGroup, type NativeTensorPack } from '../../core/binding';
import { Tensor } from '../../core/tensor';

/** The kernels of an extraction, taken together (made once per plan). */
export class KernelGroup {
  readonly #group: NativeKernelGroup;
  // written by each take (the group keeps it)
  readonly #counts: Int32Array;

  constructor(kernels: NativeKernel[]) {
    this.#counts = new Int32Array(kernels.length);
    this.#group = new native.NativeKernelGroup(kernels, this.#counts);
  }

  /** Takes what the kernels collected in the forward that just ran. */
  take(): PackedResults {
    return new PackedResults(this.#group.take(), this.#counts);
  }
}

export class PackedResults {
  readonly #pack: NativeTensorPack;
  /** Where each kernel's tensors start in the pack, and (last) their total. */
  readonly #starts: number[];

  /** `counts` is read now: the group writes the next forward's into the same array. */
  constructor(pack: NativeTensorPack, counts: Int32Array) {
    this.#pack = pack;
    const starts = [0];
    for (let i = 0; i < counts.length; i++) starts.push(starts[i]! + counts[i]!);
    this.#starts = starts;
  }

  /** How many tensors kernel `kernel` gave (0: its point did not run). */
  count(kernel: number): number {
    return this.#starts[kernel + 1]! - this.#starts[kernel]!;
  }

  /** Kernel `kernel`'s `index`-th tensor. */
  tensor(kernel: number, index = 0): Tensor {
    return Tensor._fromPack(this.#pack, this.#starts[kernel]! + index);
  }
}
