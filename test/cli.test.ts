// The command line (bin/easyroutine.js), run as a user runs it: a child process.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ActivationCache, HookedModel, logitDifference, residualPatchingSweep } from '../lib/index';
import { fixtures, maxDiffToReference, root, type EncodedTensor } from './helpers';

const { findPythonWithTorch } = require('../scripts/libtorch.js') as { findPythonWithTorch(): string | null };

function cli(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [path.join(root, 'bin', 'easyroutine.js'), ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('easyroutine (command line)', () => {
  it('prints its usage without a command, and refuses an unknown one', () => {
    const bare = cli([]);
    expect(bare.status).toBe(2);
    expect(bare.stdout).toMatch(/usage: easyroutine <command>/);
    for (const command of ['inspect MODEL', 'export MODEL_DIR OUT\\.pt', 'extract MODEL --prompts FILE', 'patch MODEL --clean PROMPT', 'view CACHE\\.safetensors', 'build']) expect(bare.stdout).toMatch(new RegExp(`\\n  ${command}`));
    const unknown = cli(['exprot']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'exprot'/);
  });

  it("export --help is the exporter's own", () => {
    const help = cli(['export', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--attn \{eager,sdpa\}/);
    expect(help.stdout).toMatch(/--dtype \{float32,float16,bfloat16\}/);
  });

  it('names what to pip install when the Python lacks torch and transformers', () => {
    // a Python without site-packages has neither
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-cli-'));
    const bare = path.join(dir, 'python-bare');
    fs.writeFileSync(bare, '#!/bin/sh\nexec python3 -S -I "$@"\n', { mode: 0o755 });
    const result = cli(['export', dir, path.join(dir, 'out.pt')], { EASYROUTINE_PYTHON: bare });
    expect(result.status).toBe(3);
    expect(result.stderr).toMatch(/lacks torch and transformers/);
    expect(result.stderr).toMatch(/-m pip install torch transformers/);
    fs.rmSync(dir, { recursive: true });
  });

  it('says when there is no Python at all', () => {
    const result = cli(['export', 'a', 'b.pt'], { EASYROUTINE_PYTHON: '/nonexistent/python' });
    expect(result.status).toBe(3);
    expect(result.stderr).toMatch(/no Python at '\/nonexistent\/python'/);
  });

  // the saved model and a Python with transformers come together: make-fixtures.sh writes both
  const saved = path.join(fixtures, 'hf', 'llama-model');
  const stamp = path.join(fixtures, 'STAMP');
  const withTransformers = fs.existsSync(saved) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8').includes('transformers');
  it.skipIf(!withTransformers)('exports a saved Hugging Face model that HookedModel then reads (needs transformers)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-cli-'));
    const out = path.join(dir, 'llama.pt');
    const result = cli(['export', saved, out, '--attn', 'eager'], { EASYROUTINE_PYTHON: findPythonWithTorch() ?? 'python3' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/exported LlamaForCausalLM \(2 layers, 4 heads, 2 key\/value\)/);
    const reference = JSON.parse(fs.readFileSync(path.join(fixtures, 'hf', 'llama-eager.json'), 'utf8')) as { input_ids: number[][]; logits: EncodedTensor };
    const hm = HookedModel.load(out);
    expect(hm.architecture.source).toBe('manifest');
    expect(hm.model.extraFiles['tokenizer.json']).toBe(fs.readFileSync(path.join(saved, 'tokenizer.json'), 'utf8'));
    expect(maxDiffToReference(hm.forward(reference.input_ids).tensor('logits'), reference.logits)).toBeLessThan(2e-4);
    hm.model.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});

describe('easyroutine inspect, extract, patch, view (the bundled model, with a tokenizer in its archive)', () => {
  const model = path.join(root, 'models', 'induction-2l.pt');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-cli-'));
  const promptsFile = path.join(dir, 'prompts.txt');
  fs.writeFileSync(promptsFile, 'w1 w2 w3 w4\nw5 w6\n\nw7 w8 w9\nw10 w11 w12 w13 w14\nw1 w1\n');

  it('inspect prints the signature, the architecture and every hook point with its shape on the sample', () => {
    const text = cli(['inspect', model, '--prompt', 'w1 w2 w3']);
    expect(text.stderr).toBe('');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/signature: forward\(Tensor idx\) -> Tensor/);
    expect(text.stdout).toMatch(/tokenizer: embedded tokenizer\.json/);
    expect(text.stdout).toMatch(/2 layers, 4 heads \(4 key\/value\), d_head 16, d_model 64/);
    expect(text.stdout).toMatch(/on the sample \[0, 1, 2, 3\] \("<bos>" "w1" "w2" "w3"\)/);
    expect(text.stdout).toMatch(/transformer\.h\.1\.attn:pattern +\[1, 4, 4, 4\]/);
    const json = cli(['inspect', model, '--ids', '0,5,6', '--json']);
    const report = JSON.parse(json.stdout) as { hookPoints: { name: string; shape: number[] | null }[]; architecture: { layers: number } };
    using hm = HookedModel.load(model);
    expect(report.hookPoints).toEqual([...hm.hookPointShapes([[0, 5, 6]])].map(([name, shape]) => ({ name, shape })));
    expect(report.hookPoints.length).toBe(hm.model.hookPoints().length);
    expect(report.architecture.layers).toBe(2);
  });

  it('extract saves what extractCache gives on the same batches, with progress per batch off a terminal', async () => {
    const out = path.join(dir, 'cache.safetensors');
    const result = cli(['extract', model, '--prompts', promptsFile, '--out', out, '--config', '{"extract_attn_pattern": true, "extractResidOut": true}', '--positions', '["last", -2]', '--batch-size', '2']);
    expect(result.stderr.trim().split('\n')).toEqual(['extract: batch 1/3', 'extract: batch 2/3', 'extract: batch 3/3']);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`extract: 5 prompts in 3 batches, [\\d.]+ s; 15 keys \\(.+\\) saved to ${out.replace(/[.]/g, '\\.')}`));
    const saved = ActivationCache.load(out);
    using hm = HookedModel.load(model);
    const direct = await hm.extractCache([['w1 w2 w3 w4', 'w5 w6'], ['w7 w8 w9', 'w10 w11 w12 w13 w14'], ['w1 w1']], { extractionConfig: { extractAttnPattern: true, extractResidOut: true }, targetTokenPositions: ['last', -2] });
    expect(saved.keys().sort()).toEqual(direct.keys().sort());
    for (const key of ['resid_out_1', 'pattern_L1H1', 'logits']) expect(Array.from(saved.tensor(key).toFloat32Array())).toEqual(Array.from(direct.tensor(key).toFloat32Array()));
    expect(saved.tensor('resid_out_0').shape).toEqual([5, 2, 64]);

    // view: the report lists every key and draws the patterns
    const page = path.join(dir, 'view.html');
    const view = cli(['view', out, '--out', page]);
    expect(view.status).toBe(0);
    expect(view.stdout).toMatch(/view: 15 keys \(.+\); report written to/);
    const html = fs.readFileSync(page, 'utf8');
    for (const key of saved.keys()) expect(html).toContain(`<tr><td>${key}</td>`);
    expect(html.match(/<figure class="head"/g)).toHaveLength(8);
    expect(html).toMatch(/&quot;extractAttnPattern&quot;: true/);
    saved.dispose();
    direct.dispose();
  });

  // script(1) (util-linux, in every Debian) gives the command a terminal, where the machine has
  // pseudo-terminals (a chroot without /dev/pts has none)
  const terminal = spawnSync('script', ['-qec', 'test -t 1', '/dev/null']).status === 0;
  it.skipIf(!terminal)('on a terminal, progress is one line redrawn in place with a bar', () => {
    const out = path.join(dir, 'tty.safetensors');
    const command = [process.execPath, path.join(root, 'bin', 'easyroutine.js'), 'extract', model, '--prompts', promptsFile, '--out', out, '--batch-size', '2'].map((a) => `'${a}'`).join(' ');
    const result = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`\rextract: batch [${'#'.repeat(10)}${' '.repeat(20)}] 1/3`);
    expect(result.stdout).toContain(`\rextract: batch [${'#'.repeat(30)}] 3/3`);
    expect(result.stdout).not.toMatch(/extract: batch 1\/3\r?\n/);
  });

  it('patch writes the sweeps residualPatchingSweep and headPatchingSweep give, as a page and as JSON', async () => {
    const page = path.join(dir, 'patch.html');
    const json = path.join(dir, 'patch.json');
    const result = cli(['patch', model, '--clean', 'w7 w9 w4 w7 w9', '--corrupted', 'w7 w9 w4 w7 w3', '--correct', 'w4', '--wrong', '9', '--out', page, '--json', json]);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/patch: layer x position \(2 x 6\); the largest logit difference [-\d.]+ at layer 0, position 5 w9/);
    expect(result.stdout).toMatch(/patch: layer x head \(2 x 4\)/);
    expect(result.stderr).toMatch(/patch: residual run 12\/12\npatch: head run 1\/8/);
    const written = JSON.parse(fs.readFileSync(json, 'utf8')) as { values: number[][]; cleanMetric: number; columnLabels: string[] }[];
    using hm = HookedModel.load(model);
    const direct = await residualPatchingSweep(hm, { clean: 'w7 w9 w4 w7 w9', corrupted: 'w7 w9 w4 w7 w3', metric: logitDifference(4, 9) });
    expect(written[0]!.values).toEqual(direct.values.toArray());
    expect(written[0]!.columnLabels).toEqual(['0 <bos>', '1 w7', '2 w9', '3 w4', '4 w7', '5 w9']);
    expect(written[0]!.cleanMetric).toBe(direct.cleanMetric);
    expect(fs.readFileSync(page, 'utf8')).toMatch(/logit difference: layer × head/);
    // ids work as prompts and tokens, on a model without a tokenizer
    const ids = cli(['patch', path.join(root, 'models', 'tiny-gpt.pt'), '--clean', '0,7,9,4,7,9', '--corrupted', '0,7,9,4,7,3', '--correct', '4', '--wrong', '9', '--sweep', 'resid', '--out', page]);
    expect(ids.status).toBe(0);
    expect(ids.stdout).toMatch(/the largest logit difference [-\d.]+ at layer \d, position \d\n/);
  });

  it('says what is wrong with how it was called (exit 2) or with what it was given (exit 1, the error class)', () => {
    const cases: [string[], number, RegExp][] = [
      [['inspect'], 2, /easyroutine inspect: expected MODEL, got nothing/],
      [['inspect', model, '--bogus'], 2, /Unknown option '--bogus'/],
      [['inspect', path.join(dir, 'none.pt')], 2, /no model file/],
      [['inspect', model, '--prompt', 'a', '--ids', '1'], 2, /give --prompt or --ids, not both/],
      [['extract', model, '--prompts', promptsFile], 2, /--out is required/],
      [['extract', model, '--prompts', promptsFile, '--out', path.join(dir, 'x.safetensors'), '--config', '{nope'], 2, /--config is not valid JSON/],
      [['extract', model, '--prompts', promptsFile, '--out', path.join(dir, 'x.safetensors'), '--batch-size', '0'], 2, /--batch-size must be a positive integer, got '0'/],
      [['extract', model, '--prompts', promptsFile, '--out', path.join(dir, 'x.safetensors'), '--config', '{"extractResidOutt": true}'], 1, /InvalidArgumentError: .*extractResidOutt/],
      [['patch', model, '--clean', 'w1', '--corrupted', 'w2', '--correct', '1', '--wrong', '2', '--out', 'x.html', '--sweep', 'all'], 2, /--sweep must be resid, heads or both, got 'all'/],
      [['patch', path.join(root, 'models', 'tiny-gpt.pt'), '--clean', '1,2', '--corrupted', '1,3', '--correct', 'w1', '--wrong', '2', '--out', 'x.html'], 2, /the token 'w1' is text, and the model has no tokenizer/],
      [['patch', model, '--clean', 'w1 w2', '--corrupted', 'w1', '--correct', '1', '--wrong', '2', '--out', path.join(dir, 'x.html')], 1, /ShapeError: .*clean and corrupted differ in shape/],
      [['view', path.join(dir, 'none.safetensors'), '--out', 'x.html'], 2, /no cache file/],
    ];
    for (const [args, status, message] of cases) {
      const result = cli(args);
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.status, args.join(' ')).toBe(status);
    }
  });
});

// the family fixtures exist where transformers made them (CI's pip torch leg requires them)
const exported = path.join(fixtures, 'hf', 'llama-eager.pt');
describe.skipIf(!fs.existsSync(exported))('easyroutine inspect and extract on an exported Hugging Face model (needs transformers)', () => {
  it('reads its manifest and tokenizer, and extracts from text prompts', () => {
    const text = cli(['inspect', exported, '--prompt', 'the cat sat']);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/architecture: from the file's manifest/);
    expect(text.stdout).toMatch(/on the sample \[1, 26, 33, 36\] \("<s>" "the" "cat" "sat"\)/);
    expect(text.stdout).toMatch(/model\.model\.layers\.1\.self_attn:pattern +\[1, 4, 4, 4\]/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-cli-'));
    fs.writeFileSync(path.join(dir, 'prompts.json'), JSON.stringify(['the cat sat', 'a dog ran far away', 'we sang']));
    const out = path.join(dir, 'cache.safetensors');
    const result = cli(['extract', exported, '--prompts', path.join(dir, 'prompts.json'), '--out', out, '--config', '{"extract_resid_out": true}']);
    expect(result.stderr).toBe('extract: batch 1/1\n');
    expect(result.status).toBe(0);
    const saved = ActivationCache.load(out);
    expect(saved.tensor('resid_out_1').shape).toEqual([3, 1, 32]);
    saved.dispose();
    fs.rmSync(dir, { recursive: true });
  });
});
