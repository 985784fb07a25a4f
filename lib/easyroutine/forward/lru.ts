/**
 * The least-recently-used bound shared by the per-model caches of a forward's plan. A Map keeps
 * insertion order, so its first key is the oldest; three lines do not warrant a dependency.
 * @module
 */

/** Remembers `value` under `key` in an LRU map of at most `size` entries. */
export function remember<V>(map: Map<string, V>, key: string, value: V, size: number): void {
  map.set(key, value);
  if (map.size > size) map.delete(map.keys().next().value!);
}

/** The entry under `key`, marked most recently used. */
export function touch<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
}
