/**
 * Interventions: easyroutine's edits of an activation during a forward (ablations and patches of
 * residuals, attention and MLP outputs, queries, keys, values, per-head outputs, and pattern or
 * score cells), named like the cache keys they act on and carried out by native kernels.
 * @module
 */
import { InvalidArgumentError, describeValue } from '../core/errors';
import { nativeHook, type Hook } from '../core/hooks';
import { Tensor } from '../core/tensor';
import type { ArchitectureMapping } from './architecture/mapping';
import { resolveTokenPositions, validateTokenPosition, type ResolveOptions, type SequenceSpan, type TokenPosition } from './token-positions';

/** Where an intervention acts: the cell selection of easyroutine's intervention types. */
export type InterventionType = 'full' | 'columns' | 'rows' | 'grid' | 'columns_pre_softmax' | 'rows_pre_softmax' | 'grid_pre_softmax';

/**
 * An edit of an activation during the forward, named like the cache key it acts on:
 * `resid_in_{i}`, `resid_mid_{i}`, `resid_out_{i}`, `attn_in_{i}`, `attn_out_{i}`, `mlp_out_{i}`,
 * `queries_L{i}`, `keys_L{i}`, `values_L{i}` (type `full`: the token positions of every head),
 * `head_queries_L{l}H{h}`, `head_keys_L{l}H{h}`, `head_values_L{l}H{h}` (one head; for keys and values
 * a key/value head), `head_out_L{l}H{h}` (one head's output before the projection), and
 * `pattern_L{l}H{h}` (types `columns`: every query row x the key positions, `rows`: the query positions
 * x every key, `grid`: `[query specs, key specs]`; `*_pre_softmax` act on the scores, where an
 * ablation masks with -inf).
 */
export interface Intervention {
  /** Which cells: `full` (the positions of a residual, output or q/k/v), or a pattern's `columns`, `rows`, `grid`. */
  type: InterventionType;
  /** The cache key it acts on, e.g. `resid_out_3`, `pattern_L1H2`, `head_out_L0H1`. */
  activation: string;
  /** The positions edited (`grid`: a pair `[query positions, key positions]`). */
  tokenPositions: TokenPosition[] | [TokenPosition[], TokenPosition[]];
  /** `'ablation'` (default: multiply by `multiplicationValue`) or the values to write, of exactly the selected shape. */
  patchingValues?: 'ablation' | Tensor | null;
  /** The factor of an ablation (default 0: zero ablation; on scores 0 masks with -inf). */
  multiplicationValue?: number;
  /** Renormalise the edited head's pattern rows after the edit. */
  applySoftmax?: boolean;
}

/** The hooks that carry out one intervention on this batch (`validateOnly`: just check it). */
export function interventionHooks(arch: ArchitectureMapping, iv: Intervention, spans: SequenceSpan[], options: Pick<ResolveOptions, 'pivotPositions' | 'seed'>, validateOnly = false): [string, Hook][] {
  const fail = (why: string) => new InvalidArgumentError(`intervention on '${String(iv?.activation)}': ${why}`);
  if (iv === null || typeof iv !== 'object') throw new InvalidArgumentError('an intervention must be an object {type, activation, tokenPositions, ...}');
  if (typeof iv.activation !== 'string') throw new InvalidArgumentError(`an intervention's activation must be a string (e.g. 'resid_out_0', 'pattern_L1H2'), got ${describeValue(iv.activation)}`);
  const ablation = iv.patchingValues === undefined || iv.patchingValues === null || iv.patchingValues === 'ablation';
  if (!ablation && !(iv.patchingValues instanceof Tensor)) throw fail("patchingValues must be 'ablation', null or a Tensor");
  if (iv.multiplicationValue !== undefined && (typeof iv.multiplicationValue !== 'number' || !Number.isFinite(iv.multiplicationValue))) {
    throw fail(`multiplicationValue must be a finite number (the factor of the ablation; 0 zeroes), got ${describeValue(iv.multiplicationValue)}`);
  }
  if (iv.applySoftmax !== undefined && typeof iv.applySoftmax !== 'boolean') throw fail(`applySoftmax must be a boolean, got ${describeValue(iv.applySoftmax)}`);
  if (typeof iv.type !== 'string') throw fail(`type must be one of full, columns, rows, grid, columns_pre_softmax, rows_pre_softmax, grid_pre_softmax; got ${describeValue(iv.type)}`);
  const edit = ablation ? { factor: iv.multiplicationValue ?? 0 } : { patch: (iv.patchingValues as Tensor).native };
  const resolve = (specs: TokenPosition[]) => {
    if (!Array.isArray(specs)) throw fail('tokenPositions must be an array of token positions');
    if (validateOnly) {
      specs.forEach(validateTokenPosition);
      return [];
    }
    return spans.map((span, row) => resolveTokenPositions(specs, span, { pivotPositions: options.pivotPositions, seed: options.seed, row }).flat());
  };
  const layerOf = (i: string) => {
    const layer = arch.layers[Number(i)];
    if (!layer) throw fail(`layer ${i} does not exist (the model has ${arch.layers.length})`);
    return layer;
  };
  let match: RegExpExecArray | null;
  if ((match = /^pattern_L(\d+)H(\d+)$/.exec(iv.activation))) {
    const layer = layerOf(match[1]!);
    const head = Number(match[2]);
    if (head >= arch.nHeads) throw fail(`head ${head} does not exist (${arch.nHeads} heads)`);
    const kind = iv.type.replace(/_pre_softmax$/, '');
    const preSoftmax = iv.type.endsWith('_pre_softmax');
    let rows: number[][] | undefined;
    let columns: number[][] | undefined;
    if (kind === 'columns') columns = resolve(iv.tokenPositions as TokenPosition[]);
    else if (kind === 'rows') rows = resolve(iv.tokenPositions as TokenPosition[]);
    else if (kind === 'grid') {
      const pair = iv.tokenPositions as [TokenPosition[], TokenPosition[]];
      if (!Array.isArray(pair) || pair.length !== 2 || !pair.every(Array.isArray)) throw fail("type 'grid' takes tokenPositions [query positions, key positions]");
      rows = resolve(pair[0]);
      columns = resolve(pair[1]);
    } else throw fail(`type '${iv.type}' does not apply to a pattern; use columns, rows or grid (or their _pre_softmax forms)`);
    if (validateOnly) return [];
    const point = preSoftmax ? layer.points.scores : layer.points.pattern;
    return [[point, nativeHook('edit_pattern', { head, rows, columns, preSoftmax, applySoftmax: iv.applySoftmax ?? false, ...edit })]];
  }
  if (iv.type !== 'full') throw fail(`type '${iv.type}' applies to patterns only; use 'full'`);
  const positions = resolve(iv.tokenPositions as TokenPosition[]);
  if ((match = /^(resid_in|resid_mid|resid_out|attn_in|attn_out|mlp_out)_(\d+)$/.exec(iv.activation))) {
    const point = layerOf(match[2]!).points[match[1] as 'resid_in'];
    if (!point) throw fail(`${match[1]} was not found in this architecture`);
    return validateOnly ? [] : [[point, nativeHook('edit_positions', { positions, ...edit })]];
  }
  if ((match = /^(queries|keys|values)_L(\d+)$/.exec(iv.activation))) {
    const layer = layerOf(match[2]!);
    const heads = match[1] === 'queries' ? arch.nHeads : arch.nKvHeads;
    if (validateOnly) return [];
    const point = layer.points[match[1] as 'queries'];
    return Array.from({ length: heads }, (_, head) => {
      // a patch is given as the cache key's [batch, position, heads * d_head]: each head takes its slice
      const perHead = ablation ? edit : { patch: (iv.patchingValues as Tensor).index('...', { start: head * arch.dHead, stop: (head + 1) * arch.dHead }).contiguous().native };
      return [point, nativeHook('edit_positions', { positions, head, ...perHead })] as [string, Hook];
    });
  }
  if ((match = /^head_(queries|keys|values|out)_L(\d+)H(\d+)$/.exec(iv.activation))) {
    const layer = layerOf(match[2]!);
    const head = Number(match[3]);
    const heads = match[1] === 'keys' || match[1] === 'values' ? arch.nKvHeads : arch.nHeads;
    if (head >= heads) throw fail(`head ${head} does not exist (${heads} ${heads === arch.nKvHeads && heads !== arch.nHeads ? 'key/value ' : ''}heads)`);
    const point = match[1] === 'out' ? layer.points.head_output : layer.points[match[1] as 'queries'];
    return validateOnly ? [] : [[point, nativeHook('edit_positions', { positions, head, ...edit })]];
  }
  throw fail('unknown activation; see Intervention for the names');
}
