/**
 * @internal The last few hook sets a model's forwards used. Reading a hook list into the addon (each
 * spec's fields, each point's name, the graph lookup) cost about as much per hook as running a
 * closure; research loops run the same hooks forward after forward, so a set is made once and found
 * again by comparing the (point, hook) pairs and taps by identity, which costs nanoseconds per hook.
 * @module
 */
import type { NativeHookSet } from './binding';

/** What a set is made of, flattened: point, hook, point, hook, ...; then the taps. */
export interface HookSetKey {
  pairs: unknown[];
  taps: readonly string[];
}

const CAPACITY = 8;

function sameItems(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class HookSetCache {
  #entries: { pairs: unknown[]; taps: string[]; set: NativeHookSet }[] = [];

  /** The cached set for `key`, else `make()`'s, cached (most recent first, the oldest dropped). */
  get(key: HookSetKey, make: () => NativeHookSet): NativeHookSet {
    for (let i = 0; i < this.#entries.length; i++) {
      const entry = this.#entries[i]!;
      if (sameItems(entry.pairs, key.pairs) && sameItems(entry.taps, key.taps)) {
        if (i > 0) this.#entries.unshift(...this.#entries.splice(i, 1));
        return entry.set;
      }
    }
    // copies: the caller's arrays may be reused and changed
    const set = make();
    this.#entries.unshift({ pairs: [...key.pairs], taps: [...key.taps], set });
    if (this.#entries.length > CAPACITY) this.#entries.pop();
    return set;
  }

  /** Forgets every set (their closures are no longer held). */
  clear(): void {
    this.#entries = [];
  }
}
