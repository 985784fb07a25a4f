/**
 * ExtractionConfig: what an extraction saves, with every field of easyroutine's, in camelCase
 * (the Python snake_case names are accepted too). Unknown fields and bad values throw an
 * {@link InvalidArgumentError} naming the field and what it accepts.
 * @module
 */
import { InvalidArgumentError } from '../core/errors';
import { validateTokenPosition, type TokenPosition } from './token-positions';

/** A head of a layer, for {@link ResolvedExtractionConfig.attnHeads}. */
export interface LayerHead {
  /** The layer, from 0. */
  layer: number;
  /** The head in that layer, from 0. */
  head: number;
}

/** How attention pattern blocks are reduced (see easyroutine's attention_pattern_head). */
export type PatternReduction = 'none' | 'mean' | 'sum' | 'baseline_ratio';

/**
 * Every field of a config, as {@link extractionConfig} returns it: what an extraction saves. Every
 * flag defaults to false unless noted. Write configs as {@link ExtractionConfig} (the same fields,
 * each optional) or {@link PythonExtractionConfig}.
 */
export interface ResolvedExtractionConfig {
  /** `input_embeddings`: the input of block 0, at the target positions. */
  extractEmbed: boolean;
  /** `resid_in_{i}`: the residual stream entering block i. */
  extractResidIn: boolean;
  /** `resid_mid_{i}`: the true mid-block residual (resid_in + attn_out); easyroutine saved the normalized MLP input here. */
  extractResidMid: boolean;
  /** `resid_out_{i}`: the residual stream leaving block i. */
  extractResidOut: boolean;
  /** `resid_in_post_layernorm_{i}`: the normalized attention input (the same value as attn_in). */
  extractResidInPostLayernorm: boolean;
  /** `pattern_L{l}H{h}`: attention patterns at the target positions (or their block reductions). */
  extractAttnPattern: boolean;
  /** `avg_pattern_L{l}H{h}`: the running mean of the patterns over batches (extraction over a dataset). */
  extractAvgAttnPattern: boolean;
  /** `projected_value_L{l}H{h}`: each head's values projected by its W_O block, `[B, n, d_model]`. */
  extractHeadValuesProjected: boolean;
  /** `projected_key_L{l}H{h}`: each head's keys projected to the residual (easyroutine crashed here). */
  extractHeadKeysProjected: boolean;
  /** `projected_query_L{l}H{h}`: each head's queries projected to the residual (easyroutine crashed here). */
  extractHeadQueriesProjected: boolean;
  /** `head_keys_L{l}H{h}`: per-head keys (kv head h // (H / Hkv) under GQA; easyroutine returned head 0). */
  extractHeadKeys: boolean;
  /** `head_values_L{l}H{h}`: per-head values (as for keys). */
  extractHeadValues: boolean;
  /** `head_queries_L{l}H{h}`: per-head queries. */
  extractHeadQueries: boolean;
  /** `values_L{i}`: all values, `[B, n, Hkv * d_head]`. */
  extractValues: boolean;
  /** `keys_L{i}`: all keys, `[B, n, Hkv * d_head]`. */
  extractKeys: boolean;
  /** `queries_L{i}`: all queries, `[B, n, H * d_head]`. */
  extractQueries: boolean;
  /** `head_out_L{l}H{h}`: each head's contribution to the residual, `[B, n, d_model]`. */
  extractHeadOut: boolean;
  /** `attn_out_{i}`: the attention output before the residual add. */
  extractAttnOut: boolean;
  /** `attn_in_{i}`: the attention module's input. */
  extractAttnIn: boolean;
  /** `mlp_out_{i}`: the MLP output before the residual add. */
  extractMlpOut: boolean;
  /** `last_layernorm`: mean, variance and second moment of the final norm's input, `[B, n]` each. */
  extractLastLayernorm: boolean;
  /** `input_ids`: the token ids at the target positions (easyroutine stored embedding slices). */
  saveInputIds: boolean;
  /** Average the positions of each spec: n becomes the number of specs. */
  avg: boolean;
  /** Average over the examples of the batch. (easyroutine's `avg_over_example` is {@link ResolvedExtractionConfig.extractAvgAttnPattern}.) */
  avgOverExample: boolean;
  /** The heads whose per-head values are saved (default `'all'`). */
  attnHeads: 'all' | LayerHead[];
  /** Block reduction of patterns (default `'none'`: the pattern at the target positions). */
  attnPatternAvg: PatternReduction;
  /** Row groups of the pattern blocks (default null: the target positions). */
  attnPatternRowPositions: TokenPosition[] | null;
  /** `logits` at the target positions (default true). */
  saveLogits: boolean;
  /** Keep gradients: `input_embeddings` plus `input_embeddings_gradients` of the chosen logit, at the target positions. */
  keepGradient: boolean;
}

/**
 * A config as you write it: any of {@link ResolvedExtractionConfig}'s fields, camelCase. A field that
 * does not exist (`extractResidOutt`) does not compile.
 * ```ts
 * const config: ExtractionConfig = { extractResidOut: true, extractAttnPattern: true };
 * ```
 */
export type ExtractionConfig = Partial<ResolvedExtractionConfig>;

/** `extractResidOut` -> `extract_resid_out`: the Python name of a field. */
type SnakeCase<S extends string> = S extends `${infer Head}${infer Tail}` ? `${Head extends Lowercase<Head> ? Head : `_${Lowercase<Head>}`}${SnakeCase<Tail>}` : S;

/**
 * A config under easyroutine's Python names (`extract_resid_out`, `attn_heads`, ...), as copied
 * from Python code: the same fields and values as {@link ExtractionConfig}, each meaning what it
 * means in easyroutine (`avg_over_example` is `extractAvgAttnPattern`, the running mean of patterns
 * over batches).
 */
export type PythonExtractionConfig = { [Field in keyof ResolvedExtractionConfig as SnakeCase<Field>]?: ResolvedExtractionConfig[Field] };

/** What {@link extractionConfig} and the `extractionConfig` options take. */
export type ExtractionConfigInput = ExtractionConfig | PythonExtractionConfig;

const FLAGS = [
  'extractEmbed', 'extractResidIn', 'extractResidMid', 'extractResidOut', 'extractResidInPostLayernorm', 'extractAttnPattern',
  'extractAvgAttnPattern', 'extractHeadValuesProjected', 'extractHeadKeysProjected', 'extractHeadQueriesProjected', 'extractHeadKeys',
  'extractHeadValues', 'extractHeadQueries', 'extractValues', 'extractKeys', 'extractQueries', 'extractHeadOut', 'extractAttnOut',
  'extractAttnIn', 'extractMlpOut', 'extractLastLayernorm', 'saveInputIds', 'avg', 'avgOverExample', 'saveLogits', 'keepGradient',
] as const satisfies readonly (keyof ResolvedExtractionConfig)[];

/** Every field name, camelCase. */
export const EXTRACTION_CONFIG_FIELDS: readonly (keyof ResolvedExtractionConfig)[] = [...FLAGS, 'attnHeads', 'attnPatternAvg', 'attnPatternRowPositions'];

const REDUCTIONS: readonly PatternReduction[] = ['none', 'mean', 'sum', 'baseline_ratio'];

/**
 * Python names whose meaning in easyroutine is another field here: its `avg_over_example` turns on
 * the running mean of patterns over batches (`avg_pattern_L{l}H{h}`), which is `extractAvgAttnPattern`;
 * `avgOverExample` here averages over the examples of one batch.
 */
const PYTHON_ALIASES: Readonly<Record<string, keyof ResolvedExtractionConfig>> = { avg_over_example: 'extractAvgAttnPattern' };

function camel(name: string): string {
  return PYTHON_ALIASES[name] ?? name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function closest(name: string): string {
  const distance = (a: string, b: string) => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let diagonal = row[0]!;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const above = row[j]!;
        row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
        diagonal = above;
      }
    }
    return row[b.length]!;
  };
  return [...EXTRACTION_CONFIG_FIELDS].sort((a, b) => distance(name, a) - distance(name, b))[0]!;
}

/**
 * A complete, validated config from a partial one (camelCase or Python snake_case names). Throws an
 * {@link InvalidArgumentError} for unknown fields (suggesting the closest) and bad values. The result
 * is frozen; passing it (or any frozen object) again costs nothing, which matters in tight loops.
 */
export function extractionConfig(fields: ExtractionConfigInput = {}): Readonly<ResolvedExtractionConfig> {
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) throw new InvalidArgumentError('ExtractionConfig: expected an object of fields');
  // An extraction loop passes the same object every time: validate it once (a frozen result is final;
  // an unfrozen input may change, so it is validated again).
  const known = validated.get(fields);
  if (known && Object.isFrozen(fields)) return known;
  const config: ResolvedExtractionConfig = {
    ...(Object.fromEntries(FLAGS.map((f) => [f, false])) as Record<(typeof FLAGS)[number], boolean>),
    saveLogits: true,
    attnHeads: 'all',
    attnPatternAvg: 'none',
    attnPatternRowPositions: null,
  };
  for (const [rawName, value] of Object.entries(fields as Record<string, unknown>)) {
    if (value === undefined) continue;
    const name = camel(rawName) as keyof ResolvedExtractionConfig;
    if (!EXTRACTION_CONFIG_FIELDS.includes(name)) {
      throw new InvalidArgumentError(`ExtractionConfig: unknown field '${rawName}'; did you mean '${closest(name)}'?`);
    }
    if ((FLAGS as readonly string[]).includes(name)) {
      if (typeof value !== 'boolean') throw new InvalidArgumentError(`ExtractionConfig.${name} must be a boolean, got ${JSON.stringify(value)}`);
      (config as unknown as Record<string, boolean>)[name] = value;
    } else if (name === 'attnPatternAvg') {
      if (!REDUCTIONS.includes(value as PatternReduction)) {
        throw new InvalidArgumentError(`ExtractionConfig.attnPatternAvg must be one of ${REDUCTIONS.map((r) => `'${r}'`).join(', ')}, got ${JSON.stringify(value)}`);
      }
      config.attnPatternAvg = value as PatternReduction;
    } else if (name === 'attnHeads') {
      if (value !== 'all') {
        const valid = Array.isArray(value) && value.every((h) => h !== null && typeof h === 'object' && Number.isInteger(h.layer) && Number.isInteger(h.head) && h.layer >= 0 && h.head >= 0);
        if (!valid) throw new InvalidArgumentError("ExtractionConfig.attnHeads must be 'all' or an array of {layer, head} with non-negative integers");
      }
      config.attnHeads = value === 'all' ? 'all' : Object.freeze((value as LayerHead[]).map(({ layer, head }) => Object.freeze({ layer, head }))) as LayerHead[];
    } else {
      if (value !== null && !Array.isArray(value)) throw new InvalidArgumentError('ExtractionConfig.attnPatternRowPositions must be null or an array of token positions');
      if (Array.isArray(value)) for (const spec of value) validateTokenPosition(spec as TokenPosition);
      // copies: the caller's ranges may change later, a resolved config does not
      config.attnPatternRowPositions = Array.isArray(value) ? (Object.freeze(value.map((spec) => (Array.isArray(spec) ? Object.freeze([...spec]) : spec))) as TokenPosition[]) : null;
    }
  }
  const result = Object.freeze(config);
  validated.set(fields, result);
  validated.set(result, result);
  return result;
}

const validated = new WeakMap<object, Readonly<ResolvedExtractionConfig>>();

/**
 * Whether `value` is a config {@link extractionConfig} made: frozen plain data all the way down, so
 * that a walk looking for tensors (a cache's dispose, whose metadata holds its config) skips it.
 */
export function isResolvedExtractionConfig(value: object): boolean {
  return validated.get(value) === value;
}

/** Whether `attnHeads` selects head `head` of layer `layer`. */
export function headSelected(config: Readonly<ResolvedExtractionConfig>, layer: number, head: number): boolean {
  return config.attnHeads === 'all' || config.attnHeads.some((h) => h.layer === layer && h.head === head);
}

/** The heads of `layer` that `attnHeads` selects, in order. */
export function selectedHeads(config: Readonly<ResolvedExtractionConfig>, layer: number, nHeads: number): number[] {
  return Array.from({ length: nHeads }, (_, h) => h).filter((h) => headSelected(config, layer, h));
}
