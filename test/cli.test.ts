// The command line (bin/easyroutine.js), run as a user runs it: a child process.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HookedModel } from '../lib/index';
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
    expect(bare.stdout).toMatch(/export MODEL_DIR OUT\.pt/);
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
