// CI's subset of `npm run compat` (scripts/compat/): families whose attention the engine once missed
// or offered in another layout, swept from tiny seeded configs with the installed transformers and
// checked through the engine and HookedModel against PyTorch. Needs the Python that made the family
// fixtures (with transformers); skipped without it unless EASYROUTINE_EXPECT_HF_FIXTURES=1.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixtures } from './helpers';

const root = path.join(__dirname, '..');
const present = fs.existsSync(path.join(fixtures, 'hf', 'STAMP'));
const expected = process.env.EASYROUTINE_EXPECT_HF_FIXTURES === '1';

// softmax -> slice (sinks), masked_fill, view -> view -> bmm, einsum with an unranked softmax, einsum
// in [batch, heads] layout, bmm patterns on [batch * heads, q, k], Bloom's bmm with 4-d views, a
// model with positions of its own (CPM-Ant), and two plain ones
const FAMILIES = ['gpt2', 'llama', 'gpt_oss', 'cpmant', 'xglm', 'xlnet', 'prophetnet', 'mvp', 'trocr', 'bloom'];

interface Row {
  type: string;
  stage: string;
  result: string;
  notes: string;
  check?: { engine: Record<string, string>; hooked: Record<string, string> };
}

describe.runIf(present || expected)('compatibility sweep (subset)', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-compat-'));
  let rows: Row[] = [];

  it('sweeps, exports and checks the families', { timeout: 600_000 }, () => {
    const python = process.env.EASYROUTINE_PYTHON ?? execFileSync('node', [path.join(root, 'scripts', 'libtorch.js'), '--python'], { encoding: 'utf8' }).trim();
    execFileSync(python, [path.join(root, 'scripts', 'compat', 'sweep.py'), out, '--jobs', '2', ...FAMILIES], { stdio: 'pipe' });
    try {
      execFileSync('node', [path.join(root, 'scripts', 'compat', 'check.mjs'), out, '--table', 'none', '--readme', 'none'], { stdio: 'pipe' });
    } catch {
      // exit 1 when a family is wrong: the rows below say which
    }
    rows = (JSON.parse(fs.readFileSync(path.join(out, 'check.json'), 'utf8')) as { rows: Row[] }).rows;
    expect(rows.map((r) => r.type)).toEqual(FAMILIES);
  });

  it('every family saves and is exact where it has the site, a typed error where not', () => {
    for (const row of rows) {
      expect(row.stage, `${row.type}: ${row.notes}`).toBe('save');
      expect(row.result, `${row.type}: ${row.notes}`).toMatch(/^exact/);
    }
  });

  it("the engine's pattern point is PyTorch's, [batch, heads, q, k], in every layer", () => {
    for (const row of rows.filter((r) => r.type !== 'cpmant')) {
      const engine = row.check!.engine;
      expect(Object.keys(engine).length, row.type).toBeGreaterThan(0);
      for (const [layer, verdict] of Object.entries(engine)) expect(verdict, `${row.type} ${layer}`).toBe('exact');
    }
    // CPM-Ant runs 32 prompt positions before the input's: its pattern is the input's block of a longer one
    for (const verdict of Object.values(rows.find((r) => r.type === 'cpmant')!.check!.engine)) expect(verdict).toMatch(/^exact on the 7 x 7 block/);
  });

  it("HookedModel: the patterns per head, and sites that are no input positions are a ShapeError", () => {
    for (const row of rows.filter((r) => !['cpmant', 'prophetnet', 'xlnet'].includes(r.type))) {
      expect(row.check!.hooked.pattern, row.type).toBe('exact');
      expect(row.check!.hooked.resid_out, row.type).toBe('exact');
    }
    for (const type of ['cpmant', 'prophetnet']) {
      const hooked = rows.find((r) => r.type === type)!.check!.hooked;
      expect(hooked.resid_out, type).toMatch(/^ShapeError: .*positions where the input has 7/);
    }
    expect(rows.find((r) => r.type === 'cpmant')!.check!.hooked.pattern).toMatch(/^ShapeError: .*query positions where the input has 7/);
  });
});
