import { describe, expect, it } from 'vitest';
import {
  DisposedError,
  DTypeError,
  InvalidArgumentError,
  ShapeError,
  loadModel,
  nativeHook,
  nativeHookKernels,
  tensor,
  type HookContext,
  type Model,
  type Tensor,
} from '../lib/index';
import { expectThrows, fixture, maxDiffToReference, numbers, reference, type FamilyReference, type HookReference } from './helpers';

const FAMILIES = [
  { family: 'gpt2', blocks: 'transformer.h', attn: 'attn' },
  { family: 'llama', blocks: 'model.layers', attn: 'self_attn' },
] as const;
const EXPORTS = ['traced', 'scripted'] as const;

function idsOf(family: string): Tensor {
  return tensor(reference<FamilyReference>(`${family}.json`).cases[0]!.input_ids, { dtype: 'int64' });
}

function logitsOf(output: unknown): Tensor {
  return output as Tensor;
}

/** Every reference point seen through one `record` kernel in one forward. */
function recordAll(model: Model, points: string[], input: Tensor): Map<string, Tensor> {
  const recorder = nativeHook('record');
  const hooks = Object.fromEntries(points.map((p) => [p, recorder]));
  model.forward(input, { hooks });
  const seen = new Map<string, Tensor>();
  for (const [point, value] of recorder.results() as [string, Tensor][]) if (!seen.has(point)) seen.set(point, value);
  return seen;
}

describe.each(FAMILIES)('hook points of the $family family', ({ family, blocks, attn }) => {
  const refs = reference<HookReference>(`${family}_hooks.json`);
  const ids = idsOf(family);

  describe.each(EXPORTS)('%s', (exportKind) => {
    const model = loadModel(fixture(`${family}_${exportKind}.pt`));

    it('lists every module input/output and the attention internals, in forward order', () => {
      const points = model.hookPoints();
      const names = points.map((p) => p.name);
      for (const name of Object.keys(refs.points)) expect(names, name).toContain(name);
      expect(names[0]).toBe('input');
      expect(names.at(-1)).toBe('output');
      expect(new Set(names).size).toBe(names.length);
      const pattern = points.find((p) => p.name === `${blocks}.1.${attn}:pattern`)!;
      expect(pattern).toMatchObject({ module: `${blocks}.1.${attn}`, kind: 'pattern', layer: 1 });
      expect(pattern.type).toMatch(/Attention$/);
      expect(names.indexOf(`${blocks}.0.${attn}:queries`)).toBeLessThan(names.indexOf(`${blocks}.0.${attn}:pattern`));
      expect(names.indexOf(`${blocks}.0.${attn}:pattern`)).toBeLessThan(names.indexOf(`${blocks}.1.${attn}:queries`));
    });

    it('reports each point shape for a given input', () => {
      const shapes = model.hookPointShapes(ids);
      for (const [name, value] of Object.entries(refs.points)) expect(shapes.get(name), name).toEqual(value.shape);
    });

    it('sees at every point what PyTorch hooks (and the same computation in Python) see', () => {
      const names = Object.keys(refs.points);
      const seen = recordAll(model, names, ids);
      for (const name of names) {
        expect(seen.has(name), name).toBe(true);
        expect(maxDiffToReference(seen.get(name)!, refs.points[name]!), name).toBeLessThan(1e-5);
      }
    });

    it('with taps and hooks that change nothing, the output is bit-identical to the untouched forward', () => {
      const plain = logitsOf(model.forward(ids)).toFloat32Array();
      const hooks = Object.fromEntries(model.hookPoints().map((p) => [p.name, () => undefined]));
      const tapped = logitsOf(model.forward(ids, { hooks })).toFloat32Array();
      expect(Buffer.from(tapped.buffer).equals(Buffer.from(plain.buffer))).toBe(true);
    });

    it('zeroing one head of the pattern in place changes the logits as the same edit in Python', () => {
      const logits = model.forward(ids, {
        hooks: {
          [`${blocks}.1.${attn}:pattern`]: (pattern) => {
            const [b, h, q, k] = pattern.shape as [number, number, number, number];
            const data = pattern.data as Float32Array;
            for (let bi = 0; bi < b; bi++) data.fill(0, (bi * h + 2) * q * k, (bi * h + 3) * q * k);
          },
        },
      });
      const edited = refs.edits['zero_head_1_2']!;
      expect(maxDiffToReference(logitsOf(logits), edited)).toBeLessThan(1e-5);
      expect(maxDiffToReference(logitsOf(model.forward(ids)), edited)).toBeGreaterThan(1e-3);
    });

    it('replacing a residual position by returning a new tensor changes the logits as in Python', () => {
      const logits = model.forward(ids, {
        hooks: {
          [`${blocks}.0:output`]: (resid) => {
            const copy = resid.clone();
            const data = copy.data as Float32Array;
            const [b, t, d] = copy.shape as [number, number, number];
            for (let bi = 0; bi < b; bi++) data.copyWithin((bi * t + 3) * d, (bi * t + 5) * d, (bi * t + 6) * d);
            return copy;
          },
        },
      });
      expect(maxDiffToReference(logitsOf(logits), refs.edits['copy_resid_0_5_to_3']!)).toBeLessThan(1e-5);
    });

    it('runs the same hooks from the inference thread with the same results', async () => {
      const seenSync: number[][] = [];
      const seenAsync: number[][] = [];
      const point = `${blocks}.0.${attn}:scores`;
      const sync = model.forward(ids, { hooks: { [point]: (v) => void seenSync.push(numbers(v.toFloat32Array())) } });
      const async_ = await model.forwardAsync(ids, { hooks: { [point]: (v) => void seenAsync.push(numbers(v.toFloat32Array())) } });
      expect(seenAsync).toEqual(seenSync);
      expect(numbers(logitsOf(async_).toFloat32Array())).toEqual(numbers(logitsOf(sync).toFloat32Array()));
    });
  });
});

describe('hook API', () => {
  const model = loadModel(fixture('gpt2_traced.pt'));
  const ids = idsOf('gpt2');
  const plain = numbers(logitsOf(model.forward(ids)).toFloat32Array());
  const mlpOut = 'transformer.h.0.mlp:output';

  it('passes the point as context, with module path and layer', () => {
    const contexts: HookContext[] = [];
    model.forward(ids, { hooks: { 'transformer.h.1.attn:pattern': (_, c) => void contexts.push(c), input: (_, c) => void contexts.push(c) } });
    expect(contexts.map((c) => c.name).sort()).toEqual(['input', 'transformer.h.1.attn:pattern']);
    const pattern = contexts.find((c) => c.kind === 'pattern')!;
    expect(pattern).toMatchObject({ module: 'transformer.h.1.attn', layer: 1 });
    expect(contexts.find((c) => c.kind === 'input')).toMatchObject({ module: '', layer: null });
  });

  it('runs persistent hooks first, in the order added, then per-call hooks in array order', () => {
    const order: string[] = [];
    const first = model.addHook(mlpOut, () => void order.push('persistent 1'));
    const second = model.addHook(mlpOut, (v) => {
      order.push('persistent 2');
      return v.clone();
    });
    model.forward(ids, { hooks: { [mlpOut]: [() => void order.push('call 1'), () => void order.push('call 2')] } });
    expect(order).toEqual(['persistent 1', 'persistent 2', 'call 1', 'call 2']);
    first.remove();
    first.remove();
    order.length = 0;
    model.forward(ids);
    expect(order).toEqual(['persistent 2']);
    second[Symbol.dispose]();
    order.length = 0;
    model.forward(ids);
    expect(order).toEqual([]);
    expect(model.hooks).toEqual([]);
  });

  it('a frozen hook map runs its hooks on every forward, after persistent hooks added, removed or cleared since', () => {
    const order: string[] = [];
    const frozen = Object.freeze({ [mlpOut]: Object.freeze([() => void order.push('frozen')]) });
    const run = () => {
      order.length = 0;
      model.forward(ids, { hooks: frozen });
      return [...order];
    };
    expect(run()).toEqual(['frozen']);
    const persistent = model.addHook(mlpOut, () => void order.push('persistent'));
    expect(run()).toEqual(['persistent', 'frozen']);
    persistent.remove();
    expect(run()).toEqual(['frozen']);
    model.addHook(mlpOut, () => void order.push('again'));
    expect(run()).toEqual(['again', 'frozen']);
    model.clearHooks();
    expect(run()).toEqual(['frozen']);
    model.train().eval();
    expect(run()).toEqual(['frozen']);
  });

  it('lends the value for the duration of the hook: kept handles throw, clones and data views stay', async () => {
    const kept: Tensor[] = [];
    const clones: Tensor[] = [];
    const views: Float32Array[] = [];
    const hooks = {
      [mlpOut]: (v: Tensor) => {
        kept.push(v);
        clones.push(v.clone());
        views.push(v.data as Float32Array);
      },
      'transformer.h.1.mlp:output': (v: Tensor) => void kept.push(v),
    };
    model.forward(ids, { hooks });
    await model.forwardAsync(ids, { hooks });
    expect(kept).toHaveLength(4);
    for (const value of kept) expectThrows(() => value.shape, DisposedError, /value at hook point '.*' is only valid during the hook; clone\(\) it to keep it/);
    expect(clones.map((c) => c.shape)).toEqual([[2, 8, 32], [2, 8, 32]]);
    expect(numbers(clones[1]!.toFloat32Array())).toEqual(numbers(clones[0]!.toFloat32Array()));
    expect(numbers(views[0]!)).toEqual(numbers(clones[0]!.toFloat32Array()));
  });

  it('each hook sees the value the previous one left', () => {
    const seen: number[] = [];
    model.forward(ids, {
      hooks: {
        [mlpOut]: [
          (v) => {
            const out = v.clone();
            (out.data as Float32Array).fill(2);
            return out;
          },
          (v) => void seen.push((v.data as Float32Array)[0]!),
        ],
      },
    });
    expect(seen).toEqual([2]);
  });

  it('clearHooks removes all hooks or those of one point', () => {
    model.addHook(mlpOut, () => undefined);
    model.addHook('output', () => undefined);
    model.clearHooks(mlpOut);
    expect(model.hooks.map((h) => h.point)).toEqual(['output']);
    model.clearHooks();
    expect(model.hooks).toEqual([]);
  });

  it('rejects unknown points with the closest names', () => {
    const error = expectThrows(() => model.addHook('transformer.h.0.atn:pattern', () => undefined), InvalidArgumentError, /unknown hook point/);
    expect(error.message).toContain("'transformer.h.0.attn:pattern'");
    expectThrows(() => model.forward(ids, { hooks: { 'transformer.h.9:output': () => undefined } }), InvalidArgumentError, /did you mean 'transformer\.h\.0:output'/);
    expectThrows(() => model.forward(ids, { hooks: { output: 42 as never } }), InvalidArgumentError, /must be a function or a NativeHook/);
  });

  it('checks replacements: shape, dtype, and what a hook may return', () => {
    expectThrows(() => model.forward(ids, { hooks: { [mlpOut]: () => tensor([1, 2, 3]) } }), ShapeError, /mlp:output' returned float32 \[3\]; the value is float32 \[2, 8, 32\]/);
    expectThrows(() => model.forward(ids, { hooks: { [mlpOut]: (v) => v.to('float64') } }), DTypeError, /returned float64/);
    expectThrows(() => model.forward(ids, { hooks: { [mlpOut]: (() => 5) as never } }), InvalidArgumentError, /returned number/);
    expectThrows(() => model.forward(ids, { hooks: { [mlpOut]: (async () => undefined) as never } }), InvalidArgumentError, /Promise/);
    expect(numbers(logitsOf(model.forward(ids)).toFloat32Array())).toEqual(plain);
  });

  it.each([['an Error', new RangeError('stop here')], ['a string', 'stop'], ['a number', 42], ['null', null], ['undefined', undefined], ['a plain object', { why: 'stop' }]])(
    'a hook that throws %s: the forward throws (and forwardAsync rejects with) that very value; the model stays usable',
    async (_, thrown) => {
      let caught: unknown = 'nothing thrown';
      try {
        model.forward(ids, { hooks: { [mlpOut]: () => { throw thrown; } } });
      } catch (error) {
        caught = error;
      }
      expect(caught).toBe(thrown);
      await expect(model.forwardAsync(ids, { hooks: { [mlpOut]: () => { throw thrown; } } })).rejects.toBe(thrown);
      expect(numbers(logitsOf(model.forward(ids)).toFloat32Array())).toEqual(plain);
      expect(numbers(logitsOf(await model.forwardAsync(ids)).toFloat32Array())).toEqual(plain);
    },
  );

  it('applies the forward\'s grad mode while hooks run on the JS thread for an async forward', async () => {
    const weight = model.parameters().get('lm_head.weight')!;
    expect(weight.requiresGrad).toBe(true);
    const seen: boolean[] = [];
    const hooks = { [mlpOut]: () => void seen.push(weight.clone().requiresGrad) };
    await model.forwardAsync(ids, { hooks });
    await model.forwardAsync(ids, { hooks, grad: true });
    model.forward(ids, { hooks });
    expect(seen).toEqual([false, true, false]);
  });

  it('cancels between hook calls when the signal aborts', async () => {
    const controller = new AbortController();
    const calls: string[] = [];
    const hooks = {
      'transformer.h.0:output': () => {
        calls.push('h.0');
        controller.abort(new Error('enough'));
      },
      'transformer.h.1:output': () => void calls.push('h.1'),
    };
    await expect(model.forwardAsync(ids, { hooks, signal: controller.signal })).rejects.toThrow('enough');
    expect(calls).toEqual(['h.0']);
    expect(numbers(logitsOf(await model.forwardAsync(ids)).toFloat32Array())).toEqual(plain);
  });

  it('gives correct results to concurrent async forwards with different edits', async () => {
    const scales = [0, 0.5, 1, 2, 3];
    const scaled = (factor: number) => ({ [mlpOut]: (v: Tensor) => void (v.data as Float32Array).forEach((x, i, a) => (a[i] = x * factor)) });
    const expected = scales.map((s) => numbers(logitsOf(model.forward(ids, { hooks: scaled(s) })).toFloat32Array()));
    const results = await Promise.all(scales.map((s) => model.forwardAsync(ids, { hooks: scaled(s) })));
    expect(results.map((r) => numbers(logitsOf(r).toFloat32Array()))).toEqual(expected);
  });

  it('runs native kernels: record and scale match the same work done by JS closures', async () => {
    expect(Object.keys(nativeHookKernels())).toEqual(expect.arrayContaining(['record', 'scale']));
    const recorder = nativeHook('record');
    const viaJs: number[][] = [];
    model.forward(ids, { hooks: { 'transformer.h.0.attn:pattern': [recorder, (v) => void viaJs.push(numbers(v.toFloat32Array()))] } });
    await model.forwardAsync(ids, { hooks: { 'transformer.h.0.attn:pattern': recorder } });
    const records = recorder.results() as [string, Tensor][];
    expect(records.map(([p]) => p)).toEqual(['transformer.h.0.attn:pattern', 'transformer.h.0.attn:pattern']);
    expect(numbers(records[0]![1].toFloat32Array())).toEqual(viaJs[0]);
    recorder.reset();
    expect(recorder.results()).toEqual([]);

    const native = numbers(logitsOf(model.forward(ids, { hooks: { [mlpOut]: nativeHook('scale', { factor: 0.5 }) } })).toFloat32Array());
    const js = numbers(logitsOf(model.forward(ids, { hooks: { [mlpOut]: (v) => void (v.data as Float32Array).forEach((x, i, a) => (a[i] = x * 0.5)) } })).toFloat32Array());
    expect(native).toEqual(js);
    expectThrows(() => nativeHook('nope'), InvalidArgumentError, /unknown kernel 'nope'; registered kernels: .*'record'/);
    expectThrows(() => nativeHook('scale', {}), InvalidArgumentError, /options.factor must be a number/);
  });

  it('follows changes to a hook map reused across forwards (hook sets are kept between forwards)', () => {
    const calls: string[] = [];
    const hooks: Record<string, ((v: Tensor) => void) | ((v: Tensor) => void)[]> = { [mlpOut]: () => void calls.push('a') };
    model.forward(ids, { hooks });
    model.forward(ids, { hooks });
    hooks[mlpOut] = () => void calls.push('b');
    model.forward(ids, { hooks });
    hooks['transformer.h.1:output'] = () => void calls.push('c');
    model.forward(ids, { hooks });
    const list = [() => void calls.push('d')];
    hooks[mlpOut] = list;
    model.forward(ids, { hooks });
    list.push(() => void calls.push('e'));
    model.forward(ids, { hooks });
    delete hooks['transformer.h.1:output'];
    model.forward(ids, { hooks });
    expect(calls).toEqual(['a', 'a', 'b', 'b', 'c', 'd', 'c', 'd', 'e', 'c', 'd', 'e']);
    const taps = ['transformer.h.0:output'];
    model.forward(ids, { taps });
    taps.push('nope');
    expectThrows(() => model.forward(ids, { taps }), InvalidArgumentError, /unknown hook point 'nope'/);
    const persistent = model.addHook(mlpOut, () => void calls.push('p'));
    calls.length = 0;
    model.forward(ids, { hooks });
    persistent.remove();
    model.forward(ids, { hooks });
    expect(calls).toEqual(['p', 'd', 'e', 'd', 'e']);
  });

  it('lends each forward its own value when a hook of an async forward runs a forward with the same hooks', async () => {
    let depth = 0;
    const outer: number[][] = [];
    const inner: number[][] = [];
    const hooks = {
      [mlpOut]: (v: Tensor) => {
        if (depth > 0) return void inner.push(numbers(v.toFloat32Array()));
        depth++;
        const before = numbers(v.toFloat32Array());
        model.forward(ids, { hooks: { ...hooks } }).dispose();
        model.forward(ids, { hooks }).dispose();
        depth--;
        outer.push(before, numbers(v.toFloat32Array()));
      },
    };
    await model.forwardAsync(ids, { hooks });
    expect(inner).toHaveLength(2);
    expect(outer).toHaveLength(2);
    expect(outer[1]).toEqual(outer[0]);
    expect(inner[0]).toEqual(outer[0]);
  });

  it('runs every hook of an async forward in order, handed to the JS thread while it waits, and stops at the one that throws', async () => {
    const points = model.hookPoints().map((p) => p.name);
    const seen: string[] = [];
    const record = (_: Tensor, c: HookContext) => void seen.push(c.name);
    const all = Object.fromEntries(points.map((p) => [p, record]));
    await model.forwardAsync(ids, { hooks: all });
    expect(seen).toEqual(points);
    seen.length = 0;
    const failing = { ...all, [points[9]!]: () => { throw new Error('hook 10 fails'); } };
    await expect(model.forwardAsync(ids, { hooks: failing })).rejects.toThrow('hook 10 fails');
    expect(seen).toEqual(points.slice(0, 9));
    expect(numbers(logitsOf(await model.forwardAsync(ids, { hooks: all })).toFloat32Array())).toEqual(plain);
  });

  it('taps extra points without hooks: same output, and hooks on any subset share the graph', () => {
    const taps = model.hookPoints().map((p) => p.name);
    expect(numbers(logitsOf(model.forward(ids, { taps })).toFloat32Array())).toEqual(plain);
    const seen: string[] = [];
    model.forward(ids, { taps, hooks: { output: (_, c) => void seen.push(c.name) } });
    expect(seen).toEqual(['output']);
    expectThrows(() => model.forward(ids, { taps: ['nope'] }), InvalidArgumentError, /unknown hook point 'nope'/);
    expectThrows(() => model.forward(ids, { taps: 'output' as never }), InvalidArgumentError, /options.taps must be an array/);
  });

  it('with output: false returns null, and its hooks still see the values', async () => {
    const record = nativeHook('record');
    expect(model.forward(ids, { output: false, hooks: { output: record } })).toBeNull();
    // the model's output as PyTorch's forward hook saw it on the original module
    const expected = reference<HookReference>('gpt2_hooks.json').points.output!;
    const recorded = () => (record.results() as [string, Tensor][])[0]![1];
    expect(maxDiffToReference(recorded(), expected)).toBeLessThan(1e-5);
    record.reset();
    expect(await model.forwardAsync(ids, { output: false, hooks: { output: record } })).toBeNull();
    expect(maxDiffToReference(recorded(), expected)).toBeLessThan(1e-5);
    expect(model.forward(ids, { output: false })).toBeNull();
    expect(numbers(logitsOf(model.forward(ids, { output: true })).toFloat32Array())).toEqual(plain);
    expectThrows(() => model.forward(ids, { output: 0 as never }), InvalidArgumentError, /options.output must be a boolean/);
  });

  it('builds a graph with taps at the requested points only and every module call inlined', () => {
    const { graph, buildMilliseconds } = model.hookedGraph(['transformer.h.0.attn:pattern', mlpOut]);
    expect(graph.match(/easyroutine::tap/g)).toHaveLength(2);
    expect(graph).not.toContain('prim::CallMethod');
    expect(buildMilliseconds).toBeGreaterThan(0);
  });
});

describe('scripted control flow: shared types, attribute-driven branches, sub-blocks, dict outputs', () => {
  const refs = reference<HookReference>('branchy_hooks.json');
  const ids = tensor(refs.input_ids!, { dtype: 'int64' });
  const model = loadModel<Record<string, Tensor>>(fixture('branchy_scripted.pt'));

  it('finds attention inside a branch of each instance and sees what Python sees', () => {
    const names = model.hookPoints().map((p) => p.name);
    expect(names).toEqual(expect.arrayContaining(['blocks.0:pattern', 'blocks.1:pattern', 'output.logits', 'output.hidden']));
    const seen = recordAll(model, Object.keys(refs.points), ids);
    for (const [name, value] of Object.entries(refs.points)) expect(maxDiffToReference(seen.get(name)!, value), name).toBeLessThan(1e-5);
  });

  it('edits the pattern inside the branch', () => {
    const out = model.forward(ids, {
      hooks: {
        'blocks.0:pattern': (p) => {
          const [b, h, q, k] = p.shape as [number, number, number, number];
          for (let bi = 0; bi < b; bi++) (p.data as Float32Array).fill(0, (bi * h + 1) * q * k, (bi * h + 2) * q * k);
        },
      },
    }) as Record<string, Tensor>;
    expect(maxDiffToReference(out['logits']!, refs.edits['zero_head_0_1']!)).toBeLessThan(1e-5);
  });

  it('rebuilds hooked graphs on train() and eval()', () => {
    const point = 'blocks.0:pattern';
    expect(model.hookedGraph([point]).graph).not.toContain('aten::dropout');
    model.train();
    try {
      expect(model.hookedGraph([point]).graph).toContain('aten::dropout');
    } finally {
      model.eval();
    }
    const seen = recordAll(model, [point], ids);
    expect(maxDiffToReference(seen.get(point)!, refs.points[point]!)).toBeLessThan(1e-5);
  });
});

describe('tuple outputs', () => {
  it('taps each element of a tuple output', () => {
    const model = loadModel(fixture('tuple_traced.pt'));
    const ref = reference<{ x: number[]; y0: number[]; y1: number[] }>('tuple_traced.json');
    const names = model.hookPoints().map((p) => p.name);
    expect(names).toEqual(expect.arrayContaining(['output.0', 'output.1', 'lin:output']));
    const x = tensor(ref.x).reshape([2, 4]);
    const seen = recordAll(model, ['output.0', 'output.1'], x);
    expect(maxDiffToReference(seen.get('output.0')!, { shape: [2, 3], values: ref.y0 })).toBeLessThan(1e-6);
    expect(maxDiffToReference(seen.get('output.1')!, { shape: [2, 3], values: ref.y1 })).toBeLessThan(1e-6);
  });
});
