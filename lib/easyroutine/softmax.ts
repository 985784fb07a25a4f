/**
 * Softmax over a row of logits in JS, stable (the maximum subtracted first): what predictions, the
 * lenses and the patching metrics read from the logits of a few positions.
 * @module
 */

/** log Σ exp(row). */
export function logSumExp(row: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  let total = 0;
  for (let i = 0; i < row.length; i++) total += Math.exp(row[i]! - max);
  return max + Math.log(total);
}

/** The k most likely entries of a row of logits, most likely first, with their softmax probabilities. */
export function topK(row: ArrayLike<number>, k: number): { token: number; probability: number }[] {
  const log = logSumExp(row);
  const order = Array.from({ length: row.length }, (_, i) => i).sort((a, b) => row[b]! - row[a]!);
  return order.slice(0, k).map((token) => ({ token, probability: Math.exp(row[token]! - log) }));
}
