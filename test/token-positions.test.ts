import { describe, expect, it } from 'vitest';
import { TokenPositionError, resolveTokenPositions, spansFromAttentionMask, validateTokenPosition } from '../lib/index';
import { expectThrows } from './helpers';

const seven = { offset: 0, length: 7 };

describe('token positions', () => {
  it('resolves integers, negatives and ranges (negative ends count from the end)', () => {
    expect(resolveTokenPositions([0, 3, -1, -7], seven)).toEqual([[0], [3], [6], [0]]);
    expect(resolveTokenPositions([[2, 5], [2, -1], [-3, 7]], seven)).toEqual([[2, 3, 4], [2, 3, 4, 5], [4, 5, 6]]);
  });

  it("resolves 'last', any 'last-N' and 'all'", () => {
    expect(resolveTokenPositions(['last', 'last-1', 'last-2', 'last-3', 'last-4', 'last-7'], seven)).toEqual([[6], [6], [5], [4], [3], [0]]);
    expect(resolveTokenPositions(['all'], { offset: 0, length: 3 })).toEqual([[0, 1, 2]]);
  });

  it('cuts inputs-partition-K at the pivots (6 tokens, pivot 4: the first segment has 4 positions)', () => {
    const six = { offset: 0, length: 6 };
    expect(resolveTokenPositions(['inputs-partition-0', 'inputs-partition-1'], six, { pivotPositions: [4] })).toEqual([[0, 1, 2, 3], [4, 5]]);
    expectThrows(() => resolveTokenPositions(['inputs-partition-2'], six, { pivotPositions: [4] }), TokenPositionError, /only 2 segments/);
    expectThrows(() => resolveTokenPositions(['inputs-partition-0'], six), TokenPositionError, /needs pivotPositions/);
  });

  it('draws random positions from a seed: repeatable, distinct, inside the segment', () => {
    const span = { offset: 0, length: 20 };
    const a = resolveTokenPositions(['random-text-5', 'random-inputs-partition-1-3'], span, { pivotPositions: [10], seed: 7 });
    const b = resolveTokenPositions(['random-text-5', 'random-inputs-partition-1-3'], span, { pivotPositions: [10], seed: 7 });
    const c = resolveTokenPositions(['random-text-5'], span, { seed: 8 });
    expect(a).toEqual(b);
    expect(new Set(a[0]).size).toBe(5);
    expect(a[1]!.every((p) => p >= 10 && p < 20)).toBe(true);
    expect(c[0]).not.toEqual(a[0]);
    expect(resolveTokenPositions(['random-text'], span, { seed: 1 })[0]).toHaveLength(1);
    expectThrows(() => resolveTokenPositions(['random-text-30'], span), TokenPositionError, /draws 30 positions from a segment of 20/);
  });

  it('resolves per row with left and right padding from the attention mask', () => {
    const mask = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    const spans = spansFromAttentionMask(mask, 2, 6);
    expect(spans).toEqual([{ offset: 2, length: 4 }, { offset: 0, length: 4 }]);
    expect(spans.map((s) => resolveTokenPositions(['last', 0, [1, -1]], s))).toEqual([
      [[5], [2], [3, 4]],
      [[3], [0], [1, 2]],
    ]);
    expectThrows(() => spansFromAttentionMask([1, 0, 1], 1, 3), TokenPositionError, /gap at position 1/);
  });

  it('rejects malformed and out-of-range specs with typed errors', () => {
    expectThrows(() => resolveTokenPositions([7], seven), TokenPositionError, /token position 7 is outside a sequence of 7 tokens/);
    expectThrows(() => resolveTokenPositions([-8], seven), TokenPositionError, /outside/);
    expectThrows(() => resolveTokenPositions([[5, 2]], seven), TokenPositionError, /resolves to \[5, 2\)/);
    expectThrows(() => resolveTokenPositions(['last-8'], seven), TokenPositionError, /outside/);
    expectThrows(() => validateTokenPosition('first'), TokenPositionError, /unknown token position "first"; expected an integer/);
    expectThrows(() => validateTokenPosition(1.5), TokenPositionError, /not an integer/);
    expectThrows(() => validateTokenPosition('last-0'), TokenPositionError, /counts from 1/);
    expectThrows(() => validateTokenPosition([1, 2, 3] as never), TokenPositionError, /pair of integers/);
  });
});
