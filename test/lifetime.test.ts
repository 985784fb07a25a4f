// A model's lifetime leaves nothing behind: rounds of load, use and dispose, each pattern in a fresh
// Node process, must not grow the process. Growth is measured after GC, between round 100 (by then
// glibc's heap holds its steady share of free fragments) and round 300. V8's young generation is
// pinned at 1 MB (--max-semi-space-size=1): left alone it grows its semi-spaces by ~13 MB under this
// allocation rate, which is V8 sizing itself, not memory kept; JS objects kept show in heapUsed.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { fixture, root } from './helpers';

const WARMUP = 100;
const ROUNDS = 200;
const LIMIT_MB = 5;

/** Runs `round` (an async function body using `er`, `file`, `ids`) WARMUP + ROUNDS times; growth in MB. */
function soak(round: string): { rssMB: number; heapUsedMB: number } {
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
      const before = await settle();
      for (let i = 0; i < ${ROUNDS}; i++) {
        await round();
        if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
      }
      const after = await settle();
      console.log(JSON.stringify({ rssMB: (after.rss - before.rss) / 2 ** 20, heapUsedMB: (after.heapUsed - before.heapUsed) / 2 ** 20 }));
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

describe(`a model's lifetime (${ROUNDS} rounds after ${WARMUP}, growth after GC under ${LIMIT_MB} MB)`, () => {
  it.each([
    ['load, a forward with a JS hook, dispose', `const m = er.loadModel(file); m.addHook('transformer.h.0:output', (t) => { t.shape; }); m.forward(ids).dispose(); m.dispose();`],
    ['load, an async forward with a JS hook (inference thread, thread-safe functions), dispose', `const m = er.loadModel(file); (await m.forwardAsync(ids, { hooks: { 'transformer.h.0:output': (t) => { t.shape; } } })).dispose(); m.dispose();`],
    ['load, hookPoints(), dispose (hooked-graph caches)', `const m = er.loadModel(file); m.hookPoints(); m.dispose();`],
    ['load, parameters() left to GC, dispose', `const m = er.loadModel(file); m.parameters(); m.dispose();`],
    ['HookedModel.load, an extraction, dispose', `const hm = er.HookedModel.load(file); hm.forward(ids, { extractionConfig: { extractResidOut: true, extractAttnPattern: true, extractHeadOut: true } }).dispose(); hm.dispose();`],
  ])('%s', (_, round) => {
    const growth = soak(round);
    expect(growth.rssMB, JSON.stringify(growth)).toBeLessThan(LIMIT_MB);
    expect(growth.heapUsedMB, JSON.stringify(growth)).toBeLessThan(LIMIT_MB);
  });
});
