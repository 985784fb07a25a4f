/**
 * Heatmaps of sweeps and tables of tokens as pages: a patching sweep (layer × position, layer ×
 * head) on a diverging scale centred on 0, and a logit-lens table (a row per layer, a column per
 * position, each cell the top token and its probability, shaded by it).
 * @module
 */
import { InvalidArgumentError } from '../core/errors';
import { Tensor } from '../core/tensor';
import type { LensTable } from '../easyroutine/logit-lens';
import type { LabelledGrid } from '../easyroutine/patching';
import { divergingScale, escapeHtml, formatNumber, heatmapSvg, htmlPage, legendSvg, sequentialScale } from './svg';

function gridValues(grid: LabelledGrid, caller: string): { values: Float64Array; rows: number; columns: number } {
  const rows = grid.rowLabels.length;
  const columns = grid.columnLabels.length;
  let values: Float64Array;
  if (grid.values instanceof Tensor) {
    if (grid.values.rank !== 2 || grid.values.shape[0] !== rows || grid.values.shape[1] !== columns) {
      throw new InvalidArgumentError(`${caller}: values is [${grid.values.shape.join(', ')}]; the labels say [${rows}, ${columns}]`);
    }
    values = Float64Array.from(grid.values.toFloat32Array());
  } else {
    if (!Array.isArray(grid.values) || grid.values.length !== rows || grid.values.some((r) => !Array.isArray(r) || r.length !== columns)) {
      throw new InvalidArgumentError(`${caller}: values must be ${rows} rows of ${columns} numbers, as the labels say`);
    }
    values = Float64Array.from(grid.values.flat());
  }
  return { values, rows, columns };
}

/**
 * A self-contained HTML page with one heatmap per grid (e.g. a residual sweep and a head sweep),
 * each on a blue–white–red scale symmetric about 0.
 * @example
 * ```ts
 * const sweep = await patchResidualSweep(model, { clean, corrupted, metric: logitDifference(correct, wrong) });
 * fs.writeFileSync('patching.html', patchingPage([sweep], { title: 'Residual patching' }));
 * ```
 */
export function patchingPage(grids: LabelledGrid[], options: { title?: string; note?: string } = {}): string {
  if (!Array.isArray(grids) || grids.length === 0) throw new InvalidArgumentError('patchingPage: expected an array of one or more sweeps');
  const figures = grids.map((grid, i) => {
    const { values, rows, columns } = gridValues(grid, 'patchingPage');
    let limit = 0;
    for (const v of values) if (Number.isFinite(v)) limit = Math.max(limit, Math.abs(v));
    const scale = divergingScale(limit, grid.metric);
    const svg = heatmapSvg({ values, rows, columns, rowLabels: grid.rowLabels, columnLabels: grid.columnLabels, rowTitle: grid.rowTitle, columnTitle: grid.columnTitle, scale });
    return `<figure class="sweep"><figcaption>${escapeHtml(`${grid.metric}: ${grid.rowTitle} × ${grid.columnTitle}`)}</figcaption>${legendSvg(scale, false, `scale-${i}`)}${svg}</figure>`;
  });
  return htmlPage(options.title ?? 'Activation patching', `<div class="grid">${figures.join('\n')}</div>`, options.note);
}

/** A self-contained HTML page with the logit lens as a table ({@link logitLens}'s, or your own), each cell shaded by its probability. */
export function logitLensPage(table: LensTable, options: { title?: string; note?: string } = {}): string {
  const rows = table.rowLabels.length;
  const columns = table.columnLabels.length;
  if (!Array.isArray(table.cells) || table.cells.length !== rows || table.cells.some((r) => !Array.isArray(r) || r.length !== columns)) {
    throw new InvalidArgumentError(`logitLensPage: cells must be ${rows} rows of ${columns} cells, as the labels say`);
  }
  const scale = sequentialScale(0, 1, 'probability of the top token');
  const head = `<tr><th>layer \\ position</th>${table.columnLabels.map((l) => `<th>${escapeHtml(l)}</th>`).join('')}</tr>`;
  const body = table.cells
    .map((row, r) => {
      const cells = row.map((cell) => {
        // dark cells take white text
        const ink = cell.probability > 0.55 ? '#fff' : '#222';
        return `<td style="background:${scale.colour(cell.probability)};color:${ink}" data-probability="${cell.probability}" title="${escapeHtml(`p = ${formatNumber(cell.probability)}`)}">${escapeHtml(cell.token)}<br><small>${formatNumber(cell.probability)}</small></td>`;
      });
      return `<tr><th>${escapeHtml(table.rowLabels[r]!)}</th>${cells.join('')}</tr>`;
    })
    .join('\n');
  return htmlPage(options.title ?? 'Logit lens', `${legendSvg(scale, false)}\n<table class="lens">${head}\n${body}</table>`, options.note);
}
