/**
 * Attention patterns as a page: every `pattern_L{l}H{h}` of a cache, one heatmap per head in a grid
 * (a row per layer), query positions down and key positions across, each labelled with its index
 * and token, a colour scale from 0 to 1, and masked cells (keys after the query, which a causal
 * model cannot attend to) hatched rather than white, so they do not read as zero attention.
 * @module
 */
import { InvalidArgumentError } from '../core/errors';
import type { ActivationCache } from '../easyroutine/activation-cache';
import { heatmapSvg, htmlPage, legendSvg, sequentialScale } from './svg';

/** Options of {@link attentionPatternsPage}. */
export interface AttentionPageOptions {
  /** The page's title (default "Attention patterns"). */
  title?: string;
  /** A sentence under the title. */
  note?: string;
  /** The batch row shown (default 0). */
  batchIndex?: number;
  /** A label per position of the pattern's axes (default: the cache's `target_tokens`, for row 0). */
  tokens?: string[];
  /**
   * The sequence position of each index of the pattern's axes, for the causal mask (default: row
   * 0's, from `token_dict`). Where they are unknown (another row, a merged cache), cells that are
   * exactly 0 (what softmax gives a masked score) are drawn as masked.
   */
  positions?: number[];
  /** Only these heads, as `[layer, head]` (default: every pattern in the cache). */
  heads?: [number, number][];
}

interface Axis {
  labels: string[];
  positions: (number | undefined)[];
}

/** The pattern axis' positions and labels from mapping_index, token_dict and target_tokens, where they say them. */
function axisOf(cache: ActivationCache, size: number, options: AttentionPageOptions): Axis {
  const positions: (number | undefined)[] = new Array(size).fill(undefined);
  const tokens: (string | undefined)[] = new Array(size).fill(undefined);
  const mapping = cache.get('mapping_index') as Record<string, unknown> | undefined;
  // row 0's positions and tokens per spec (a cache merged over batches holds a list of these: none apply)
  const tokenDict = cache.get('token_dict') as Record<string, unknown> | undefined;
  const targetTokens = cache.get('target_tokens') as Record<string, unknown> | undefined;
  const rowZero = (options.batchIndex ?? 0) === 0;
  for (const [spec, indices] of Object.entries(mapping ?? {})) {
    if (!Array.isArray(indices)) continue;
    const specPositions = Array.isArray(tokenDict) ? undefined : tokenDict?.[spec];
    const specTokens = Array.isArray(targetTokens) ? undefined : targetTokens?.[spec];
    indices.forEach((index: unknown, j) => {
      if (typeof index !== 'number' || index < 0 || index >= size) return;
      // positions resolve per row (padding): row 0's are the others' only without a mask
      if (Array.isArray(specPositions) && typeof specPositions[j] === 'number' && rowZero) positions[index] = specPositions[j];
      if (Array.isArray(specTokens) && rowZero) tokens[index] = String(specTokens[j]);
    });
  }
  if (options.positions) {
    if (options.positions.length !== size) throw new InvalidArgumentError(`attentionPatternsPage: positions has ${options.positions.length} entries; the patterns have ${size} positions`);
    options.positions.forEach((p, i) => (positions[i] = p));
  }
  if (options.tokens && options.tokens.length !== size) throw new InvalidArgumentError(`attentionPatternsPage: tokens has ${options.tokens.length} labels; the patterns have ${size} positions`);
  const labels = Array.from({ length: size }, (_, i) => {
    const token = options.tokens?.[i] ?? tokens[i];
    const where = positions[i] ?? i;
    return token === undefined ? String(where) : `${where} ${token}`;
  });
  return { labels, positions };
}

/**
 * A self-contained HTML page of the attention patterns in `cache` (the `pattern_L{l}H{h}` keys that
 * `extractAttnPattern` gives, `[batch, query, key]`).
 * @example
 * ```ts
 * const cache = model.forward('The cat sat on the mat', { extractionConfig: { extractAttnPattern: true } });
 * fs.writeFileSync('patterns.html', attentionPatternsPage(cache, { title: 'The cat sat' }));
 * ```
 */
export function attentionPatternsPage(cache: ActivationCache, options: AttentionPageOptions = {}): string {
  const { body, note } = attentionPatternsSection(cache, options);
  return htmlPage(options.title ?? 'Attention patterns', body, [options.note, note].filter(Boolean).join(' '));
}

/** @internal The page's body (legend and grid) and what it says of itself, for pages that include it. */
export function attentionPatternsSection(cache: ActivationCache, options: AttentionPageOptions = {}): { body: string; note: string } {
  const wanted = options.heads && new Set(options.heads.map(([l, h]) => `${l},${h}`));
  const heads = cache
    .keys()
    .map((key) => /^pattern_L(\d+)H(\d+)$/.exec(key))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ key: m[0], layer: Number(m[1]), head: Number(m[2]) }))
    .filter((h) => !wanted || wanted.has(`${h.layer},${h.head}`))
    .sort((a, b) => a.layer - b.layer || a.head - b.head);
  if (heads.length === 0) throw new InvalidArgumentError(`attentionPatternsPage: the cache has no pattern_L{l}H{h} keys${wanted ? ' for the heads asked' : ''}; extract them with extractionConfig: { extractAttnPattern: true }`);
  const batchIndex = options.batchIndex ?? 0;
  const first = cache.tensor(heads[0]!.key);
  if (first.rank !== 3) throw new InvalidArgumentError(`attentionPatternsPage: ${heads[0]!.key} is [${first.shape.join(', ')}]; expected [batch, query, key]`);
  const [batch, queries, keys] = first.shape as [number, number, number];
  if (!Number.isInteger(batchIndex) || batchIndex < 0 || batchIndex >= batch) throw new InvalidArgumentError(`attentionPatternsPage: batchIndex must be an integer in [0, ${batch}), got ${batchIndex}`);
  if (queries !== keys) throw new InvalidArgumentError(`attentionPatternsPage: the patterns are ${queries} x ${keys}; this page draws square ones (the same positions as queries and keys)`);
  const axis = axisOf(cache, keys, options);
  const causal = axis.positions.every((p) => p !== undefined);
  const scale = sequentialScale(0, 1, 'attention weight (softmax over keys; each row sums to 1)');

  const layers = [...new Set(heads.map((h) => h.layer))];
  const sections = layers.map((layer) => {
    const figures = heads
      .filter((h) => h.layer === layer)
      .map(({ key, layer: l, head }) => {
        const values = cache.tensor(key).index(batchIndex).toFloat32Array();
        const masked = (q: number, k: number) => (causal ? axis.positions[k]! > axis.positions[q]! : values[q * keys + k] === 0);
        const svg = heatmapSvg({ values, rows: queries, columns: keys, rowLabels: axis.labels, columnLabels: axis.labels, rowTitle: 'query position', columnTitle: 'key position', scale, masked });
        return `<figure class="head" data-layer="${l}" data-head="${head}"><figcaption>L${l}H${head}</figcaption>${svg}</figure>`;
      });
    return `<section class="layer"><h2>Layer ${layer}</h2><div class="grid">${figures.join('\n')}</div></section>`;
  });
  const how = causal ? 'Hatched cells are keys after the query, masked by causal attention.' : 'Hatched cells are exactly 0, as masked scores give.';
  const note = `Batch row ${batchIndex}; ${heads.length} heads. Rows are query positions, columns key positions, each labelled with its position and token. ${how}`;
  return { body: `${legendSvg(scale, true)}\n${sections.join('\n')}`, note };
}
