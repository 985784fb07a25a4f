/**
 * What every page of `lib/plots/` is drawn with: a self-contained HTML shell (inline CSS and SVG, no
 * script, nothing fetched, so it opens offline and in a sandboxed viewer), escaping, colour scales
 * and their legend, and a heatmap with axis titles, position indices and labels.
 *
 * Written here rather than with a plotting library: the ones that render without a browser (vega's
 * server side, plotly's) pull in canvas or a headless browser, and a heatmap is a grid of rects.
 * @module
 */

/** Text for HTML and SVG (element content and attribute values). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The fill of masked cells (hatched grey), defined once per page by {@link htmlPage}. */
const MASKED_PATTERN = '<defs><pattern id="masked" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="4" height="4" fill="#e6e6e6"/><line x1="0" y1="0" x2="0" y2="4" stroke="#9a9a9a" stroke-width="1.5"/></pattern></defs>';

/** A page with a title, an optional note, and the given body (SVG and HTML). */
export function htmlPage(title: string, body: string, note?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 0 0 4px; }
p.note { color: #555; max-width: 70em; margin: 4px 0 16px; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 2px; } figure svg { display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #222; }
svg text.axis-title { font-size: 12px; font-weight: 600; }
table.lens { border-collapse: collapse; } table.lens th, table.lens td { border: 1px solid #ccc; padding: 3px 6px; font: 12px ui-monospace, monospace; text-align: left; }
table.lens th { background: #f3f3f3; }
</style></head>
<body>
<svg width="0" height="0" style="position:absolute" aria-hidden="true">${MASKED_PATTERN}</svg>
<h1>${escapeHtml(title)}</h1>
${note ? `<p class="note">${escapeHtml(note)}</p>` : ''}
${body}
</body></html>
`;
}

/** A colour scale: value to CSS colour, over [min, max]. */
export interface ColourScale {
  min: number;
  max: number;
  colour(value: number): string;
  /** The scale's name in the legend (e.g. "attention weight"). */
  label: string;
}

function mix(from: [number, number, number], to: [number, number, number], t: number): string {
  const c = from.map((f, i) => Math.round(f + (to[i]! - f) * Math.min(1, Math.max(0, t))));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

const WHITE: [number, number, number] = [255, 255, 255];
const BLUE: [number, number, number] = [8, 48, 107];
const RED: [number, number, number] = [165, 15, 21];

/** White (min) to dark blue (max): attention weights, probabilities. */
export function sequentialScale(min: number, max: number, label: string): ColourScale {
  const span = max - min || 1;
  return { min, max, label, colour: (v) => mix(WHITE, BLUE, (v - min) / span) };
}

/** Blue (negative) through white (0) to red (positive), symmetric: patching effects. */
export function divergingScale(limit: number, label: string): ColourScale {
  const bound = limit || 1;
  return { min: -bound, max: bound, label, colour: (v) => (v < 0 ? mix(WHITE, BLUE, -v / bound) : mix(WHITE, RED, v / bound)) };
}

/** A number short enough for a tick or a tooltip. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  return magnitude >= 1000 || magnitude < 0.01 ? value.toExponential(1) : Number(value.toPrecision(3)).toString();
}

/** One heatmap: the values, what its axes are, and which cells are masked. */
export interface Heatmap {
  /** `rows × columns` values (NaN: no value). */
  values: ArrayLike<number>;
  rows: number;
  columns: number;
  /** A label per row and per column (the position index and its token, a layer, a head). */
  rowLabels: string[];
  columnLabels: string[];
  rowTitle: string;
  columnTitle: string;
  scale: ColourScale;
  /** Cells that have no value by construction (a causal mask, padding): drawn hatched, not as a colour. */
  masked?: (row: number, column: number) => boolean;
  /** Side of a cell in pixels (default: from the grid's size). */
  cell?: number;
}

/** The width in pixels that a label of `text` needs at 11px (an estimate; the page does not measure). */
function labelWidth(labels: string[]): number {
  return Math.max(0, ...labels.map((l) => l.length)) * 6.5 + 6;
}

/**
 * An SVG heatmap with row labels on the left, column labels below (rotated), both axis titles, and
 * a `<title>` per cell (hovering shows row, column and value). Cells carry `class="cell"` or
 * `class="cell masked"` and `data-row`, `data-column`, `data-value`.
 */
export function heatmapSvg(map: Heatmap): string {
  const cell = map.cell ?? Math.max(8, Math.min(20, Math.floor(300 / Math.max(map.rows, map.columns))));
  const left = labelWidth(map.rowLabels) + 22;
  const top = 8;
  const gridWidth = cell * map.columns;
  const gridHeight = cell * map.rows;
  const bottom = labelWidth(map.columnLabels) + 26;
  const width = left + gridWidth + 12;
  const height = top + gridHeight + bottom;
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`];
  for (let r = 0; r < map.rows; r++) {
    for (let c = 0; c < map.columns; c++) {
      const value = map.values[r * map.columns + c]!;
      const masked = map.masked?.(r, c) ?? false;
      const fill = masked ? 'url(#masked)' : Number.isNaN(value) ? '#fff' : map.scale.colour(value);
      const tip = `${map.rowTitle} ${map.rowLabels[r]}, ${map.columnTitle} ${map.columnLabels[c]}: ${masked ? 'masked' : formatNumber(value)}`;
      parts.push(
        `<rect class="cell${masked ? ' masked' : ''}" data-row="${r}" data-column="${c}" data-value="${masked ? '' : value}" x="${left + c * cell}" y="${top + r * cell}" width="${cell}" height="${cell}" fill="${fill}"><title>${escapeHtml(tip)}</title></rect>`,
      );
    }
  }
  parts.push(`<rect x="${left}" y="${top}" width="${gridWidth}" height="${gridHeight}" fill="none" stroke="#888" stroke-width="0.5"/>`);
  // labels are drawn only when they fit: every k-th one on a dense axis
  const stride = Math.max(1, Math.ceil(12 / cell));
  map.rowLabels.forEach((label, r) => {
    if (r % stride === 0) parts.push(`<text class="row-label" x="${left - 4}" y="${top + r * cell + cell / 2 + 4}" text-anchor="end">${escapeHtml(label)}</text>`);
  });
  map.columnLabels.forEach((label, c) => {
    if (c % stride !== 0) return;
    const x = left + c * cell + cell / 2 + 4;
    const y = top + gridHeight + 4;
    parts.push(`<text class="column-label" x="${x}" y="${y}" text-anchor="end" transform="rotate(-90 ${x} ${y})">${escapeHtml(label)}</text>`);
  });
  parts.push(`<text class="axis-title column-title" x="${left + gridWidth / 2}" y="${height - 6}" text-anchor="middle">${escapeHtml(map.columnTitle)}</text>`);
  const ry = top + gridHeight / 2;
  parts.push(`<text class="axis-title row-title" x="12" y="${ry}" text-anchor="middle" transform="rotate(-90 12 ${ry})">${escapeHtml(map.rowTitle)}</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

/** Room left of the colour bar, for half of its first tick's label ("-0.95"). */
const LEGEND_LEFT = 24;

/** A horizontal colour bar with five ticks and the scale's label, and a swatch for masked cells when `withMasked`. */
export function legendSvg(scale: ColourScale, withMasked: boolean, id = 'scale'): string {
  const width = 260;
  const stops = Array.from({ length: 11 }, (_, i) => {
    const v = scale.min + ((scale.max - scale.min) * i) / 10;
    return `<stop offset="${i * 10}%" stop-color="${scale.colour(v)}"/>`;
  }).join('');
  const ticks = Array.from({ length: 5 }, (_, i) => {
    const v = scale.min + ((scale.max - scale.min) * i) / 4;
    const x = LEGEND_LEFT + (width * i) / 4;
    return `<line x1="${x}" y1="30" x2="${x}" y2="35" stroke="#444"/><text class="tick" x="${x}" y="47" text-anchor="middle">${escapeHtml(formatNumber(v))}</text>`;
  }).join('');
  const masked = withMasked ? `<rect class="legend-masked" x="${width + 54}" y="14" width="16" height="16" fill="url(#masked)" stroke="#888" stroke-width="0.5"/><text x="${width + 76}" y="26">masked (no attention allowed)</text>` : '';
  const total = width + 2 * LEGEND_LEFT + (withMasked ? 250 : 0);
  return `<svg xmlns="http://www.w3.org/2000/svg" class="legend" width="${total}" height="56" viewBox="0 0 ${total} 56"><defs><linearGradient id="${id}">${stops}</linearGradient></defs>
<text class="legend-label" x="${LEGEND_LEFT}" y="10">${escapeHtml(scale.label)}</text>
<rect class="colour-bar" x="${LEGEND_LEFT}" y="14" width="${width}" height="16" fill="url(#${id})" stroke="#888" stroke-width="0.5"/>${ticks}${masked}</svg>`;
}
