/**
 * Token positions: which positions of each sequence an extraction or an intervention acts on, in the
 * grammar of easyroutine's `target_token_positions`, resolved per batch row (padding-aware).
 *
 * | spec | positions (for a sequence of n real tokens) |
 * |---|---|
 * | `3`, `-1` | that position; negatives count from the end (`-1` is the last token) |
 * | `[2, 5]`, `[2, -1]` | the range `[start, end)`; a negative end counts from the end (`[2, -1]` on 7 tokens is 2..5) |
 * | `'last'` | n - 1 |
 * | `'last-N'` | the N-th token from the end, for any N >= 1 (`'last-1'` is `'last'`, `'last-2'` the one before) |
 * | `'all'` | 0 .. n - 1 |
 * | `'inputs-partition-K'` | the K-th segment when the sequence is cut at the pivot positions: `[0, p0)`, `[p0, p1)`, ..., `[p_last, n)` |
 * | `'random-inputs-partition-K'`, `'random-inputs-partition-K-N'` | N (default 1) distinct positions drawn from segment K |
 * | `'random-text'`, `'random-text-N'` | N (default 1) distinct positions drawn from the whole sequence |
 *
 * Random specs draw from a seeded generator (easyroutine draws unseeded), so a run can be repeated.
 * Differences from easyroutine, on purpose: negative range ends count from the end, any `last-N` works,
 * and positions are resolved per row with left or right padding taken from the attention mask.
 * @module
 */
import { InvalidArgumentError, TokenPositionError, describeValue } from '../core/errors';
import { seededRandom } from './seeded-random';

/** One token position spec (see the module documentation for the grammar). */
export type TokenPosition = number | readonly [number, number] | string;

/** Where the real tokens of one batch row are. */
export interface SequenceSpan {
  /** Index of the first real token (the amount of left padding). */
  offset: number;
  /** Number of real tokens. */
  length: number;
}

/** Options of {@link resolveTokenPositions}. */
export interface ResolveOptions {
  /** Cut points of the `inputs-partition-K` segments, relative to the first real token, increasing. */
  pivotPositions?: readonly number[];
  /** Seed of the random specs (default 0). The same seed, spec and row give the same positions. */
  seed?: number;
  /** The batch row being resolved, mixed into the random draws so rows differ. */
  row?: number;
}

const PATTERNS = {
  lastN: /^last-(\d+)$/,
  partition: /^inputs-partition-(\d+)$/,
  randomPartition: /^random-inputs-partition-(\d+)(?:-(\d+))?$/,
  randomText: /^random-text(?:-(\d+))?$/,
};

const GRAMMAR = "an integer, a [start, end) pair, 'last', 'last-N', 'all', 'inputs-partition-K', 'random-inputs-partition-K[-N]' or 'random-text[-N]'";

/** Throws a {@link TokenPositionError} if `spec` is not in the grammar; says what is accepted. */
export function validateTokenPosition(spec: TokenPosition): void {
  if (typeof spec === 'number') {
    if (!Number.isInteger(spec)) throw new TokenPositionError(`token position ${spec} is not an integer; expected ${GRAMMAR}`);
    return;
  }
  if (Array.isArray(spec)) {
    if (spec.length !== 2 || !spec.every((v) => Number.isInteger(v))) {
      throw new TokenPositionError(`token range ${JSON.stringify(spec)} must be a pair of integers [start, end)`);
    }
    return;
  }
  if (typeof spec === 'string') {
    if (spec === 'last' || spec === 'all') return;
    const last = PATTERNS.lastN.exec(spec);
    if (last) {
      if (Number(last[1]) < 1) throw new TokenPositionError(`'${spec}': N in 'last-N' counts from 1 ('last-1' is the last token)`);
      return;
    }
    if (PATTERNS.partition.test(spec)) return;
    const text = PATTERNS.randomText.exec(spec);
    if (text) {
      if (text[1] !== undefined && Number(text[1]) < 1) throw new TokenPositionError(`'${spec}': the number of positions to draw must be at least 1`);
      return;
    }
    const random = PATTERNS.randomPartition.exec(spec);
    if (random) {
      if (random[2] !== undefined && Number(random[2]) < 1) throw new TokenPositionError(`'${spec}': the number of positions to draw must be at least 1`);
      return;
    }
  }
  throw new TokenPositionError(`unknown token position ${JSON.stringify(spec)}; expected ${GRAMMAR}`);
}

function hash(text: string, seed: number): number {
  let h = (2166136261 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** `count` distinct positions drawn from `[start, end)`, sorted. */
function draw(start: number, end: number, count: number, random: () => number, spec: string): number[] {
  const available = end - start;
  if (count > available) throw new TokenPositionError(`'${spec}' draws ${count} positions from a segment of ${available}`);
  const pool = Array.from({ length: available }, (_, i) => start + i);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (available - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, count).sort((a, b) => a - b);
}

function segment(k: number, length: number, pivots: readonly number[] | undefined, spec: string): [number, number] {
  if (!pivots) throw new TokenPositionError(`'${spec}' needs pivotPositions`);
  const cuts = [0, ...pivots, length];
  for (let i = 1; i < cuts.length; i++) {
    if (!(cuts[i]! > cuts[i - 1]!) && !(i === cuts.length - 1 && cuts[i] === cuts[i - 1])) {
      throw new TokenPositionError(`pivotPositions ${JSON.stringify(pivots)} must increase within the sequence of ${length} tokens`);
    }
  }
  if (k >= cuts.length - 1) throw new TokenPositionError(`'${spec}': there are only ${cuts.length - 1} segments with pivotPositions ${JSON.stringify(pivots)}`);
  return [cuts[k]!, cuts[k + 1]!];
}

/**
 * Resolves each spec to the positions it names in one batch row: absolute indices into the padded
 * sequence (`offset` added). Throws a {@link TokenPositionError} for a malformed spec or one that
 * points outside the row's real tokens.
 */
export function resolveTokenPositions(specs: readonly TokenPosition[], span: SequenceSpan, options: ResolveOptions = {}): number[][] {
  if (!Array.isArray(specs as unknown)) throw new InvalidArgumentError(`resolveTokenPositions: specs must be an array of token positions, e.g. ['last'], got ${describeValue(specs)}`);
  const isCount = (n: unknown) => Number.isInteger(n) && (n as number) >= 0;
  if (span === null || typeof span !== 'object' || !isCount(span.offset) || !isCount(span.length)) {
    throw new InvalidArgumentError(`resolveTokenPositions: span must be { offset, length } of non-negative integers, got ${JSON.stringify(span)}`);
  }
  const { length, offset } = span;
  const outside = (spec: TokenPosition, detail: string) =>
    new TokenPositionError(`token position ${JSON.stringify(spec)} is outside a sequence of ${length} tokens${detail}`);
  return specs.map((spec) => {
    validateTokenPosition(spec);
    let positions: number[];
    if (typeof spec === 'number') {
      const index = spec < 0 ? length + spec : spec;
      if (index < 0 || index >= length) throw outside(spec, '');
      positions = [index];
    } else if (Array.isArray(spec)) {
      const [rawStart, rawEnd] = spec as [number, number];
      const start = rawStart < 0 ? length + rawStart : rawStart;
      const end = rawEnd < 0 ? length + rawEnd : rawEnd;
      if (start < 0 || end > length || start >= end) throw outside(spec, ` (it resolves to [${start}, ${end}))`);
      positions = Array.from({ length: end - start }, (_, i) => start + i);
    } else {
      const text = spec as string;
      const random = () => seededRandom(hash(`${text}/${options.row ?? 0}`, options.seed ?? 0));
      let match: RegExpExecArray | null;
      if (text === 'last') {
        if (length < 1) throw outside(spec, '');
        positions = [length - 1];
      } else if (text === 'all') {
        positions = new Array<number>(length);
        for (let i = 0; i < length; i++) positions[i] = i;
      } else if ((match = PATTERNS.lastN.exec(text))) {
        const index = length - Number(match[1]);
        if (index < 0) throw outside(spec, '');
        positions = [index];
      } else if ((match = PATTERNS.partition.exec(text))) {
        const [start, end] = segment(Number(match[1]), length, options.pivotPositions, text);
        positions = Array.from({ length: end - start }, (_, i) => start + i);
      } else if ((match = PATTERNS.randomPartition.exec(text))) {
        const [start, end] = segment(Number(match[1]), length, options.pivotPositions, text);
        positions = draw(start, end, Number(match[2] ?? 1), random(), text);
      } else {
        match = PATTERNS.randomText.exec(text)!;
        positions = draw(0, length, Number(match[1] ?? 1), random(), text);
      }
    }
    return offset === 0 ? positions : positions.map((p) => p + offset);
  });
}

/**
 * The real-token span of each row of an attention mask (`[batch, seq]` of 0/1, left or right
 * padding). Rows must be contiguous runs of ones.
 */
export function spansFromAttentionMask(mask: ArrayLike<number | bigint>, batch: number, seq: number): SequenceSpan[] {
  if (mask.length !== batch * seq) throw new InvalidArgumentError(`attention mask has ${mask.length} entries; expected ${batch} x ${seq} = ${batch * seq}`);
  const spans: SequenceSpan[] = [];
  for (let b = 0; b < batch; b++) {
    let first = -1;
    let last = -1;
    for (let t = 0; t < seq; t++) {
      const value = Number(mask[b * seq + t]);
      if (value !== 0 && value !== 1) throw new InvalidArgumentError(`attention mask row ${b} holds ${value} at position ${t}; a mask holds 0 (padding) or 1 (a real token)`);
      if (value !== 0) {
        if (first < 0) first = t;
        else if (last !== t - 1) throw new TokenPositionError(`attention mask row ${b} has a gap at position ${last + 1}; expected one run of real tokens`);
        last = t;
      }
    }
    if (first < 0) throw new TokenPositionError(`attention mask row ${b} has no real token (all ${seq} entries are 0)`);
    spans.push({ offset: first, length: last - first + 1 });
  }
  return spans;
}
