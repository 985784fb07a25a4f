import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ActivationCache, cacheKeyGroup, extractionConfig, formatBytes, InvalidArgumentError, tensor, type Tensor } from '../lib/index';
import { expectThrows, numbers, root } from './helpers';

function batch(offset: number): ActivationCache {
  const cache = new ActivationCache();
  cache.set('resid_out_0', tensor([[[offset, offset + 1]]]));
  cache.set('mapping_index', { last: [0] });
  cache.set('token_dict', ['a', 'b']);
  cache.set('last_layernorm', { mean: tensor([[offset]]), variance: tensor([[offset * 2]]) });
  return cache;
}

describe('ActivationCache', () => {
  it('has map semantics with info', () => {
    const cache = new ActivationCache();
    cache.addWithInfo('resid_in_0', tensor([1, 2]), '[batch, d_model]');
    cache.set('n', 3);
    expect(cache.keys()).toEqual(['resid_in_0', 'n']);
    expect(cache.info('resid_in_0')).toBe('[batch, d_model]');
    expect(cache.has('n')).toBe(true);
    cache.delete('n');
    expect(cache.size).toBe(1);
    expect([...cache].map(([k]) => k)).toEqual(['resid_in_0']);
    expectThrows(() => cache.tensor('resid_in_1'), InvalidArgumentError, /no key 'resid_in_1'/);
  });

  it('merges batches: tensors on dim 0, default aggregations for mapping_index, token_dict, last_layernorm', () => {
    const cache = new ActivationCache();
    cache.cat(batch(0)).cat(batch(10));
    expect(cache.tensor('resid_out_0').shape).toEqual([2, 1, 2]);
    expect(numbers(cache.tensor('resid_out_0').toFloat32Array())).toEqual([0, 1, 10, 11]);
    expect(cache.get('mapping_index')).toEqual({ last: [0] });
    expect(cache.get('token_dict')).toEqual(['a', 'b', 'a', 'b']);
    const stats = cache.get('last_layernorm') as Record<string, Tensor>;
    expect(numbers(stats['variance']!.toFloat32Array())).toEqual([0, 20]);
  });

  it('stacks equal scalar shapes and lists plain values', () => {
    const a = new ActivationCache().set('s', tensor(1)).set('x', 'p');
    const b = new ActivationCache().set('s', tensor(2)).set('x', 'q');
    a.cat(b);
    expect(a.tensor('s').shape).toEqual([2]);
    expect(a.get('x')).toEqual(['p', 'q']);
  });

  it('refuses tensors that differ beyond dim 0, and mapping indices that differ, unless an aggregation says how', () => {
    // two batches of different lengths extracted at every position
    const long = () => new ActivationCache().set('resid_out_0', tensor(new Float32Array(2 * 5 * 3), [2, 5, 3])).set('mapping_index', { all: [0, 1, 2, 3, 4] });
    const short = () => new ActivationCache().set('resid_out_0', tensor(new Float32Array(2 * 4 * 3), [2, 4, 3])).set('mapping_index', { all: [0, 1, 2, 3] });
    expectThrows(() => long().cat(short()), InvalidArgumentError, /'resid_out_0' has shape \[2, 5, 3\] here and \[2, 4, 3\] in the new batch.*registerAggregation/);
    const onlyIndex = new ActivationCache().set('mapping_index', { last: [0] });
    expectThrows(() => onlyIndex.cat(new ActivationCache().set('mapping_index', { 'last-2': [0] })), InvalidArgumentError, /'mapping_index' differs between the batches/);
    // with aggregations for both, the user decides
    const merged = long();
    merged.registerAggregation('resid_out_', (current, incoming) => [...(Array.isArray(current) ? current : [current]), incoming]);
    merged.registerAggregation('mapping_index', (current, incoming) => [current, incoming].flat());
    merged.cat(short());
    expect((merged.get('resid_out_0') as Tensor[]).map((t) => t.shape)).toEqual([[2, 5, 3], [2, 4, 3]]);
  });

  it('keeps its metadata under the metadata key too, as easyroutine, merged over batches and saved once', () => {
    const a = batch(0).addMetadata({ model: 'm', batches: 1 });
    expect(a.get('metadata')).toBe(a.metadata);
    expect(a.get('metadata')).toEqual({ model: 'm', batches: 1 });
    const b = batch(10).addMetadata({ batches: 2, seed: 3 });
    a.cat(b);
    expect(a.get('metadata')).toEqual({ model: 'm', batches: 2, seed: 3 });
    expect(a.metadata).toBe(a.get('metadata'));
    // one side may have none
    a.cat(batch(20));
    expect(a.tensor('resid_out_0').shape).toEqual([3, 1, 2]);
    // an empty cache takes the other's values, not its metadata object
    const empty = new ActivationCache().cat(b);
    expect(empty.get('metadata')).toEqual(b.metadata);
    expect(empty.get('metadata')).not.toBe(b.metadata);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-cache-')), 'm.safetensors');
    a.save(file);
    const loaded = ActivationCache.load(file);
    expect(loaded.get('metadata')).toEqual(a.metadata);
    expect(loaded.metadata).toBe(loaded.get('metadata'));
    expect(loaded.keys().filter((k) => k === 'metadata')).toHaveLength(1);
    expectThrows(() => (a.metadata = [] as never), InvalidArgumentError, /metadata must be a plain object, got an array/);
    // a cache nobody described has no metadata key
    expect(batch(0).has('metadata')).toBe(false);
  });

  it('dispose releases every tensor it holds, nested ones and the metadata\'s too, and leaves the cache empty and usable', () => {
    const cache = new ActivationCache();
    const top = tensor([1]);
    const inList = tensor([2]);
    const inObject = tensor([3]);
    const inMetadata = tensor([4]);
    const config = extractionConfig({ extractResidOut: true });
    cache.addWithInfo('resid_out_0', top, '[batch, d]');
    cache.set('list', [inList, 5, 'text']);
    cache.set('stats', { mean: inObject, label: 'x' });
    cache.metadata = { extractionConfig: config, deep: { tensors: [inMetadata] } };
    cache.dispose();
    expect([top, inList, inObject, inMetadata].map((t) => t.disposed)).toEqual([true, true, true, true]);
    expect(cache.size).toBe(0);
    expect(cache.info('resid_out_0')).toBeUndefined();
    expect(extractionConfig(config)).toBe(config);
    cache.addWithInfo('resid_out_0', tensor([6]), '[batch, position, d]');
    expect(cache.info('resid_out_0')).toBe('[batch, position, d]');
  });

  it('cat takes only an ActivationCache', () => {
    expectThrows(() => new ActivationCache().cat({} as ActivationCache), InvalidArgumentError, /ActivationCache.cat: expected an ActivationCache, got an object \(Object\)/);
    expectThrows(() => new ActivationCache().cat(null as unknown as ActivationCache), InvalidArgumentError, /got null/);
  });

  it('refuses to merge different key sets, naming them', () => {
    const a = batch(0);
    const b = batch(1);
    b.delete('token_dict');
    b.set('extra', 1);
    expectThrows(() => a.cat(b), InvalidArgumentError, /missing from the new batch: token_dict; only in the new batch: extra/);
  });

  it('uses registered aggregations by longest prefix', () => {
    const cache = new ActivationCache();
    cache.registerAggregation('resid_', (current, incoming) => (current as number) + (incoming as number));
    cache.set('resid_total', 1).cat(new ActivationCache().set('resid_total', 2));
    expect(cache.get('resid_total')).toBe(3);
    cache.removeAggregation('resid_');
    cache.cat(new ActivationCache().set('resid_total', 4));
    expect(cache.get('resid_total')).toEqual([3, 4]);
  });

  it('defers merges and does them at once', () => {
    const cache = new ActivationCache();
    {
      using _deferred = cache.deferredMode();
      for (let i = 0; i < 4; i++) cache.cat(batch(i));
      expect(cache.size).toBe(0);
    }
    expect(cache.tensor('resid_out_0').shape).toEqual([4, 1, 2]);
    expect(cache.get('token_dict')).toHaveLength(8);
  });

  it('reports memory with correct units and groups keys', () => {
    const cache = new ActivationCache();
    cache.set('resid_out_0', tensor(new Float32Array(1000), [1000]));
    cache.set('resid_out_1', tensor(new Float32Array(100), [100]));
    cache.set('pattern_L1H2', tensor(new Float64Array(10), [10]));
    cache.set('head_values_L0H3', tensor(new Float32Array(2), [2]));
    expect(cache.memorySize('resid_out_0')).toBe('4.00 KB');
    expect(cache.memorySize('pattern_L1H2')).toBe('80 B');
    expect(cache.memorySize()).toBe('4.49 KB');
    expect(cache.memoryTree(true)).toEqual({ resid_out: '4.40 KB', pattern_L1: '80 B', head_values_L0: '8 B' });
    expect(formatBytes(1_500_000)).toBe('1.50 MB');
    expect(cacheKeyGroup('logits')).toBe('logits');
  });

  it('saves as safetensors that an independent reader reads, and loads back', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'er-cache-')), 'cache.safetensors');
    const cache = new ActivationCache();
    cache.addWithInfo('resid_out_0', tensor([[1.5, -2], [3, 4]]), '[batch, d]');
    cache.set('input_ids', tensor([[1, 2, 3]], { dtype: 'int64' }));
    cache.set('last_layernorm', { mean: tensor([0.25]), variance: tensor([2], { dtype: 'float64' }) });
    cache.set('mapping_index', { last: [2] });
    cache.addMetadata({ model: 'tiny-gpt', positions: ['last'] });
    cache.save(file);

    const python = execFileSync(process.execPath, [path.join(root, 'scripts', 'libtorch.js'), '--python'], { encoding: 'utf8' }).trim();
    const read = JSON.parse(execFileSync(python, [path.join(root, 'test', 'read_safetensors.py'), file], { encoding: 'utf8' }));
    expect(read.tensors['resid_out_0']).toEqual({ dtype: 'F32', shape: [2, 2], sum: 6.5 });
    expect(read.tensors['input_ids']).toEqual({ dtype: 'I64', shape: [1, 3], sum: 6 });
    expect(read.tensors['last_layernorm.variance']).toEqual({ dtype: 'F64', shape: [1], sum: 2 });
    expect(JSON.parse(read.metadata['easyroutine.metadata'])).toEqual({ model: 'tiny-gpt', positions: ['last'] });

    const loaded = ActivationCache.load(file);
    expect(loaded.keys()).toEqual(cache.keys());
    expect(numbers(loaded.tensor('resid_out_0').toFloat32Array())).toEqual([1.5, -2, 3, 4]);
    expect(loaded.tensor('input_ids').dtype).toBe('int64');
    expect(loaded.info('resid_out_0')).toBe('[batch, d]');
    expect(loaded.get('mapping_index')).toEqual({ last: [2] });
    expect(loaded.metadata).toEqual({ model: 'tiny-gpt', positions: ['last'] });
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    expectThrows(() => ActivationCache.load(file), InvalidArgumentError, /not a safetensors file/);
  });
});

describe('ActivationCache files that are damaged or missing', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-cache-'));
  const saved = () => {
    const cache = new ActivationCache();
    cache.set('resid_out_0', tensor(Float32Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]));
    const file = path.join(dir, `cache-${Math.random()}.safetensors`);
    cache.save(file);
    return file;
  };

  it('a truncated file names the tensor and the bytes it lacks, instead of reading zeros', () => {
    const file = saved();
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 10));
    expectThrows(() => ActivationCache.load(file), InvalidArgumentError, /tensor 'resid_out_0' has data_offsets \[0,96\] but the file holds 86 data bytes/);
  });

  it('a header whose offsets disagree with the shape is refused', () => {
    const file = saved();
    const bytes = fs.readFileSync(file);
    const size = Number(bytes.readBigUInt64LE(0));
    const header = bytes.subarray(8, 8 + size).toString('utf8').replace('"shape":[2,3,4]', '"shape":[2,3,2]');
    fs.writeFileSync(file, Buffer.concat([bytes.subarray(0, 8), Buffer.from(header), bytes.subarray(8 + size)]));
    expectThrows(() => ActivationCache.load(file), InvalidArgumentError, /of shape \[2,3,2\] and dtype F32 needs 48 bytes but its data_offsets span 96/);
  });

  it('a missing file, a directory, a missing folder: InvalidArgumentError naming the path, the cause attached', () => {
    const missing = expectThrows(() => ActivationCache.load(path.join(dir, 'nope.safetensors')), InvalidArgumentError, /cannot read '.*nope\.safetensors': no such file/);
    expect((missing as { cause?: { code?: string } }).cause?.code).toBe('ENOENT');
    expectThrows(() => ActivationCache.load(dir), InvalidArgumentError, /cannot read '.*': it is a directory/);
    expectThrows(() => new ActivationCache().save(path.join(dir, 'no', 'such', 'x.safetensors')), InvalidArgumentError, /cannot write '.*x\.safetensors': its folder does not exist/);
    expectThrows(() => new ActivationCache().save(dir), InvalidArgumentError, /it is a directory/);
  });
});
