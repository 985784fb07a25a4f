/**
 * What the extraction kernels of one forward collected, read from one native pack: each result is a
 * Tensor whose handle is made on first use, so results that are disposed unread never cost a handle.
 * A kernel whose point did not run gives undefined.
 * @module
 */
import { native } from '../../core/binding';
import type { NativeHook } from '../../core/hooks';
import { Tensor } from '../../core/tensor';

export class PackedResults {
  readonly #pack = new native.NativeTensorPack();

  #at(slot: number): Tensor {
    return Tensor._fromPack(this.#pack, slot);
  }

  tensor(hook: NativeHook): Tensor | undefined {
    const slot = hook.native.results(this.#pack) as number | undefined;
    return slot === undefined ? undefined : this.#at(slot);
  }

  tensors(hook: NativeHook): Tensor[] | undefined {
    return (hook.native.results(this.#pack) as number[] | undefined)?.map((slot) => this.#at(slot));
  }

  heads(hook: NativeHook): [number, Tensor][] {
    return ((hook.native.results(this.#pack) as [number, number][] | undefined) ?? []).map(([head, slot]) => [head, this.#at(slot)]);
  }

  record(hook: NativeHook): Record<string, Tensor> | undefined {
    const slots = hook.native.results(this.#pack) as Record<string, number> | undefined;
    return slots && Object.fromEntries(Object.entries(slots).map(([name, slot]) => [name, this.#at(slot)]));
  }
}
