// A model's lifetime leaves nothing behind: rounds of load, use and dispose, each pattern in a fresh
// Node process, must not grow the process. Growth is measured after GC over two windows of 100
// rounds, from round 100 (by then glibc's heap holds its steady share of free fragments) to 200 and
// from 200 to 300, and the smaller must stay under the limit: a leak grows both windows alike, while
// a one-off step of the heap (seen once at 5.1 MB in CI's piptorch root, on a machine running the
// suite's other files, where 1,000 rounds there grow by 1 MB in all) lands in one. V8's young generation is
// pinned at 1 MB (--max-semi-space-size=1): left alone it grows its semi-spaces by ~13 MB under this
// allocation rate, which is V8 sizing itself, not memory kept; JS objects kept show in heapUsed.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { fixture, root } from './helpers';

const WARMUP = 100;
const WINDOW = 100;
const LIMIT_MB = 2.5;

interface Growth {
  rssMB: number;
  heapUsedMB: number;
}

/** Runs `round` (an async function body using `er`, `file`, `ids`) WARMUP + 2 WINDOW times; the growth of each window in MB. */
function soak(round: string): Growth[] {
  const source = `
    const er = require('./dist/index.js');
    const file = process.env.FIXTURE;
    const ids = er.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'int64' });
    const round = async () => { ${round} };
    const settle = async () => {
      // finalizers of collected handles run in a later tick: collect, let them run, collect again
      for (let i = 0; i < 3; i++) {
        global.gc();
        await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return process.memoryUsage();
    };
    (async () => {
      for (let i = 0; i < ${WARMUP}; i++) await round();
      const marks = [await settle()];
      for (let w = 0; w < 2; w++) {
        for (let i = 0; i < ${WINDOW}; i++) {
          await round();
          if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
        }
        marks.push(await settle());
      }
      const growth = (a, b) => ({ rssMB: (b.rss - a.rss) / 2 ** 20, heapUsedMB: (b.heapUsed - a.heapUsed) / 2 ** 20 });
      console.log(JSON.stringify([growth(marks[0], marks[1]), growth(marks[1], marks[2])]));
    })();`;
  const result = spawnSync(process.execPath, ['--expose-gc', '--max-semi-space-size=1', '-e', source], {
    cwd: root,
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, FIXTURE: fixture('gpt2_traced.pt') },
  });
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout.trim().split('\n').pop()!);
}

describe(`a model's lifetime (two windows of ${WINDOW} rounds after ${WARMUP}, growth after GC under ${LIMIT_MB} MB in the smaller)`, () => {
  it.each([
    ['load, a forward with a JS hook, dispose', `const m = er.loadModel(file); m.addHook('transformer.h.0:output', (t) => { t.shape; }); m.forward(ids).dispose(); m.dispose();`],
    ['load, an async forward with a JS hook (inference thread, thread-safe functions), dispose', `const m = er.loadModel(file); (await m.forwardAsync(ids, { hooks: { 'transformer.h.0:output': (t) => { t.shape; } } })).dispose(); m.dispose();`],
    ['load, hookPoints(), dispose (hooked-graph caches)', `const m = er.loadModel(file); m.hookPoints(); m.dispose();`],
    ['load, parameters() left to GC, dispose', `const m = er.loadModel(file); m.parameters(); m.dispose();`],
    ['HookedModel.load, an extraction, dispose', `const hm = er.HookedModel.load(file); hm.forward(ids, { extractionConfig: { extractResidOut: true, extractAttnPattern: true, extractHeadOut: true } }).dispose(); hm.dispose();`],
  ])('%s', (_, round) => {
    const windows = soak(round);
    const smaller = (key: keyof Growth) => Math.min(...windows.map((w) => w[key]));
    expect(smaller('rssMB'), JSON.stringify(windows)).toBeLessThan(LIMIT_MB);
    expect(smaller('heapUsedMB'), JSON.stringify(windows)).toBeLessThan(LIMIT_MB);
  });
});
