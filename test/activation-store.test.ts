// ActivationSaver / ActivationLoader in easyroutine's layout (BASE/experiment/model/time/), queried
// by metadata; and safetensors streamed both ways: a file above 4 GiB saves and loads (one
// readFileSync stops at 2 GiB), its tensors read back exactly (EASYROUTINE_TEST_LARGE_FILES=1:
// scripts/test.sh runs it alone in CI's host leg; 4.3 GB of disk and about 9 GB of memory for half a minute).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActivationCache, ActivationLoader, ActivationSaver, HookedModel, InvalidArgumentError, fromTypedArray } from '../lib/index';
import { expectThrows, root } from './helpers';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-store-'));
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

describe('ActivationSaver and ActivationLoader', () => {
  it("save runs in easyroutine's layout with its metadata keys, and find them by any of them", async () => {
    using model = HookedModel.load(path.join(root, 'models', 'induction-2l.pt'));
    const saver = new ActivationSaver(base, 'induction');
    const config = { extractResidOut: true };
    const cache = await model.extractCache([['w1 w2 w3'], ['w4 w5 w6']], { targetTokenPositions: ['last'], extractionConfig: config });
    const first = saver.save(cache, { tag: 'baseline', now: new Date(2026, 11, 2, 9, 30, 5) });
    const second = saver.save(cache, { tag: 'baseline', now: new Date(2026, 11, 2, 9, 30, 5), otherMetadata: { seed: 7 } });
    const third = saver.save(cache, { modelName: 'org/other-model', now: new Date(2026, 11, 3, 8, 0, 0) });
    expect(path.relative(base, first)).toBe(path.join('induction', 'induction-2l', '2026-12-02_09_30_05'));
    expect(path.basename(second)).toBe('2026-12-02_09_30_05_2');
    expect(path.relative(base, third)).toBe(path.join('induction', 'org_other-model', '2026-12-03_08_00_00'));
    const metadata = JSON.parse(fs.readFileSync(path.join(first, 'metadata.json'), 'utf8')) as Record<string, unknown>;
    expect(metadata).toMatchObject({ tag: 'baseline', save_time: '2026-12-02 09:30:05', experiment_name: 'induction', model_name: 'induction-2l', target_token_positions: ['last'], interventions: [] });
    expect((metadata['extraction_config'] as Record<string, unknown>)['extractResidOut']).toBe(true);
    expect(fs.readdirSync(first).sort()).toEqual(['metadata.json', 'tensor.safetensors']);

    const loader = ActivationLoader.fromSaver(saver);
    expect(loader.query().length).toBe(3);
    expect(loader.query({ modelName: 'induction-2l' }).length).toBe(2);
    expect(loader.query({ modelName: 'org/other-model' }).length).toBe(1);
    expect(loader.query({ tag: 'baseline' }).length).toBe(2);
    expect(loader.query({ customKeys: { seed: 7 } }).runs.map((r) => r.dir)).toEqual([second]);
    expect(loader.query({ saveTime: '2026-12-03 08:00:00' }).runs.map((r) => r.dir)).toEqual([third]);
    expect(loader.query({ targetTokenPositions: ['last'] }).length).toBe(3);
    expect(loader.query({ targetTokenPositions: ['all'] }).length).toBe(0);
    expect(loader.query({ extractionConfig: cache.metadata['extractionConfig'] as Record<string, unknown> }).length).toBe(3);
    expect(loader.query({ experimentName: 'nothing' }).length).toBe(0);
    expect(String(loader.query({ modelName: 'induction-2l' }))).toBe(
      '0 - Experiment: induction, Model: induction-2l, Time Folder: 2026-12-02_09_30_05\n  Tag: baseline\n1 - Experiment: induction, Model: induction-2l, Time Folder: 2026-12-02_09_30_05_2\n  Tag: baseline',
    );

    // load: the newest by default, by time folder or index; the cache is the one saved
    const { cache: loaded, metadata: m } = loader.query({ modelName: 'induction-2l' }).load();
    expect(m.save_time).toBe('2026-12-02 09:30:05');
    expect(Array.from(loaded.tensor('resid_out_1').toFloat32Array())).toEqual(Array.from(cache.tensor('resid_out_1').toFloat32Array()));
    expect(loader.query().load('2026-12-03_08_00_00').metadata.model_name).toBe('org/other-model');
    expect(loader.query().load(0).metadata.tag).toBe('baseline');
    expectThrows(() => loader.query().load(5), InvalidArgumentError, /index 5 is out of range \(3 runs\)/);
    expectThrows(() => loader.query().load('2020-01-01_00_00_00'), InvalidArgumentError, /no run at time '2020-01-01_00_00_00'/);
    expectThrows(() => loader.query({ tag: 'none' }).load(), InvalidArgumentError, /found no runs/);

    const all = loader.query();
    all.remove(-1);
    expect(fs.existsSync(third)).toBe(false);
    expect(all.length).toBe(2);
    expect(loader.query().length).toBe(2);
    loaded.dispose();
    cache.dispose();
  });

  it('says what is missing', () => {
    const saver = new ActivationSaver(base);
    expectThrows(() => saver.save(new ActivationCache()), InvalidArgumentError, /no model name: pass \{ modelName \}/);
    expectThrows(() => new ActivationSaver(base, 'a/b'), InvalidArgumentError, /experimentName must be a non-empty name without slashes/);
    const previous = process.env.ACTIVATION_BASE_DIR;
    delete process.env.ACTIVATION_BASE_DIR;
    expectThrows(() => ActivationSaver.fromEnv(), InvalidArgumentError, /ACTIVATION_BASE_DIR is not set/);
    process.env.ACTIVATION_BASE_DIR = base;
    expect(ActivationLoader.fromEnv('x').baseDir).toBe(base);
    if (previous === undefined) delete process.env.ACTIVATION_BASE_DIR;
    else process.env.ACTIVATION_BASE_DIR = previous;
  });
});

describe.skipIf(process.env.EASYROUTINE_TEST_LARGE_FILES !== '1')('a cache file above 4 GiB', () => {
  it('saves and loads, streamed, every tensor exact', () => {
    // two tensors of 2.15 GB, each more than one 1 GiB read or write, the file past 2^32 bytes
    const elements = 2 ** 29 + 2 ** 24;
    const make = (seed: number) => {
      const values = new Float32Array(elements);
      // exact in float32: small integers
      for (let i = 0; i < elements; i += 4093) values[i] = seed + (i % 1000);
      values[elements - 1] = -seed;
      return values;
    };
    const cache = new ActivationCache();
    cache.set('a', fromTypedArray(make(1), [elements]));
    cache.set('b', fromTypedArray(make(2), [elements]));
    const file = path.join(base, 'large.safetensors');
    cache.save(file);
    expect(fs.statSync(file).size).toBeGreaterThan(2 ** 32);
    cache.dispose();
    const loaded = ActivationCache.load(file);
    for (const [key, seed] of [['a', 1], ['b', 2]] as const) {
      const data = loaded.tensor(key).data as Float32Array;
      expect(data.length).toBe(elements);
      for (const i of [0, 4093, 2 ** 28 - (2 ** 28 % 4093), elements - 1 - ((elements - 1) % 4093)]) expect(data[i]).toBe(seed + (i % 1000));
      expect(data[elements - 1]).toBe(-seed);
      expect(data[1]).toBe(0);
    }
    loaded.dispose();
    fs.rmSync(file);
  }, 300_000);
});
