/**
 * Resolving a forward's target positions: per batch row, the positions each spec selects and the
 * pattern's query-row groups, plus the key under which the extraction kernels for them are kept.
 * Without an attention mask the result depends only on the options and the input's shape, so an
 * extraction loop resolves once (random specs too: they are seeded, per row).
 * @module
 */
import { InvalidArgumentError } from '../../core/errors';
import type { ResolvedExtractionConfig } from '../extraction-config';
import { resolveTokenPositions, type ResolveOptions, type SequenceSpan, type TokenPosition } from '../token-positions';
import { remember } from './lru';

/** The resolved target positions of one forward. */
export interface Target {
  /** Per batch row, the positions to extract, groups concatenated. */
  positions: number[][];
  groupSizes: number[];
  /** Per batch row, where the real tokens start (left padding). */
  offsets: number[];
  /** Per batch row, the query-row groups of the pattern (attnPatternRowPositions). */
  rows: number[][][] | undefined;
  /** The input's sequence length (padding included). */
  inputLength: number;
  /** Every row's positions are the whole sequence, in order: gathering them is a copy. */
  wholeSequence: boolean;
}

/** Everything a forward's options resolve to before it runs: equal for equal options and shapes. */
export interface Resolution {
  perRow: number[][][];
  groupSizes: number[];
  target: Target;
  /** The key of the extraction plan for this config and these positions. */
  extractionKey: string;
}

/**
 * The options that position specs resolve against, and whether the forward has an attention mask
 * (its spans then vary per batch: nothing is remembered).
 */
export type PositionOptions = Pick<ResolveOptions, 'pivotPositions' | 'seed'> & { masked: boolean };

/** How many resolutions (config x positions x input shape) a model remembers. */
const RESOLUTION_CACHE_SIZE = 64;

const configIds = new WeakMap<object, string>();
const idsByContent = new Map<string, string>();
let nextConfigId = 0;

/** A short string equal for equal configs (configs are frozen: the id is worked out once per object). */
export function configKey(config: Readonly<ResolvedExtractionConfig>): string {
  let id = configIds.get(config);
  if (id === undefined) {
    const content = JSON.stringify(config);
    id = idsByContent.get(content);
    if (id === undefined) {
      id = `#${nextConfigId++}`;
      idsByContent.set(content, id);
    }
    if (Object.isFrozen(config)) configIds.set(config, id);
  }
  return id;
}

/** The groups of one row, one after the other (Array.prototype.flat is slow on hot paths). */
function concatenated(groups: readonly number[][]): number[] {
  const out: number[] = [];
  for (const group of groups) for (const p of group) out.push(p);
  return out;
}

/** Whether two lists of position specs (or pivot positions) hold the same values. */
function sameList(a: readonly (TokenPosition | number)[] | undefined, b: readonly (TokenPosition | number)[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length || x[0] !== y[0] || x[1] !== y[1]) return false;
  }
  return true;
}

/** What the last unmasked resolution was asked with (copies: the caller's arrays may change). */
interface LastRequest {
  config: Readonly<ResolvedExtractionConfig>;
  specs: TokenPosition[];
  rows: number;
  inputLength: number;
  pivotPositions: number[] | undefined;
  seed: number | undefined;
  resolution: Resolution;
}

/** Resolves target positions, remembering unmasked resolutions per model. */
export class PositionResolver {
  readonly #resolutions = new Map<string, Resolution>();
  // An extraction loop asks the same as last time: comparing with that is cheaper than the memo key
  #last: LastRequest | undefined;

  resolve(config: Readonly<ResolvedExtractionConfig>, specs: TokenPosition[], spans: SequenceSpan[], inputLength: number, options: PositionOptions): Resolution {
    const last = this.#last;
    if (
      !options.masked &&
      last !== undefined &&
      last.config === config &&
      last.rows === spans.length &&
      last.inputLength === inputLength &&
      last.seed === options.seed &&
      sameList(last.specs, specs) &&
      sameList(last.pivotPositions, options.pivotPositions)
    ) {
      return last.resolution;
    }
    const resolution = this.#resolve(config, specs, spans, inputLength, options);
    if (!options.masked && Object.isFrozen(config)) {
      this.#last = { config, specs: specs.map((s) => (Array.isArray(s) ? ([...s] as unknown as TokenPosition) : s)), rows: spans.length, inputLength, pivotPositions: options.pivotPositions?.slice(), seed: options.seed, resolution };
    }
    return resolution;
  }

  #resolve(config: Readonly<ResolvedExtractionConfig>, specs: TokenPosition[], spans: SequenceSpan[], inputLength: number, options: PositionOptions): Resolution {
    const memoKey = options.masked ? undefined : `${configKey(config)} ${JSON.stringify(specs)} ${spans.length}x${inputLength} ${JSON.stringify(options.pivotPositions ?? null)} ${options.seed ?? 0}`;
    const known = memoKey === undefined ? undefined : this.#resolutions.get(memoKey);
    if (known) return known;
    const resolveRows = (list: TokenPosition[]) => spans.map((span, row) => resolveTokenPositions(list, span, { pivotPositions: options.pivotPositions, seed: options.seed, row }));
    const perRow = resolveRows(specs);
    const groupSizes = perRow[0]!.map((g) => g.length);
    perRow.forEach((groups, row) => {
      if (groups.some((g, i) => g.length !== groupSizes[i])) {
        throw new InvalidArgumentError(`HookedForward: the target positions resolve to ${groups.map((g) => g.length)} positions in row ${row} but ${groupSizes} in row 0; rows must give equal counts`);
      }
    });
    const rowSpecs = config.attnPatternRowPositions;
    const positions = perRow.map(concatenated);
    const target: Target = {
      positions,
      groupSizes,
      offsets: spans.map((s) => s.offset),
      rows: config.extractAttnPattern && rowSpecs ? resolveRows(rowSpecs) : undefined,
      inputLength,
      wholeSequence: positions.every((row) => row.length === inputLength && row.every((p, i) => p === i)),
    };
    const rows = target.rows ? target.rows.map((r) => r.map((g) => g.join(',')).join('|')).join(';') : '';
    const extractionKey = `${configKey(config)} ${target.positions.join(';')} ${target.groupSizes} ${target.offsets} ${rows} ${inputLength}`;
    const resolution = { perRow, groupSizes, target, extractionKey };
    if (memoKey !== undefined) remember(this.#resolutions, memoKey, resolution, RESOLUTION_CACHE_SIZE);
    return resolution;
  }
}
