// Every TypeScript example of the README (and of docs/getting-started.md), as a user has it: each
// block is a file that imports 'easyroutine' (the built package, linked into node_modules), compiled
// by tsc in strict mode with Node's module resolution, then run with Node in a scratch directory
// that links the project's models/ (the examples name files there). Needs `npm run build:ts` (npm test runs it).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { root } from './helpers';

const DOCUMENTS = ['README.md', path.join('docs', 'getting-started.md')];

function tsBlocks(file: string): { name: string; code: string }[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => {
    const line = text.slice(0, m.index).split('\n').length;
    return { name: `${file}:${line}`, code: m[1]! };
  }).map((b, i) => ({ ...b, name: `${b.name} (block ${i + 1})` }));
}

const blocks = DOCUMENTS.flatMap(tsBlocks);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-readme-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('the documents\' TypeScript examples', () => {
  it('has examples to check', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6);
  });

  it('compile with tsc --strict against the built package', () => {
    fs.mkdirSync(path.join(work, 'node_modules'), { recursive: true });
    fs.symlinkSync(root, path.join(work, 'node_modules', 'easyroutine'), 'dir');
    blocks.forEach((b, i) => fs.writeFileSync(path.join(work, `example-${i}.mts`), `// ${b.name}\n${b.code}\nexport {};\n`));
    const config = {
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        lib: ['es2022', 'esnext.disposable', 'dom'],
        strict: true,
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
        outDir: path.join(work, 'out'),
      },
      include: ['example-*.mts'],
    };
    fs.writeFileSync(path.join(work, 'tsconfig.json'), JSON.stringify(config));
    const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', work], { encoding: 'utf8' });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
  });

  it.each(blocks.map((b, i) => [b.name, i] as const))('%s runs', (_, i) => {
    const file = path.join(work, 'out', `example-${i}.mjs`);
    // the compiled file resolves 'easyroutine' from its own directory: link node_modules there too
    if (!fs.existsSync(path.join(work, 'out', 'node_modules'))) fs.symlinkSync(path.join(work, 'node_modules'), path.join(work, 'out', 'node_modules'), 'dir');
    // run where the files they write land in the scratch directory, with the project's models/ at hand
    const cwd = path.join(work, 'run');
    if (!fs.existsSync(cwd)) {
      fs.mkdirSync(cwd);
      fs.symlinkSync(path.join(root, 'models'), path.join(cwd, 'models'), 'dir');
    }
    const run = spawnSync(process.execPath, [file], { cwd, encoding: 'utf8', timeout: 120_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});
