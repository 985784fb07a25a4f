/**
 * mulberry32, a small seeded generator in [0, 1): the same seed gives the same sequence on every
 * platform. Random token positions and generate's sampler draw from it (a dependency would add
 * nothing to eight lines).
 * @module
 */

/** A generator of numbers in [0, 1) from `seed`. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
