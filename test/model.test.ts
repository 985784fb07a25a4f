import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DeviceError,
  DisposedError,
  ForwardError,
  InvalidArgumentError,
  ModelLoadError,
  Tensor,
  getNumThreads,
  loadModel,
  runtimeInfo,
  setCpuFusion,
  setNumThreads,
  tensor,
  type ModelOutput,
} from '../lib/index';
import { expectRejects, expectThrows, fixture, maxAbsDiff, reference, numbers } from './helpers';

const { findLibtorch } = require('../scripts/libtorch.js') as { findLibtorch(): { root: string } };

const FAMILIES = ['gpt2', 'llama'] as const;
const EXPORTS = ['traced', 'scripted'] as const;

function ids(rows: number[][]): Tensor {
  return tensor(rows, { dtype: 'int64' });
}

describe.each(FAMILIES)('%s fixtures', (family) => {
  const ref = reference(`${family}.json`);

  describe.each(EXPORTS)('%s', (kind) => {
    const model = loadModel(fixture(`${family}_${kind}.pt`));
    afterAll(() => model.dispose());

    it('matches the logits of the original nn.Module to 1e-5', () => {
      for (const testCase of ref.cases) {
        const logits = model.forward(ids(testCase.input_ids)) as Tensor;
        expect(logits.shape).toEqual(testCase.shape);
        expect(maxAbsDiff(logits, testCase.logits)).toBeLessThan(1e-5);
      }
    });

    it('stays correct over repeated runs, once the executor has optimised the graph', () => {
      const testCase = ref.cases[0]!;
      for (let run = 0; run < 5; run++) {
        expect(maxAbsDiff(model.forward(ids(testCase.input_ids)) as Tensor, testCase.logits)).toBeLessThan(1e-5);
      }
    });

    it('lists every module of the original with its parameters', () => {
      const modules = model.modules();
      expect(modules.map((m) => m.path)).toEqual(ref.modules.map((m) => m.path));
      for (const [i, expected] of ref.modules.entries()) {
        expect(modules[i]!.parameters).toEqual(expected.parameters);
        // class names survive export (tracing mangles them; the mangling is removed)
        expect(modules[i]!.type.endsWith(expected.type)).toBe(true);
      }
    });

    it('exposes parameters as tensors sharing the model memory', () => {
      const params = model.parameters();
      let count = 0;
      for (const p of params.values()) count += p.numel;
      expect(count).toBe(ref.parameter_count);
      const head = params.get('lm_head.weight')!;
      expect(head.shape).toEqual([ref.config.vocab, ref.config.d_model]);
      // zeroing the unembedding through `data` must zero the logits: the memory is shared
      const saved = head.clone();
      (head.data as Float32Array).fill(0);
      const logits = model.forward(ids(ref.cases[0]!.input_ids)) as Tensor;
      expect(Math.max(...Array.from(logits.data as Float32Array, Math.abs))).toBe(0);
      head.write(saved.data);
      expect(maxAbsDiff(model.forward(ids(ref.cases[0]!.input_ids)) as Tensor, ref.cases[0]!.logits)).toBeLessThan(1e-5);
    });

    it('runs without an autograd graph unless asked', () => {
      const input = ids(ref.cases[0]!.input_ids);
      expect((model.forward(input) as Tensor).requiresGrad).toBe(false);
      expect((model.forward(input, { grad: true }) as Tensor).requiresGrad).toBe(true);
    });

    it('gives the same result on the inference thread', async () => {
      const testCase = ref.cases[0]!;
      const logits = (await model.forwardAsync(ids(testCase.input_ids))) as Tensor;
      expect(maxAbsDiff(logits, testCase.logits)).toBeLessThan(1e-5);
    });
  });
});

describe('model behaviour', () => {
  const gpt = loadModel(fixture('gpt2_traced.pt'));
  const ref = reference('gpt2.json');
  const input = () => ids(ref.cases[0]!.input_ids);

  it('describes itself', () => {
    expect(gpt.device).toBe('cpu');
    expect(gpt.signature).toMatch(/^forward\(Tensor \w+\) -> Tensor$/);
    expect(gpt.training).toBe(false);
  });

  it('runs concurrent async forwards correctly', async () => {
    const results = await Promise.all(ref.cases.flatMap((c) => Array.from({ length: 8 }, () => gpt.forwardAsync(ids(c.input_ids)))));
    results.forEach((logits, i) => {
      const c = ref.cases[Math.floor(i / 8)]!;
      expect(maxAbsDiff(logits as Tensor, c.logits)).toBeLessThan(1e-5);
    });
  });

  it('rejects an already-aborted signal and cancels queued forwards', async () => {
    const aborted = AbortSignal.abort(new Error('stop now'));
    await expect(gpt.forwardAsync(input(), { signal: aborted })).rejects.toThrow('stop now');

    const controller = new AbortController();
    // The first forward's hook needs the JS thread, which is busy here until the await: the
    // inference thread cannot start the queued forwards before the abort, however fast it is.
    const first = gpt.forwardAsync(input(), { hooks: { output: () => undefined } });
    const queued = Array.from({ length: 4 }, () => gpt.forwardAsync(input(), { signal: controller.signal }));
    controller.abort(new Error('cancelled by test'));
    await first;
    const settled = await Promise.allSettled(queued);
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    for (const r of settled) expect((r as PromiseRejectedResult).reason.message).toBe('cancelled by test');
  });

  it('copies JS-backed inputs for async forwards, so the caller may reuse its buffer', async () => {
    const buffer = new BigInt64Array(ref.cases[0]!.input_ids.flat().map(BigInt));
    const shared = (await import('../lib/index')).fromTypedArray(buffer, [2, 8]);
    const pending = gpt.forwardAsync(shared);
    buffer.fill(0n);
    expect(maxAbsDiff((await pending) as Tensor, ref.cases[0]!.logits)).toBeLessThan(1e-5);
  });

  it('fails a wrong input dtype with ForwardError and stays usable', () => {
    const floats = tensor(ref.cases[0]!.input_ids);
    const error = expectThrows(() => gpt.forward(floats), ForwardError, /forward\(float32 \[2, 8\]\) failed/, /Long|scalar type/i);
    expect(error.message).not.toMatch(/Traceback/);
    expect(maxAbsDiff(gpt.forward(input()) as Tensor, ref.cases[0]!.logits)).toBeLessThan(1e-5);
  });

  it('fails a wrong input rank with ForwardError, sync and async', async () => {
    const rank3 = tensor(new BigInt64Array(16), [2, 2, 4]);
    expectThrows(() => gpt.forward(rank3), ForwardError, /forward\(int64 \[2, 2, 4\]\) failed/);
    await expectRejects(gpt.forwardAsync(rank3), ForwardError, /forward\(int64 \[2, 2, 4\]\) failed/);
    const scripted = loadModel(fixture('gpt2_scripted.pt'));
    expectThrows(() => scripted.forward(tensor(new BigInt64Array(8), [8])), ForwardError, /forward\(int64 \[8\]\) failed/);
    expect(maxAbsDiff(scripted.forward(input()) as Tensor, ref.cases[0]!.logits)).toBeLessThan(1e-5);
  });

  it('checks arguments against the declared signature', () => {
    expectThrows(() => gpt.forward([]), InvalidArgumentError, /missing argument 0/, /Tensor/);
    expectThrows(() => gpt.forward([input(), input()]), InvalidArgumentError, /takes 1 argument\(s\) but got 2/);
    expectThrows(() => gpt.forward(3), InvalidArgumentError, /argument 0 '\w+': expected Tensor, got a number/);
  });

  it("types forward's output: a Tensor by default, what loadModel is told otherwise (npm test typechecks this file)", async () => {
    using model = loadModel(fixture('gpt2_traced.pt'));
    // compiles without a cast: the default output is a Tensor
    const logits = model.forward(input());
    expect(logits.shape).toEqual([2, 8, 64]);
    const later = await model.forwardAsync(input());
    expect(later.shape).toEqual([2, 8, 64]);
    const none: null = model.forward(input(), { output: false });
    expect(none).toBeNull();
    using wide = loadModel<ModelOutput>(fixture('gpt2_traced.pt'));
    // @ts-expect-error the union has no shape until it is narrowed
    expect(wide.forward(input()).shape).toEqual([2, 8, 64]);
    const out = wide.forward(input());
    if (out instanceof Tensor) expect(out.rank).toBe(3);
  });

  it('fails use after dispose with DisposedError', async () => {
    const model = loadModel(fixture('gpt2_traced.pt'));
    model.dispose();
    expect(model.disposed).toBe(true);
    expectThrows(() => model.forward(input()), DisposedError, /Model.forward: the model was disposed/);
    await expectRejects(model.forwardAsync(input()), DisposedError, /disposed/);
    expectThrows(() => model.modules(), DisposedError);
  });

  it('rejects forwards queued when the model is disposed', async () => {
    const model = loadModel(fixture('gpt2_traced.pt'));
    const pending = Array.from({ length: 6 }, () => model.forwardAsync(input()));
    model.dispose();
    const settled = await Promise.allSettled(pending);
    for (const s of settled) {
      if (s.status === 'rejected') expect(s.reason).toBeInstanceOf(DisposedError);
    }
  });

  it('switches between eval and train', () => {
    const dropout = loadModel(fixture('dropout.pt'));
    const x = tensor(new Float32Array(1000).fill(1), [1000]);
    expect(dropout.training).toBe(false);
    expect(numbers((dropout.forward(x) as Tensor).data)).toEqual(numbers(x.data));
    dropout.train();
    expect(dropout.training).toBe(true);
    const dropped = (dropout.forward(x) as Tensor).data as Float32Array;
    const zeros = dropped.filter((v) => v === 0).length;
    expect(zeros).toBeGreaterThan(300);
    expect(zeros).toBeLessThan(700);
    dropout.eval();
    expect(numbers((dropout.forward(x) as Tensor).data)).toEqual(numbers(x.data));
    expect(loadModel(fixture('dropout.pt'), { training: true }).training).toBe(true);
  });

  it('keeps the CPU fuser off by default and lets it be switched', () => {
    expect(runtimeInfo().cpuFusion).toBe(false);
    setCpuFusion(true);
    expect(runtimeInfo().cpuFusion).toBe(true);
    setCpuFusion(false);
    expect(runtimeInfo().cpuFusion).toBe(false);
    expectThrows(() => setCpuFusion('yes' as never), InvalidArgumentError, /setCpuFusion: expected a boolean/);
  });

  it('sets the intra-op thread count', () => {
    const previous = getNumThreads();
    setNumThreads(2);
    expect(getNumThreads()).toBe(2);
    // Debian's libtorch uses OpenBLAS, whose own pool follows (pip's torch has its own BLAS)
    const debianLibtorch = !process.env.EASYROUTINE_ADDON && !runtimeInfo().cudaBuild && findLibtorch().root.startsWith('/usr/');
    if (debianLibtorch) expect(runtimeInfo().openBlasThreads).toBe(2);
    setNumThreads(1);
    if (debianLibtorch) expect(runtimeInfo().openBlasThreads).toBe(1);
    setNumThreads(previous);
    expectThrows(() => setNumThreads(0), InvalidArgumentError, /integer from 1 to 1024/);
  });
});

describe('structured inputs and outputs', () => {
  const model = loadModel<ModelOutput[]>(fixture('structured.pt'));
  const x = tensor([1, 2, 3]);
  const a = tensor([10, 20, 30]);
  const b = tensor([1, 1, 1]);

  it('converts tuples, lists, dicts, optionals and scalars both ways', () => {
    const out = model.forward([x, [a, b], [a, b], 3, x, { p: a, q: b }, 'hello', 4, true]) as ModelOutput[];
    const [scaled, pairs, dict, count, label, flag, mask] = out as [Tensor, Tensor[], Record<string, Tensor>, number, string, boolean, Tensor];
    expect(scaled.toArray()).toEqual([3, 6, 9]);
    expect(pairs.map((t) => t.toArray())).toEqual([
      [11, 21, 31],
      [9, 19, 29],
    ]);
    expect(Object.keys(dict).sort()).toEqual(['masked', 'named', 'total']);
    expect(dict.total!.toArray()).toEqual([12, 23, 34]);
    expect(dict.masked!.toArray()).toEqual([1, 4, 9]);
    expect(dict.named!.toArray()).toEqual([11, 21, 31]);
    expect(count).toBe(8);
    expect(label).toBe('hello');
    expect(flag).toBe(false);
    expect(mask.toArray()).toEqual([1, 2, 3]);
  });

  it('fills declared defaults and returns None as null', () => {
    const out = model.forward([x, [a, b], []]) as ModelOutput[];
    expect((out[0] as Tensor).toArray()).toEqual([2, 4, 6]);
    expect(out[3]).toBe(0);
    expect(out[4]).toBe('none');
    expect(out[5]).toBe(true);
    expect(out[6]).toBeNull();
  });

  it('names the argument and the expected type on a mismatch', () => {
    expectThrows(() => model.forward([x, [a], []]), InvalidArgumentError, /argument 1 'pair': expected Tuple\[Tensor, Tensor\] with 2 elements/);
    expectThrows(() => model.forward([x, [a, b], [a, 5]]), InvalidArgumentError, /argument 2 'items'\[1\]: expected Tensor, got a number/);
    expectThrows(() => model.forward([x, [a, b], [], 'big']), InvalidArgumentError, /argument 3 'scale': expected float, got a string/);
    expectThrows(() => model.forward([x, [a, b], [], 1, null, null, 'l', 1.5]), InvalidArgumentError, /'count': expected an integer/);
    expectThrows(() => model.forward([new Float32Array(3) as never, [a, b], []]), InvalidArgumentError, /TypedArray \(wrap it with tensor\(\) first\)/);
  });

  it('returns non-string-keyed dicts as Maps and traced tuples as arrays', () => {
    const intKeyed = loadModel<Map<number, Tensor>>(fixture('int_keyed.pt')).forward(x);
    expect(intKeyed).toBeInstanceOf(Map);
    expect(intKeyed.get(1)!.toArray()).toEqual([2, 3, 4]);
    const ref = reference<{ x: number[]; y0: number[]; y1: number[] }>('tuple_traced.json');
    const [y0, y1] = loadModel<Tensor[]>(fixture('tuple_traced.pt')).forward(tensor(new Float32Array(ref.x), [2, 4]));
    expect(maxAbsDiff(y0!, ref.y0)).toBeLessThan(1e-6);
    expect(maxAbsDiff(y1!, ref.y1)).toBeLessThan(1e-6);
  });
});

describe('loading bad files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-load-'));
  const good = fs.readFileSync(fixture('gpt2_traced.pt'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('names a missing file', () => {
    expectThrows(() => loadModel(path.join(dir, 'nope.pt')), ModelLoadError, /no such file '.*nope\.pt'/);
  });

  it('names a directory', () => {
    expectThrows(() => loadModel(dir), ModelLoadError, /is a directory; expected a TorchScript file/);
  });

  it('names a file that is not TorchScript', () => {
    const text = path.join(dir, 'notes.txt');
    fs.writeFileSync(text, 'hello world, not a model');
    expectThrows(() => loadModel(text), ModelLoadError, /is not a TorchScript archive \(not a zip file\)/, /torch\.jit\.save/);
    const empty = path.join(dir, 'empty.pt');
    fs.writeFileSync(empty, '');
    expectThrows(() => loadModel(empty), ModelLoadError, /not a TorchScript archive/);
  });

  it('names a truncated archive', () => {
    const truncated = path.join(dir, 'truncated.pt');
    fs.writeFileSync(truncated, good.subarray(0, Math.floor(good.length / 2)));
    expectThrows(() => loadModel(truncated), ModelLoadError, /truncated\.pt' is damaged: it is truncated/);
  });

  it('names a damaged entry by its CRC-32, and can skip the check for trusted files', () => {
    const damaged = path.join(dir, 'damaged.pt');
    const bytes = Buffer.from(good);
    const data = bytes.indexOf('data.pkl') + 200; // inside the pickled module record
    bytes[data] = bytes[data]! ^ 0xff;
    fs.writeFileSync(damaged, bytes);
    expectThrows(() => loadModel(damaged), ModelLoadError, /is damaged: entry '[^']+' does not match its CRC-32/);
    const trusted = loadModel(fixture('gpt2_traced.pt'), { verifyChecksums: false });
    expect(trusted.modules().length).toBeGreaterThan(1);
  });

  it('names a zip that holds no model', () => {
    // the local header of a zip with no TorchScript entries: a valid zip that is not a model
    const zip = Buffer.from('504b0506000000000000000000000000000000000000', 'hex');
    const file = path.join(dir, 'other.zip');
    fs.writeFileSync(file, Buffer.concat([Buffer.from('504b0304', 'hex'), zip]));
    expectThrows(() => loadModel(file), ModelLoadError, /is damaged: the zip archive holds no entries/);
  });

  it('rejects CUDA where there is none and bad device names', () => {
    if (!runtimeInfo().cudaAvailable) {
      expectThrows(() => loadModel(fixture('gpt2_traced.pt'), { device: 'cuda' }), DeviceError, /'cuda' requested but CUDA is not available/);
    }
    expectThrows(() => loadModel(fixture('gpt2_traced.pt'), { device: 'gpu' as never }), DeviceError, /unknown device 'gpu'/);
    expectThrows(() => loadModel(42 as never), InvalidArgumentError, /path must be a string/);
  });
});

describe('loadModel options', () => {
  it('a non-boolean flag or a non-string device is an InvalidArgumentError naming the option', () => {
    expectThrows(() => loadModel(fixture('gpt2_traced.pt'), { training: 'yes' as never }), InvalidArgumentError, /options\.training must be a boolean, got string "yes"/);
    expectThrows(() => loadModel(fixture('gpt2_traced.pt'), { verifyChecksums: 1 as never }), InvalidArgumentError, /options\.verifyChecksums must be a boolean/);
    expectThrows(() => loadModel(fixture('gpt2_traced.pt'), { device: 0 as never }), InvalidArgumentError, /options\.device must be a string/);
    expect(loadModel(fixture('gpt2_traced.pt'), { training: false }).training).toBe(false);
  });
});
