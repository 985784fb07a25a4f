#!/usr/bin/env node
'use strict';
// The easyroutine command line: inspect, export, extract, patch, view, build.
//
// Arguments are parsed by Node's own util.parseArgs (maintained with Node, no dependency; it
// rejects unknown options and missing values). `export` hands its arguments to
// python/easyroutine_export.py (argparse). The package (dist/) is loaded only by the commands that
// run a model, so `export` and `build` work before the addon loads.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const USAGE = `usage: easyroutine <command> [options]

commands:
  inspect MODEL [--prompt TEXT | --ids 1,2,3] [--json]
      the model's signature, architecture (from its manifest or detected), tokenizer, and every
      hook point with its shape on a sample input
  export MODEL_DIR OUT.pt [--attn eager|sdpa] [--dtype float32|float16|bfloat16] [--device cpu|cuda]
      export a Hugging Face causal LM saved in MODEL_DIR to TorchScript, with its architecture
      and tokenizer (run 'easyroutine export --help' for details)
  extract MODEL --prompts FILE --out OUT.safetensors [--config JSON] [--positions JSON] [--batch-size N]
      run the model over the prompts (a text file, one prompt per line, or a JSON array of
      prompts or token id rows) and save the activation cache that --config asks for
      (easyroutine's ExtractionConfig, camelCase or Python names; default {"extractResidOut":true})
  patch MODEL --clean PROMPT --corrupted PROMPT --correct TOKEN --wrong TOKEN [--sweep resid|heads|both]
        [--site resid_in|resid_mid|resid_out] --out REPORT.html [--json OUT.json]
      activation-patching sweeps (layer x position of the residual, layer x head), metric the
      logit difference correct - wrong at the last position; a PROMPT is text or ids "1,2,3", a
      TOKEN an id or text (its last token)
  view CACHE.safetensors --out REPORT.html
      an HTML report of a saved cache: its keys, metadata and attention patterns
  build
      compile the native addon for the libtorch found (LIBTORCH, your Python's torch, or Debian's)
      into build/Release, when no prebuilt binary matches it

Python (export): EASYROUTINE_PYTHON, else python3 (it needs torch and transformers).`;

/** A mistake in how the command was called: exit 2 with the message and the usage line. */
class UsageError extends Error {}

function python() {
  return process.env.EASYROUTINE_PYTHON || 'python3';
}

function parse(command, args, options, positionals) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`easyroutine ${command}: ${error.message}`);
  }
  if (parsed.values.help) return { help: true };
  if (parsed.positionals.length !== positionals.length) {
    throw new UsageError(`easyroutine ${command}: expected ${positionals.join(' ')}, got ${parsed.positionals.length ? parsed.positionals.join(' ') : 'nothing'}`);
  }
  return { values: parsed.values, positionals: parsed.positionals };
}

function required(command, values, names) {
  for (const name of names) if (values[name] === undefined) throw new UsageError(`easyroutine ${command}: --${name} is required`);
}

function json(command, option, text) {
  const source = text.startsWith('@') ? fs.readFileSync(text.slice(1), 'utf8') : text;
  try {
    return JSON.parse(source);
  } catch (error) {
    throw new UsageError(`easyroutine ${command}: --${option} is not valid JSON (${error.message}); give JSON or @file.json`);
  }
}

function library() {
  return require('..');
}

/** A prompt given on the command line: ids "1,2,3" stay ids, anything else is text. */
function prompt(text) {
  return /^\s*\d+(\s*,\s*\d+)*\s*$/.test(text) ? [text.split(',').map(Number)] : text;
}

/**
 * Progress on stderr: one line redrawn in place on a terminal, a line per tenth otherwise (a log
 * file or CI). Written here rather than with cli-progress or progress: one bar, no ETA, 20 lines.
 */
function progressBar(label, stream = process.stderr) {
  let lastTenth = -1;
  return {
    update(done, total) {
      if (stream.isTTY) {
        const width = 30;
        const filled = total ? Math.round((width * done) / total) : 0;
        const bar = total ? `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ` : '';
        stream.write(`\r${label} ${bar}${done}${total ? `/${total}` : ''}`);
        return;
      }
      const tenth = total ? Math.floor((10 * done) / total) : done;
      if (tenth !== lastTenth || done === total) stream.write(`${label} ${done}${total ? `/${total}` : ''}\n`);
      lastTenth = tenth;
    },
    done() {
      if (stream.isTTY) stream.write('\n');
    },
  };
}

function loadHooked(file) {
  if (!fs.existsSync(file)) throw new UsageError(`easyroutine: no model file '${file}'`);
  return library().HookedModel.load(file);
}

function runInspect(args) {
  const parsed = parse('inspect', args, { prompt: { type: 'string' }, ids: { type: 'string' }, json: { type: 'boolean' } }, ['MODEL']);
  if (parsed.help) return help('inspect MODEL [--prompt TEXT | --ids 1,2,3] [--json]');
  const { values, positionals } = parsed;
  if (values.prompt !== undefined && values.ids !== undefined) throw new UsageError('easyroutine inspect: give --prompt or --ids, not both');
  const { describeArchitecture } = library();
  const model = loadHooked(positionals[0]);
  const tokenizer = model.tokenizer;
  const sample = values.prompt !== undefined ? model.toTokens(values.prompt) : (values.ids ?? '1,2,3,4,5,6,7,8').split(',').map(Number);
  const shapes = model.hookPointShapes([sample]);
  const report = {
    file: positionals[0],
    signature: model.model.signature,
    architecture: { source: model.architecture.source, layers: model.architecture.layers.length, nHeads: model.architecture.nHeads, nKvHeads: model.architecture.nKvHeads, dHead: model.architecture.dHead, dModel: model.architecture.dModel },
    tokenizer: tokenizer ? 'embedded tokenizer.json' : model.model.extraFiles['tokenizer.json'] ? 'embedded tokenizer.json (install @huggingface/tokenizers to use it)' : 'none',
    sample: { ids: sample, tokens: tokenizer ? sample.map((id) => tokenizer.decode([id])) : undefined },
    hookPoints: [...shapes].map(([name, shape]) => ({ name, shape })),
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const out = [];
    out.push(`model ${report.file}`, `  signature: ${report.signature}`, `  tokenizer: ${report.tokenizer}`);
    out.push('architecture:');
    out.push(...describeArchitecture(model.architecture).split('\n').map((l) => `  ${l}`));
    out.push(`hook points (${report.hookPoints.length}) on the sample [${sample.join(', ')}]${report.sample.tokens ? ` (${report.sample.tokens.map((t) => JSON.stringify(t)).join(' ')})` : ''}:`);
    const width = Math.max(...report.hookPoints.map((p) => p.name.length));
    for (const p of report.hookPoints) out.push(`  ${p.name.padEnd(width)}  ${p.shape ? `[${p.shape.join(', ')}]` : '(not a tensor)'}`);
    process.stdout.write(`${out.join('\n')}\n`);
  }
  model.dispose();
  return 0;
}

function readPrompts(file) {
  if (!fs.existsSync(file)) throw new UsageError(`easyroutine extract: no prompts file '${file}'`);
  const text = fs.readFileSync(file, 'utf8');
  if (file.endsWith('.json')) {
    const list = json('extract', 'prompts', text);
    const ok = Array.isArray(list) && list.length > 0 && list.every((p) => typeof p === 'string' || (Array.isArray(p) && p.length > 0 && p.every(Number.isInteger)));
    if (!ok) throw new UsageError(`easyroutine extract: ${file} must hold a JSON array of prompts (strings) or token id rows`);
    return list;
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 0) throw new UsageError(`easyroutine extract: ${file} has no prompts (one per line)`);
  return lines;
}

async function runExtract(args) {
  const parsed = parse('extract', args, { prompts: { type: 'string' }, out: { type: 'string' }, config: { type: 'string' }, positions: { type: 'string' }, 'batch-size': { type: 'string' } }, ['MODEL']);
  if (parsed.help) return help('extract MODEL --prompts FILE --out OUT.safetensors [--config JSON|@file] [--positions JSON] [--batch-size N]');
  const { values, positionals } = parsed;
  required('extract', values, ['prompts', 'out']);
  const prompts = readPrompts(values.prompts);
  const batchSize = Number(values['batch-size'] ?? 8);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`easyroutine extract: --batch-size must be a positive integer, got '${values['batch-size']}'`);
  const config = values.config === undefined ? { extractResidOut: true } : json('extract', 'config', values.config);
  const positions = values.positions === undefined ? ['last'] : json('extract', 'positions', values.positions);
  const model = loadHooked(positionals[0]);
  // text prompts of a batch are padded together; id rows of unequal lengths too
  const batches = [];
  for (let i = 0; i < prompts.length; i += batchSize) batches.push(prompts.slice(i, i + batchSize));
  const bar = progressBar('extract: batch');
  const started = performance.now();
  const cache = await model.extractCache(batches, { extractionConfig: config, targetTokenPositions: positions, onProgress: (done, total) => bar.update(done, total) });
  bar.done();
  cache.save(values.out);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stdout.write(`extract: ${prompts.length} prompts in ${batches.length} batches, ${seconds} s; ${cache.size} keys (${cache.memorySize()}) saved to ${values.out}\n`);
  cache.dispose();
  model.dispose();
  return 0;
}

function token(model, text) {
  if (/^\d+$/.test(text)) return Number(text);
  if (!model.tokenizer) throw new UsageError(`easyroutine patch: the token '${text}' is text, and the model has no tokenizer; give a token id`);
  const ids = model.toTokens(text);
  return ids[ids.length - 1];
}

async function runPatch(args) {
  const options = { clean: { type: 'string' }, corrupted: { type: 'string' }, correct: { type: 'string' }, wrong: { type: 'string' }, sweep: { type: 'string' }, site: { type: 'string' }, out: { type: 'string' }, json: { type: 'string' } };
  const parsed = parse('patch', args, options, ['MODEL']);
  if (parsed.help) return help('patch MODEL --clean PROMPT --corrupted PROMPT --correct TOKEN --wrong TOKEN [--sweep resid|heads|both] [--site resid_in|resid_mid|resid_out] --out REPORT.html [--json OUT.json]');
  const { values, positionals } = parsed;
  required('patch', values, ['clean', 'corrupted', 'correct', 'wrong', 'out']);
  const sweep = values.sweep ?? 'both';
  if (!['resid', 'heads', 'both'].includes(sweep)) throw new UsageError(`easyroutine patch: --sweep must be resid, heads or both, got '${sweep}'`);
  const { residualPatchingSweep, headPatchingSweep, logitDifference, patchingPage } = library();
  const model = loadHooked(positionals[0]);
  const correct = token(model, values.correct);
  const wrong = token(model, values.wrong);
  const common = { clean: prompt(values.clean), corrupted: prompt(values.corrupted), metric: logitDifference(correct, wrong) };
  const results = [];
  if (sweep !== 'heads') {
    const bar = progressBar('patch: residual run');
    results.push(await residualPatchingSweep(model, { ...common, site: values.site, onProgress: (d, t) => bar.update(d, t) }));
    bar.done();
  }
  if (sweep !== 'resid') {
    const bar = progressBar('patch: head run');
    results.push(await headPatchingSweep(model, { ...common, onProgress: (d, t) => bar.update(d, t) }));
    bar.done();
  }
  const first = results[0];
  const note = `Logit difference of token ${correct} over ${wrong} at the last position: ${first.cleanMetric.toFixed(4)} on the clean input, ${first.corruptedMetric.toFixed(4)} on the corrupted one; each cell is the corrupted run with one activation from the clean run.`;
  fs.writeFileSync(values.out, patchingPage(results, { title: `Activation patching: ${path.basename(positionals[0])}`, note }));
  if (values.json) {
    const plain = results.map((r) => ({ ...r, values: r.values.toArray() }));
    fs.writeFileSync(values.json, `${JSON.stringify(plain, null, 1)}\n`);
  }
  for (const r of results) {
    const grid = r.values.toArray();
    let best = { value: -Infinity };
    grid.forEach((row, i) => row.forEach((value, j) => value > best.value && (best = { value, row: r.rowLabels[i], column: r.columnLabels[j] })));
    process.stdout.write(`patch: ${r.rowTitle} x ${r.columnTitle} (${grid.length} x ${grid[0].length}); the largest ${r.metric} ${best.value.toFixed(4)} at ${r.rowTitle} ${best.row}, ${r.columnTitle} ${best.column}\n`);
    r.values.dispose();
  }
  process.stdout.write(`patch: clean ${first.cleanMetric.toFixed(4)}, corrupted ${first.corruptedMetric.toFixed(4)}; report written to ${values.out}${values.json ? ` and ${values.json}` : ''}\n`);
  model.dispose();
  return 0;
}

function runView(args) {
  const parsed = parse('view', args, { out: { type: 'string' } }, ['CACHE']);
  if (parsed.help) return help('view CACHE.safetensors --out REPORT.html');
  const { values, positionals } = parsed;
  required('view', values, ['out']);
  if (!fs.existsSync(positionals[0])) throw new UsageError(`easyroutine view: no cache file '${positionals[0]}'`);
  const { ActivationCache, cacheReportPage } = library();
  const cache = ActivationCache.load(positionals[0]);
  fs.writeFileSync(values.out, cacheReportPage(cache, { title: path.basename(positionals[0]) }));
  process.stdout.write(`view: ${cache.size} keys (${cache.memorySize()}); report written to ${values.out}\n`);
  cache.dispose();
  return 0;
}

function help(line) {
  process.stdout.write(`usage: easyroutine ${line}\n`);
  return 0;
}

function runExport(args) {
  const script = path.join(__dirname, '..', 'python', 'easyroutine_export.py');
  const result = spawnSync(python(), [script, ...args], { stdio: 'inherit' });
  if (result.error) {
    const why = result.error.code === 'ENOENT' ? `no Python at '${python()}'` : result.error.message;
    process.stderr.write(`easyroutine export: ${why}; set EASYROUTINE_PYTHON to a Python that has torch and transformers\n`);
    return 3;
  }
  return result.status ?? 1;
}

function runBuild(args) {
  const root = path.join(__dirname, '..');
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const cores = String(os.availableParallelism ? os.availableParallelism() : os.cpus().length);
  const wantsHelp = args.includes('--help') || args.includes('-h');
  if (!wantsHelp) process.stdout.write(`easyroutine build: compiling with ${cores} jobs (a few minutes)\n`);
  const result = spawnSync(process.execPath, [cmakeJs, 'compile', ...args], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL || cores },
  });
  if (result.status === 0 && !wantsHelp) process.stdout.write(`easyroutine build: done; ${path.join(root, 'build', 'Release')} is used from now on\n`);
  return result.status ?? 1;
}

const COMMANDS = { inspect: runInspect, export: runExport, extract: runExtract, patch: runPatch, view: runView, build: runBuild };

async function main(argv) {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(`easyroutine: unknown command '${command}'\n\n${USAGE}\n`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\nrun 'easyroutine ${command} --help' for its options\n`);
      return 2;
    }
    // the package's own errors are the user's to read, with their class; anything else is a bug
    if (error && error.code && String(error.code).startsWith('ERR_EASYROUTINE')) {
      process.stderr.write(`easyroutine ${command}: ${error.name}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

main(process.argv.slice(2)).then((code) => (process.exitCode = code));
