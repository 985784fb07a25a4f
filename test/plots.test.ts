// The plot pages rendered in headless Chromium (Debian's `chromium`): a probe script appended to a
// copy of each page reports what was drawn (each cell's fill and box, the labels, the axis titles,
// the legend, any resource fetched), and the tests check it against the data. Without Chromium
// these skip, except where EASYROUTINE_EXPECT_CHROMIUM=1 (CI's host leg installs it).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HookedModel, InvalidArgumentError, attentionPatternsPage, headPatchingSweep, logitDifference, logitLensPage, patchingPage, residualPatchingSweep } from '../lib/index';
import { expectThrows, fixture, root } from './helpers';

function findChromium(): string | null {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  }
  return null;
}
const chromium = findChromium();
if (!chromium && process.env.EASYROUTINE_EXPECT_CHROMIUM === '1') throw new Error('EASYROUTINE_EXPECT_CHROMIUM=1 but no chromium on PATH');

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}
interface Drawn {
  cells: { row: number; column: number; value: string; masked: boolean; fill: string; box: Box; figure: string | null }[];
  texts: { cls: string; text: string; box: Box; svg: Box }[];
  lens: { text: string; background: string; probability: number }[];
  resources: number;
  legendBars: Box[];
}

// what the page draws, as the browser laid it out
const PROBE = `<script>
(() => {
  const box = (e) => { const r = e.getBoundingClientRect(); return { x: r.x, y: r.y, width: r.width, height: r.height }; };
  const report = {
    cells: [...document.querySelectorAll('rect.cell')].map((e) => ({ row: +e.dataset.row, column: +e.dataset.column, value: e.dataset.value, masked: e.classList.contains('masked'), fill: getComputedStyle(e).fill, box: box(e), figure: e.closest('figure') && e.closest('figure').querySelector('figcaption').textContent })),
    texts: [...document.querySelectorAll('svg text')].map((e) => ({ cls: e.getAttribute('class') || '', text: e.textContent, box: box(e), svg: box(e.ownerSVGElement) })),
    lens: [...document.querySelectorAll('table.lens td')].map((e) => ({ text: e.textContent, background: getComputedStyle(e).backgroundColor, probability: +e.dataset.probability })),
    resources: performance.getEntriesByType('resource').length,
    legendBars: [...document.querySelectorAll('rect.colour-bar')].map(box),
  };
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(report); document.body.append(pre);
})();
</script>`;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-plots-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function render(html: string, name: string): Drawn {
  const file = path.join(work, `${name}.html`);
  fs.writeFileSync(file, html.replace('</body>', `${PROBE}</body>`));
  const profile = fs.mkdtempSync(path.join(work, 'profile-'));
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--window-size=1600,1200', '--dump-dom', `file://${file}`];
  const result = spawnSync(chromium!, flags, { encoding: 'utf8', timeout: 60_000 });
  const match = /<pre id="probe">(.*?)<\/pre>/s.exec(result.stdout);
  if (!match) throw new Error(`chromium drew nothing for ${name} (status ${result.status}): ${result.stderr.slice(-500)}`);
  return JSON.parse(match[1]!.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')) as Drawn;
}

const overlaps = (a: Box, b: Box) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
const inside = (a: Box, outer: Box) => a.x >= outer.x - 0.5 && a.y >= outer.y - 0.5 && a.x + a.width <= outer.x + outer.width + 0.5 && a.y + a.height <= outer.y + outer.height + 0.5;
/** Relative luminance of "rgb(r, g, b)": darker is more. */
const darkness = (css: string) => {
  const [r, g, b] = (css.match(/\d+/g) ?? []).map(Number) as [number, number, number];
  return 255 * 3 - (r + g + b);
};

describe.skipIf(!chromium)('plot pages, drawn by headless Chromium', () => {
  const model = HookedModel.load(path.join(root, 'models', 'induction-2l.pt'));
  afterAll(() => model.dispose());

  it('attention patterns: every head, values as colours, masked cells hatched, labelled axes, a colour scale', () => {
    const cache = model.forward('w7 w9 w4 w7 w9 w4', { extractionConfig: { extractAttnPattern: true } });
    const html = attentionPatternsPage(cache, { title: 'Patterns' });
    const drawn = render(html, 'attention');
    const n = 7;
    expect(drawn.resources).toBe(0);
    expect(html).not.toMatch(/(src|href)="?https?:/);
    // 2 layers x 4 heads, n x n cells each, all with a size on the page
    expect(drawn.cells).toHaveLength(8 * n * n);
    expect(drawn.cells.every((c) => c.box.width > 4 && c.box.height > 4)).toBe(true);
    expect(new Set(drawn.cells.map((c) => c.figure))).toEqual(new Set(['L0H0', 'L0H1', 'L0H2', 'L0H3', 'L1H0', 'L1H1', 'L1H2', 'L1H3']));
    // masked exactly where the key comes after the query, and drawn unlike any value (zero is white)
    for (const c of drawn.cells) expect(c.masked).toBe(c.column > c.row);
    expect(new Set(drawn.cells.filter((c) => c.masked).map((c) => c.fill))).toEqual(new Set(['url("#masked")']));
    // each unmasked cell's colour is its value's: the value the cache holds, darker for more attention
    const pattern = cache.tensor('pattern_L1H1').index(0).toArray() as number[][];
    const head = drawn.cells.filter((c) => c.figure === 'L1H1' && !c.masked);
    for (const c of head) expect(Number(c.value)).toBeCloseTo(pattern[c.row]![c.column]!, 6);
    const sorted = [...head].sort((a, b) => Number(a.value) - Number(b.value));
    for (let i = 1; i < sorted.length; i++) expect(darkness(sorted[i]!.fill)).toBeGreaterThanOrEqual(darkness(sorted[i - 1]!.fill));
    expect(darkness(sorted.at(-1)!.fill)).toBeGreaterThan(darkness(sorted[0]!.fill));
    // axes: titles and position + token labels, inside their SVG, labels apart from each other
    const texts = drawn.texts.filter((t) => t.svg.width > 0);
    expect(texts.filter((t) => t.text === 'query position' && t.cls.includes('axis-title'))).toHaveLength(8);
    expect(texts.filter((t) => t.text === 'key position' && t.cls.includes('axis-title'))).toHaveLength(8);
    const rowLabels = texts.filter((t) => t.cls === 'row-label').slice(0, n);
    expect(rowLabels.map((t) => t.text)).toEqual(['0 <bos>', '1 w7', '2 w9', '3 w4', '4 w7', '5 w9', '6 w4']);
    for (const t of texts) expect(inside(t.box, t.svg), `${t.text} is outside its svg`).toBe(true);
    for (let i = 1; i < rowLabels.length; i++) expect(overlaps(rowLabels[i]!.box, rowLabels[i - 1]!.box)).toBe(false);
    const columnLabels = texts.filter((t) => t.cls === 'column-label').slice(0, n);
    for (let i = 1; i < columnLabels.length; i++) expect(overlaps(columnLabels[i]!.box, columnLabels[i - 1]!.box)).toBe(false);
    // the colour scale: a bar with ticks from 0 to 1, and the masked swatch explained
    expect(drawn.legendBars).toHaveLength(1);
    expect(drawn.legendBars[0]!.width).toBeGreaterThan(100);
    expect(texts.filter((t) => t.cls === 'tick').map((t) => t.text)).toEqual(['0', '0.25', '0.5', '0.75', '1']);
    expect(texts.some((t) => /masked/.test(t.text))).toBe(true);
    cache.dispose();
  });

  it('patching sweeps: a diverging scale centred on 0, a heatmap per sweep with its axes', async () => {
    using llama = HookedModel.load(fixture('llama_traced.pt'));
    const clean = [[3, 17, 40, 9, 22, 51, 8, 30]];
    const corrupted = [[3, 17, 11, 9, 22, 7, 8, 30]];
    const metric = logitDifference(40, 11);
    const resid = await residualPatchingSweep(llama, { clean, corrupted, metric });
    const heads = await headPatchingSweep(llama, { clean, corrupted, metric });
    const drawn = render(patchingPage([resid, heads], { title: 'Patching' }), 'patching');
    expect(drawn.resources).toBe(0);
    expect(drawn.cells.filter((c) => c.figure?.includes('position'))).toHaveLength(2 * 8);
    expect(drawn.cells.filter((c) => c.figure?.includes('head'))).toHaveLength(2 * 4);
    expect(drawn.legendBars).toHaveLength(2);
    // the ticks of each scale are symmetric about 0
    const ticks = drawn.texts.filter((t) => t.cls === 'tick').map((t) => Number(t.text));
    expect(ticks).toHaveLength(10);
    expect(ticks[2]).toBe(0);
    expect(ticks[0]).toBeCloseTo(-ticks[4]!, 6);
    // the cell of the largest effect is the darkest; a value near 0 is near white
    const values = resid.values.toArray() as number[][];
    const cells = drawn.cells.filter((c) => c.figure?.includes('position'));
    for (const c of cells) expect(Number(c.value)).toBeCloseTo(values[c.row]![c.column]!, 6);
    const byMagnitude = [...cells].sort((a, b) => Math.abs(Number(a.value)) - Math.abs(Number(b.value)));
    expect(darkness(byMagnitude.at(-1)!.fill)).toBeGreaterThan(darkness(byMagnitude[0]!.fill));
    expect(drawn.texts.filter((t) => t.cls.includes('axis-title')).map((t) => t.text)).toEqual(['position', 'layer', 'head', 'layer']);
    // every label whole inside its SVG (a negative tick's minus sign too), each scale above its heatmap
    for (const t of drawn.texts.filter((x) => x.svg.width > 0)) expect(inside(t.box, t.svg), `${t.text} is outside its svg`).toBe(true);
    const firstCell = (kind: string) => Math.min(...drawn.cells.filter((c) => c.figure?.includes(kind)).map((c) => c.box.y));
    expect(drawn.legendBars[0]!.y + drawn.legendBars[0]!.height).toBeLessThan(firstCell('position'));
    expect(drawn.legendBars[1]!.y + drawn.legendBars[1]!.height).toBeLessThan(firstCell('head'));
  });

  it('logit lens: a table cell per layer and position, shaded by probability', () => {
    const table = { rowLabels: ['0', '1'], columnLabels: ['0 <bos>', '1 w7'], cells: [[{ token: 'w1', probability: 0.1 }, { token: 'w9', probability: 0.8 }], [{ token: '<b&>', probability: 0.4 }, { token: 'w9', probability: 0.95 }]] };
    const drawn = render(logitLensPage(table), 'lens');
    expect(drawn.lens.map((c) => c.text)).toEqual(['w10.1', 'w90.8', '<b&>0.4', 'w90.95']);
    const byProbability = [...drawn.lens].sort((a, b) => a.probability - b.probability);
    for (let i = 1; i < byProbability.length; i++) expect(darkness(byProbability[i]!.background)).toBeGreaterThan(darkness(byProbability[i - 1]!.background));
  });
});

describe('plot pages: bad input', () => {
  it('names what is wrong', () => {
    using model = HookedModel.load(path.join(root, 'models', 'induction-2l.pt'));
    const noPatterns = model.forward('w1 w2');
    expectThrows(() => attentionPatternsPage(noPatterns), InvalidArgumentError, /no pattern_L\{l\}H\{h\} keys; extract them with extractionConfig: \{ extractAttnPattern: true \}/);
    const cache = model.forward('w1 w2', { extractionConfig: { extractAttnPattern: true } });
    expectThrows(() => attentionPatternsPage(cache, { batchIndex: 1 }), InvalidArgumentError, /batchIndex must be an integer in \[0, 1\), got 1/);
    expectThrows(() => attentionPatternsPage(cache, { tokens: ['a'] }), InvalidArgumentError, /tokens has 1 labels; the patterns have 3 positions/);
    expectThrows(() => attentionPatternsPage(cache, { heads: [[5, 0]] }), InvalidArgumentError, /for the heads asked/);
    expectThrows(() => patchingPage([]), InvalidArgumentError, /one or more sweeps/);
    expectThrows(() => patchingPage([{ values: [[1, 2]], rowLabels: ['0'], columnLabels: ['a'], rowTitle: 'layer', columnTitle: 'x', metric: 'm' }]), InvalidArgumentError, /values must be 1 rows of 1 numbers/);
    expectThrows(() => logitLensPage({ rowLabels: ['0'], columnLabels: ['a'], cells: [] }), InvalidArgumentError, /cells must be 1 rows of 1 cells/);
    // the positions the page is given set the mask: here key 2 is before query 1
    const page = attentionPatternsPage(cache, { positions: [0, 2, 1] });
    expect(page).toMatch(/class="cell" data-row="1" data-column="2"/);
    expect(page).toMatch(/class="cell masked" data-row="2" data-column="1"/);
    cache.dispose();
    noPatterns.dispose();
  });
});
