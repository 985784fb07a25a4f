// The Node half of `npm run compat`: every export the sweep saved (scripts/compat/sweep.py) through the
// engine and through HookedModel, against the references PyTorch's hooks recorded on the nn.Module.
//
//   node scripts/compat/check.mjs OUT_DIR [--table FILE] [--readme FILE]
//
// Per family it checks, on the sweep's batch:
//   engine       each layer's `<attention>:pattern` point, as the engine offers it ([batch, heads, q, k]),
//                against the pattern the module returns with output_attentions
//   HookedModel  resid_in/mid/out, attn_out, mlp_out and every head's pattern_L{i}H{h}, each extracted
//                on its own so that a site the family lacks is that site's typed error, not the family's
// It writes OUT_DIR/check.json, the table (docs/compat.md by default) and the README's summary between
// its compat markers, and exits 1 when a family that saved is not exact where it has the site.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { HookedModel, EasyroutineError, tensor } = await import(path.join(root, 'dist', 'index.mjs'));

const TOLERANCE = 2e-5;
const SITES = ['resid_in', 'resid_mid', 'resid_out', 'attn_out', 'mlp_out'];
const EXTRACT = { resid_in: 'extractResidIn', resid_mid: 'extractResidMid', resid_out: 'extractResidOut', attn_out: 'extractAttnOut', mlp_out: 'extractMlpOut', pattern: 'extractAttnPattern' };

function parseArguments(argv) {
  const options = { dir: null, table: path.join(root, 'docs', 'compat.md'), readme: path.join(root, 'README.md') };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--table') options.table = argv[++i];
    else if (argv[i] === '--readme') options.readme = argv[++i] === 'none' ? null : argv[i];
    else options.dir = argv[i];
  }
  if (!options.dir) throw new Error('usage: node scripts/compat/check.mjs OUT_DIR [--table FILE|none] [--readme FILE|none]');
  if (options.table === 'none') options.table = null;
  return options;
}

/** Largest absolute difference of `values` (a Float32Array of `shape`) to an encoded reference; Infinity when the shapes differ. */
function maxDiff(values, shape, reference) {
  if (shape.length !== reference.shape.length || shape.some((d, i) => d !== reference.shape[i])) return Infinity;
  let max = 0;
  for (let i = 0; i < reference.values.length; i++) {
    const a = values[i];
    const e = reference.values[i];
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (a !== e) return Infinity;
      continue;
    }
    max = Math.max(max, Math.abs(a - e));
  }
  return max;
}

/**
 * The largest difference of a [.., q, k] value to a reference whose last two sizes differ: compared on
 * the block they share, aligned at the end (CPM-Ant prepends 32 prompt positions: the input's block
 * is the last) or, for keys, at the start (DeepSeek-V4 appends compressed key entries). Returns
 * [difference, note] or null when no alignment matches.
 */
function sharedBlockDiff(values, shape, reference) {
  const r = reference.shape;
  if (shape.length !== r.length || shape.slice(0, -2).some((d, i) => d !== r[i])) return null;
  const [q, k] = shape.slice(-2);
  const [rq, rk] = r.slice(-2);
  const bq = Math.min(q, rq);
  const bk = Math.min(k, rk);
  const outer = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  for (const [name, alignKeysAtEnd] of [['end', true], ['start', false]]) {
    let max = 0;
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < bq; i++) {
        for (let j = 0; j < bk; j++) {
          const a = values[(o * q + (q - bq + i)) * k + (alignKeysAtEnd ? k - bk + j : j)];
          const e = reference.values[(o * rq + (rq - bq + i)) * rk + (alignKeysAtEnd ? rk - bk + j : j)];
          max = Math.max(max, Number.isFinite(a) && Number.isFinite(e) ? Math.abs(a - e) : a === e ? 0 : Infinity);
        }
      }
    }
    if (max <= TOLERANCE) return [max, `on the ${bq} x ${bk} block both have (keys aligned at the ${name}): ${shapeText(shape)} here, ${shapeText(r)} from PyTorch`];
  }
  return null;
}

/** Whether a reference pattern is one over the input's positions: [batch, heads, seq, keys] with seq the input's length. */
const overInput = (reference, refs) => reference.shape.length === 4 && reference.shape[2] === refs.input_ids[0].length;

/** One head's pattern of a [batch, heads, q, k] reference, as [batch, q, k]. */
function headOf(reference, h) {
  const [batch, heads, q, k] = reference.shape;
  const values = [];
  for (let b = 0; b < batch; b++) values.push(...reference.values.slice((b * heads + h) * q * k, (b * heads + h + 1) * q * k));
  return { shape: [batch, q, k], values };
}

const describeError = (error) => (error instanceof EasyroutineError ? `${error.name}: ${error.message}` : `untyped ${error?.name ?? 'error'}: ${error?.message ?? String(error)}`);
const shapeText = (shape) => `[${shape.join(', ')}]`;

/** The engine's own pattern points, layer by layer, against the module's output_attentions. */
function checkEngine(hm, refs) {
  const model = hm.model;
  const ids = tensor(refs.input_ids, { dtype: 'int64' });
  // the exporter's wrapper takes (input_ids, attention_mask)
  const args = [ids, tensor(refs.input_ids.map((row) => row.map(() => 1)), { dtype: 'int64' })];
  const points = model.hookPoints();
  const result = {};
  const captured = {};
  const hooks = {};
  for (const [i, layer] of hm.architecture.layers.entries()) {
    const point = points.find((p) => p.name === layer.points.pattern);
    if (!point) {
      const reference = refs[`pattern_${i}`];
      // a layer without softmax attention (linear attention) may still return weights of its own
      result[`pattern_${i}`] = !reference ? 'no pattern point (and no reference)' : overInput(reference, refs) ? 'no pattern point' : `no pattern point (and the module's attentions, ${shapeText(reference.shape)}, are no pattern over the input)`;
      continue;
    }
    hooks[point.name] = (value) => {
      captured[i] = { shape: value.shape, values: value.toFloat32Array() };
    };
  }
  try {
    model.forward(args, { hooks, output: false });
  } catch (error) {
    return { error: describeError(error) };
  }
  for (const [i] of hm.architecture.layers.entries()) {
    if (result[`pattern_${i}`] !== undefined) continue;
    const reference = refs[`pattern_${i}`];
    const got = captured[i];
    if (!reference) result[`pattern_${i}`] = 'no reference';
    else if (!got) result[`pattern_${i}`] = 'not reached';
    else if (maxDiff(got.values, got.shape, reference) <= TOLERANCE) result[`pattern_${i}`] = 'exact';
    else {
      const shared = sharedBlockDiff(got.values, got.shape, reference);
      result[`pattern_${i}`] = shared ? `exact ${shared[1]}` : `differs (${shapeText(got.shape)} against ${shapeText(reference.shape)}, max ${maxDiff(got.values, got.shape, reference).toPrecision(3)})`;
    }
  }
  return result;
}

/** HookedModel's extraction, one site kind at a time. */
function checkHooked(hm, refs) {
  const result = {};
  const layers = hm.architecture.layers;
  for (const site of [...SITES, 'pattern']) {
    let cache;
    try {
      cache = hm.forward(refs.input_ids, { extractionConfig: { [EXTRACT[site]]: true } });
    } catch (error) {
      result[site] = describeError(error);
      continue;
    }
    const verdicts = [];
    for (let i = 0; i < layers.length; i++) {
      if (site === 'pattern') {
        const reference = refs[`pattern_${i}`];
        if (!reference) {
          verdicts.push('no reference');
          continue;
        }
        for (let h = 0; h < reference.shape[1]; h++) {
          const key = `pattern_L${i}H${h}`;
          if (!cache.has(key)) {
            verdicts.push(`${key} missing`);
            continue;
          }
          const t = cache.tensor(key);
          const head = headOf(reference, h);
          const d = maxDiff(t.toFloat32Array(), t.shape, head);
          if (d <= TOLERANCE) continue;
          // token positions address the input's keys only: a model's own key entries are not among them
          const shared = sharedBlockDiff(t.toFloat32Array(), t.shape, head);
          verdicts.push(shared ? `exact ${shared[1].replace(/^on the/, 'on the')}` : `${key} differs (${shapeText(t.shape)} against ${shapeText(head.shape)}, max ${d.toPrecision(3)})`);
        }
        continue;
      }
      const key = `${site}_${i}`;
      const reference = refs[key];
      if (!cache.has(key)) {
        verdicts.push(reference ? `${key} missing` : 'no reference');
        continue;
      }
      if (!reference) {
        verdicts.push('no reference');
        continue;
      }
      const t = cache.tensor(key);
      const d = maxDiff(t.toFloat32Array(), t.shape, reference);
      if (!(d <= TOLERANCE)) verdicts.push(`${key} differs (${shapeText(t.shape)} against ${shapeText(reference.shape)}, max ${d.toPrecision(3)})`);
    }
    const failures = [...new Set(verdicts.filter((v) => v !== 'no reference' && !v.startsWith('exact ')))];
    const partial = [...new Set(verdicts.filter((v) => v.startsWith('exact ')))];
    if (failures.length > 0) result[site] = failures.join('; ');
    else if (verdicts.length > 0 && verdicts.every((v) => v === 'no reference')) result[site] = 'no reference';
    else result[site] = partial.length > 0 ? partial.join('; ') : 'exact';
  }
  return result;
}

function checkFamily(dir, family) {
  const refs = JSON.parse(fs.readFileSync(path.join(dir, `${family.type}.json`), 'utf8')).references;
  let hm;
  try {
    hm = HookedModel.load(path.join(dir, `${family.type}.pt`));
  } catch (error) {
    return { load: describeError(error) };
  }
  try {
    return { engine: checkEngine(hm, refs), hooked: checkHooked(hm, refs) };
  } finally {
    hm.model.dispose();
  }
}

/** exact: every site the family has equals PyTorch; typed: what is missing is a typed error; else wrong. */
function verdict(check) {
  if (check.load) return 'wrong';
  const values = [...Object.values(check.engine), ...Object.values(check.hooked)];
  const bad = values.filter((v) => !v.startsWith('exact') && v !== 'no reference' && !/^(\w+Error): /.test(v) && !v.startsWith('no pattern point ('));
  if (bad.length > 0 || check.engine.error) return 'wrong';
  return values.some((v) => /^\w+Error: /.test(v)) ? 'exact, with typed errors' : values.some((v) => v.startsWith('exact ')) ? 'exact, on the input positions' : 'exact';
}

function summarize(check) {
  if (check.load) return check.load;
  const notes = [];
  for (const [key, value] of Object.entries(check.engine)) if (value !== 'exact') notes.push(`engine ${key}: ${value}`);
  for (const [key, value] of Object.entries(check.hooked)) if (value !== 'exact') notes.push(`${key}: ${value}`);
  return notes.join('; ');
}

const escapeCell = (text) => String(text).replace(/\|/g, '\\|').replace(/\n/g, ' ');

function tableOf(sweep, rows) {
  const lines = ['| family | class | last stage passed | result | notes |', '|---|---|---|---|---|'];
  for (const row of rows) lines.push(`| ${row.type} | ${row.hf_class} | ${row.stage} | ${row.result} | ${escapeCell(row.notes)} |`);
  return lines.join('\n');
}

function countsOf(rows) {
  const counts = {};
  for (const row of rows) counts[row.result] = (counts[row.result] ?? 0) + 1;
  return counts;
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const sweep = JSON.parse(fs.readFileSync(path.join(options.dir, 'sweep.json'), 'utf8'));
  const rows = [];
  for (const family of sweep.families) {
    if (family.stage !== 'save') {
      rows.push({ type: family.type, hf_class: family.hf_class, stage: family.stage ?? '-', result: `fails at ${family.failed_stage}`, notes: family.error ?? '' });
      continue;
    }
    const check = checkFamily(options.dir, family);
    const row = { type: family.type, hf_class: family.hf_class, stage: 'save', result: verdict(check), notes: summarize(check), check };
    rows.push(row);
    console.log(`  ${family.type}: ${row.result}${row.notes ? ` (${row.notes.slice(0, 300)})` : ''}`);
  }
  const counts = countsOf(rows);
  const header =
    `transformers ${sweep.transformers}, torch ${sweep.torch} (export), libtorch of the addon: ${(await import(path.join(root, 'dist', 'index.mjs'))).runtimeInfo().libtorchVersion}; ` +
    `${sweep.families.length} causal-LM classes, sweep ${sweep.seconds} s.`;
  const countLine = Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  fs.writeFileSync(path.join(options.dir, 'check.json'), JSON.stringify({ header, counts, rows }, null, 1));
  const table = tableOf(sweep, rows);
  const document =
    `# Compatibility\n\nMade by \`npm run compat\` (scripts/compat/): every class of transformers' causal-LM mapping, exported ` +
    `from a tiny seeded config with eager attention, checked against PyTorch's hooks on the nn.Module (tolerance ${TOLERANCE}). ` +
    `*exact*: the engine's patterns and HookedModel's resid_in/mid/out, attn_out, mlp_out and per-head patterns equal PyTorch's ` +
    `wherever the family has the site; *with typed errors*: a site the family lacks is a typed error naming it.\n\n${header}\n\n${countLine}\n\n${table}\n`;
  if (options.table) fs.writeFileSync(options.table, document);
  if (options.readme) {
    const readme = fs.readFileSync(options.readme, 'utf8');
    const start = '<!-- compat:start -->';
    const end = '<!-- compat:end -->';
    const i = readme.indexOf(start);
    const j = readme.indexOf(end);
    if (i < 0 || j < i) throw new Error(`${options.readme} has no ${start} ... ${end} section`);
    const section = `${start}\n${header}\n\n${countLine}\n\n<details><summary>Every family</summary>\n\n${table}\n\n</details>\n${end}`;
    fs.writeFileSync(options.readme, readme.slice(0, i) + section + readme.slice(j + end.length));
  }
  console.log(`compat: ${countLine}`);
  process.exitCode = rows.some((r) => r.result === 'wrong') ? 1 : 0;
}

await main();
