// Bad input, as a user would give it, across the API: each case must throw (or reject with) the named
// EasyroutineError subclass, with its stable code and a message naming what was wrong, and leave the
// process and the models usable. The cases of an area run in one child process (a crash shows as a
// signal, naming the case that was running, instead of taking vitest down); after every case a
// forward of the shared models must still give the same logits.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as er from '../lib/index';
import { fixture, root } from './helpers';

interface Case {
  what: string;
  /** The body of an async function of (er, ctx); it should throw. */
  code: string;
  error: keyof typeof er & `${string}Error`;
  message: RegExp;
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-bad-input-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

const c = (what: string, code: string, error: Case['error'], message: RegExp): Case => ({ what, code, error, message });

const AREAS: Record<string, Case[]> = {
  'tensor creation': [
    c('uint8 above 255', `er.tensor([300], { dtype: 'uint8' })`, 'DTypeError', /300.*uint8/),
    c('int8 below -128', `er.tensor([-200], { dtype: 'int8' })`, 'DTypeError', /-200.*int8/),
    c('int64 at 2^64', `er.tensor([2 ** 64], { dtype: 'int64' })`, 'DTypeError', /int64/),
    c('a fraction as int64', `er.tensor([1.5], { dtype: 'int64' })`, 'DTypeError', /1\.5.*int64/),
    c('NaN as int32', `er.tensor([NaN], { dtype: 'int32' })`, 'DTypeError', /NaN.*int32/),
    c('Infinity as int64', `er.tensor([Infinity], { dtype: 'int64' })`, 'DTypeError', /Infinity/),
    c('an unknown dtype', `er.tensor([1], { dtype: 'float8' })`, 'DTypeError', /float8/),
    c('a string element', `er.tensor([1, 'a'])`, 'InvalidArgumentError', /data\[1\] is string; expected a number, boolean or bigint/),
    c('an object element', `er.tensor([1, {}])`, 'InvalidArgumentError', /data\[1\] is object/),
    c('null inside the data', `er.tensor([1, null])`, 'InvalidArgumentError', /data\[1\] is object/),
    c('ragged rows', `er.tensor([[1, 2], [3]])`, 'ShapeError', /ragged|same length|shape/),
    c('a string shape', `er.tensor(new Float32Array(4), '4')`, 'InvalidArgumentError', /shape/),
    c('a shape that does not match the data', `er.tensor(new Float32Array(4), [3])`, 'ShapeError', /4.*3|3.*4/),
    c('a negative dimension', `er.tensor(new Float32Array(4), [-4])`, 'ShapeError', /-4/),
    c('a fractional dimension', `er.tensor(new Float32Array(4), [2.5, 2])`, 'ShapeError', /shape\[0\] is 2\.5; a shape holds non-negative integers/),
    c('a typed array of another dtype', `er.fromTypedArray(new Float64Array(4), [4], { dtype: 'float32' })`, 'DTypeError', /Float64Array.*float32|float32.*Float64Array/),
    c('fromTypedArray of a plain array', `er.fromTypedArray([1, 2], [2])`, 'InvalidArgumentError', /typed array|TypedArray/),
    c('options that are not an object', `er.tensor([1], 5)`, 'InvalidArgumentError', /shape|options/),
    c('a bigint beyond int64', `er.tensor([2n ** 70n])`, 'DTypeError', /int64/),
    c('a symbol element', `er.tensor([Symbol('x')])`, 'InvalidArgumentError', /data\[0\] is symbol/),
  ],
  'tensor operations': [
    c('reshape to a wrong size', `er.tensor(new Float32Array(6), [2, 3]).reshape(4, 2)`, 'ShapeError', /\[4, 2\]|4.*2/),
    c('view of a non-contiguous tensor to a merging shape', `er.tensor(new Float32Array(6), [2, 3]).index('...', { start: 0, stop: 2 }).view(4)`, 'ShapeError', /view/),
    c('index beyond a dimension', `er.tensor(new Float32Array(6), [2, 3]).index(5)`, 'TensorIndexError', /5/),
    c('too many indices', `er.tensor(new Float32Array(6), [2, 3]).index(0, 0, 0)`, 'TensorIndexError', /too many|indices|dimension/),
    c('an index of a bad type', `er.tensor(new Float32Array(6), [2, 3]).index('x')`, 'TensorIndexError', /x|index/),
    c('a slice with a zero step', `er.tensor(new Float32Array(6), [2, 3]).index({ start: 0, stop: 2, step: 0 })`, 'TensorIndexError', /step/),
    c('item() of many elements', `er.tensor([1, 2]).item()`, 'ShapeError', /one element|2 elements|item/),
    c('to() an unknown device', `er.tensor([1]).to('tpu')`, 'DeviceError', /tpu/),
    c('to() an unknown dtype', `er.tensor([1]).to({ dtype: 'half' })`, 'DTypeError', /half/),
    c('write() of the wrong length', `er.tensor(new Float32Array(4), [4]).write(new Float32Array(3))`, 'ShapeError', /3.*4|4.*3/),
    c('write() of the wrong typed array', `er.tensor(new Float32Array(4), [4]).write(new Int32Array(4))`, 'DTypeError', /Int32Array|float32/),
    c('use after dispose', `const t = er.tensor([1]); t.dispose(); t.shape; t.toArray();`, 'DisposedError', /dispos/),
    c('cat of nothing', `er.cat([])`, 'InvalidArgumentError', /cat|empty|at least/),
    c('cat of mismatched shapes', `er.cat([er.tensor(new Float32Array(4), [2, 2]), er.tensor(new Float32Array(3), [1, 3])])`, 'ShapeError', /cat|size|shape/),
    c('cat on a dim out of range', `er.cat([er.tensor([1]), er.tensor([2])], 3)`, 'TensorIndexError', /dim|3/),
    c('stack of unequal shapes', `er.stack([er.tensor([1, 2]), er.tensor([1])])`, 'ShapeError', /stack|shape|size/),
    c('cat of a non-tensor', `er.cat([er.tensor([1]), [2]])`, 'InvalidArgumentError', /Tensor/),
    c('grad of a tensor that needs no grad', `er.grad(er.tensor([1]), [er.tensor([2])])`, 'InvalidArgumentError', /does not depend on anything that requires grad.*grad: true/),
    c('grad with inputs not an array', `er.grad(er.tensor([1]), er.tensor([2]))`, 'InvalidArgumentError', /inputs must be an array of Tensors/),
    c('sharesMemoryWith a non-tensor', `er.tensor([1]).sharesMemoryWith({})`, 'InvalidArgumentError', /Tensor/),
  ],
  'model files': [
    c('a missing file', `er.loadModel(ctx.tmp + '/none.pt')`, 'ModelLoadError', /no such file/),
    c('a directory', `er.loadModel(ctx.tmp)`, 'ModelLoadError', /is a directory/),
    c('an empty file', `ctx.write('empty.pt', Buffer.alloc(0)); er.loadModel(ctx.tmp + '/empty.pt')`, 'ModelLoadError', /not a TorchScript archive/),
    c('a text file', `ctx.write('text.pt', 'hello'); er.loadModel(ctx.tmp + '/text.pt')`, 'ModelLoadError', /not a TorchScript archive/),
    c('a truncated archive', `ctx.write('cut.pt', ctx.model_bytes.subarray(0, 5000)); er.loadModel(ctx.tmp + '/cut.pt')`, 'ModelLoadError', /damaged.*truncated|truncated/),
    c('flipped bits inside an entry', `const b = Buffer.from(ctx.model_bytes); b[2000] ^= 0xff; ctx.write('flip.pt', b); er.loadModel(ctx.tmp + '/flip.pt')`, 'ModelLoadError', /CRC-32|damaged/),
    c('a zip that is not TorchScript', `ctx.write('plain.zip', ctx.zip({ 'a.txt': Buffer.from('x') })); er.loadModel(ctx.tmp + '/plain.zip')`, 'ModelLoadError', /damaged or not a TorchScript model|TorchScript/),
    c('a storage record truncated in a valid zip', `ctx.write('short.pt', ctx.withRecord(/\\/data\\/0$/, (d) => d.subarray(0, 16))); er.loadModel(ctx.tmp + '/short.pt')`, 'ModelLoadError', /needs \d+ bytes but its storage record '[^']*\/data\/0' holds 16/),
    c('an emptied constant record in a valid zip', `ctx.write('noconst.pt', ctx.withRecord(/\\/constants\\/0$/, () => new Uint8Array(0))); er.loadModel(ctx.tmp + '/noconst.pt')`, 'ModelLoadError', /tensor constant.*holds 0/),
    c('a path that is not a string', `er.loadModel(42)`, 'InvalidArgumentError', /path must be a string/),
    c('options that are not an object', `er.loadModel(ctx.file, 'cpu')`, 'InvalidArgumentError', /options must be an object/),
    c('training that is not a boolean', `er.loadModel(ctx.file, { training: 'yes' })`, 'InvalidArgumentError', /training must be a boolean/),
    c('verifyChecksums that is not a boolean', `er.loadModel(ctx.file, { verifyChecksums: 1 })`, 'InvalidArgumentError', /verifyChecksums must be a boolean/),
    c('an unknown device', `er.loadModel(ctx.file, { device: 'tpu' })`, 'DeviceError', /tpu/),
    c('a CUDA device that is not there (cuda here without one, cuda:99 with one)', `er.loadModel(ctx.file, { device: er.runtimeInfo().cudaAvailable ? 'cuda:99' : 'cuda' })`, 'DeviceError', /cuda/i),
    c('HookedModel.load of a missing file', `er.HookedModel.load(ctx.tmp + '/none.pt')`, 'ModelLoadError', /no such file/),
  ],
  forward: [
    c('float ids', `ctx.model.forward(er.tensor([[1.5, 2]]))`, 'ForwardError', /forward\(float32 \[1, 2\]\) failed/),
    c('ids out of the vocabulary', `ctx.model.forward(er.tensor([[100000]], { dtype: 'int64' }))`, 'ForwardError', /index|range/),
    c('a 1-d input where 2-d is expected', `ctx.model.forward(er.tensor([1, 2, 3], { dtype: 'int64' }))`, 'ForwardError', /failed/),
    c('too many arguments', `ctx.model.forward([ctx.ids(), ctx.ids(), ctx.ids()])`, 'InvalidArgumentError', /forward\(Tensor idx\) takes 1 argument\(s\) but got 3/),
    c('no argument', `ctx.model.forward([])`, 'InvalidArgumentError', /is missing argument 0 'idx' \(Tensor\)/),
    c('a string input', `ctx.model.forward('hello')`, 'InvalidArgumentError', /string|input/),
    c('an undefined input', `ctx.model.forward(undefined)`, 'InvalidArgumentError', /missing argument 0 'idx'/),
    c('a function as input', `ctx.model.forward(() => 1)`, 'InvalidArgumentError', /argument 0 'idx': expected Tensor, got a function/),
    c('options that are not an object', `ctx.model.forward(ctx.ids(), 5)`, 'InvalidArgumentError', /forward: options must be an object.*got a number 5/),
    c('hooks that are not an object', `ctx.model.forward(ctx.ids(), { hooks: 5 })`, 'InvalidArgumentError', /hooks/),
    c('a hook on an unknown point', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.9:output': () => {} } })`, 'InvalidArgumentError', /unknown hook point 'transformer.h.9:output'/),
    c('a hook point misspelt, with a suggestion', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:outptu': () => {} } })`, 'InvalidArgumentError', /transformer.h.0:output/),
    c('a hook that is not a function or kernel', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': 5 } })`, 'InvalidArgumentError', /hook/),
    c('forward on a disposed model', `const m = er.loadModel(ctx.file); m.dispose(); m.forward(ctx.ids())`, 'DisposedError', /disposed/),
    c('hookPoints on a disposed model', `const m = er.loadModel(ctx.file); m.dispose(); m.hookPoints()`, 'DisposedError', /disposed/),
    c('parameters on a disposed model', `const m = er.loadModel(ctx.file); m.dispose(); m.parameters()`, 'DisposedError', /disposed/),
    c('a disposed input tensor', `const t = ctx.ids(); t.dispose(); ctx.model.forward(t)`, 'DisposedError', /dispos/),
    c('hookPointShapes of a bad input', `ctx.model.hookPointShapes(er.tensor([[1.5]]))`, 'ForwardError', /hookPointShapes: RuntimeError: Expected tensor for argument #1 'indices'/),
    c('hookedGraph of unknown points', `ctx.model.hookedGraph(['nope:output'])`, 'InvalidArgumentError', /nope:output/),
    c('addHook on an unknown point', `ctx.model.addHook('nope', () => {})`, 'InvalidArgumentError', /nope/),
    c('addHook with a non-function', `ctx.model.addHook('transformer.h.0:output', 'x')`, 'InvalidArgumentError', /hook/),
    c('output option of a bad type', `ctx.model.forward(ctx.ids(), { output: 'no' })`, 'InvalidArgumentError', /output/),
    c('grad option of a bad type', `ctx.model.forward(ctx.ids(), { grad: 'yes' })`, 'InvalidArgumentError', /options.grad must be a boolean, got a string "yes"/),
  ],
  hooks: [
    c('a hook returning a number', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': () => 5 } })`, 'InvalidArgumentError', /hook on 'transformer.h.0:output' returned number; return a Tensor/),
    c('a hook returning a Promise', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': async () => {} } })`, 'InvalidArgumentError', /returned a Promise/),
    c('a hook returning a tensor of the wrong shape', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': () => er.tensor([1]) } })`, 'ShapeError', /shape|\[1\]/),
    c('a hook returning a tensor of the wrong dtype', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': (t) => er.tensor(new Float64Array(t.numel), t.shape) } })`, 'DTypeError', /float64|dtype/),
    c('a hook returning a disposed tensor', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': (t) => { const c2 = t.clone(); c2.dispose(); return c2; } } })`, 'DisposedError', /returned a tensor it cannot use: .*disposed/),
    c('a borrowed value kept after the hook', `let kept; ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': (t) => { kept = t; } } }); kept.toArray()`, 'DisposedError', /only valid during the hook/),
    c('an unknown native kernel', `er.nativeHook('nope')`, 'InvalidArgumentError', /nope/),
    c('scale with a non-number factor', `er.nativeHook('scale', { factor: 'x' })`, 'InvalidArgumentError', /factor must be a number/),
    c('record with options not an object', `er.nativeHook('record', 5)`, 'InvalidArgumentError', /nativeHook\('record'\): options must be an object, got a number 5/),
    c('a builtin with bad positions', `er.builtins.saveResid({ positions: 'last' })`, 'InvalidArgumentError', /positions/),
    c('interventionHeads of a bad list', `er.builtins.interventionHeads({ heads: 'all' })`, 'InvalidArgumentError', /options.heads must be an array of head indices, got a string "all"/),
    c('multiplyPattern with a bad factor', `er.builtins.multiplyPattern({ head: 0, factor: 'x' })`, 'InvalidArgumentError', /factor/),
    c('a hook that disposes its borrowed value then returns it', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': (t) => { t.dispose(); return t; } } })`, 'DisposedError', /returned a tensor it cannot use.*(disposed|only valid)/),
    c('a hook writing a value of the wrong length', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': (t) => { t.write(new Float32Array(3)); } } })`, 'ShapeError', /3/),
    c('a hook that throws an Error: that error', `const mine = new er.ShapeError('mine'); try { ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': () => { throw mine; } } }); } catch (e) { if (e !== mine) throw new Error('not the same error'); throw e; }`, 'ShapeError', /^mine$/),
    c('removing a hook twice is harmless; clearHooks of an unknown point is an error', `const h = ctx.model.addHook('transformer.h.0:output', () => {}); h.remove(); h.remove(); ctx.model.clearHooks('nope:output')`, 'InvalidArgumentError', /unknown hook point 'nope:output'/),
  ],
  'async and abort': [
    c('an already aborted signal: rejects with its reason', `await ctx.model.forwardAsync(ctx.ids(), { signal: AbortSignal.abort(new er.AbortError('stopped by the user')) })`, 'AbortError', /^stopped by the user$/),
    c('a signal that is not an AbortSignal', `await ctx.model.forwardAsync(ctx.ids(), { signal: {} })`, 'InvalidArgumentError', /must be an AbortSignal/),
    c('an abort during JS hooks, seen before the next hook', `const ac = new AbortController(); await ctx.model.forwardAsync(ctx.ids(), { signal: ac.signal, hooks: { 'transformer.h.0:output': () => ac.abort(new er.AbortError('enough')), 'transformer.h.1:output': () => {} } })`, 'AbortError', /^enough$/),
    c('an async forward on a disposed model', `const m = er.loadModel(ctx.file); m.dispose(); await m.forwardAsync(ctx.ids())`, 'DisposedError', /disposed/),
    c('dispose with a queued forward', `const m = er.loadModel(ctx.file); const a = m.forwardAsync(ctx.ids()); const b = m.forwardAsync(ctx.ids()); m.dispose(); await a.catch(() => {}); await b`, 'DisposedError', /disposed/),
    c('float ids asynchronously', `await ctx.model.forwardAsync(er.tensor([[1.5]]))`, 'ForwardError', /failed/),
    c('an unknown point asynchronously', `await ctx.model.forwardAsync(ctx.ids(), { hooks: { 'x:output': () => {} } })`, 'InvalidArgumentError', /x:output/),
    c('a hook returning a number asynchronously', `await ctx.model.forwardAsync(ctx.ids(), { hooks: { 'transformer.h.0:output': () => 5 } })`, 'InvalidArgumentError', /returned number/),
    c('a timeout signal on HookedModel', `await ctx.hm.forwardAsync(ctx.ids(), { signal: AbortSignal.abort(new er.AbortError('my reason')) })`, 'AbortError', /my reason/),
    c('extractCache with an aborted signal', `await ctx.hm.extractCache([ctx.ids()], { signal: AbortSignal.abort(new er.AbortError('no more')) })`, 'AbortError', /^no more$/),
    c('extractCache with a bad signal', `await ctx.hm.extractCache([ctx.ids()], { signal: 'stop' })`, 'InvalidArgumentError', /must be an AbortSignal/),
    c('extractCache of batches that are not iterable', `await ctx.hm.extractCache(5)`, 'InvalidArgumentError', /batches must be an iterable or async iterable.*got a number 5/),
    c('extractCache of a bad batch', `await ctx.hm.extractCache([5])`, 'InvalidArgumentError', /inputIds|batch/),
    c('HookedModel.forwardAsync with a bad signal', `await ctx.hm.forwardAsync(ctx.ids(), { signal: 1 })`, 'InvalidArgumentError', /must be an AbortSignal/),
  ],
  HookedModel: [
    c('forward of no rows', `ctx.hm.forward([])`, 'InvalidArgumentError', /at least one row/),
    c('forward of an empty row', `ctx.hm.forward([[]])`, 'InvalidArgumentError', /at least one token/),
    c('forward of a string, on a model without a tokenizer', `ctx.hm.forward('hello')`, 'InvalidArgumentError', /text needs a tokenizer, and this model has none/),
    c('an unknown config field', `ctx.hm.forward(ctx.ids(), { extractionConfig: { extractResidOutt: true } })`, 'InvalidArgumentError', /extractResidOutt/),
    c('a config flag that is not a boolean', `ctx.hm.forward(ctx.ids(), { extractionConfig: { extractResidOut: 'yes' } })`, 'InvalidArgumentError', /extractResidOut/),
    c('attnHeads naming a missing layer', `ctx.hm.forward(ctx.ids(), { extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 9, head: 0 }] } })`, 'InvalidArgumentError', /layer 9 does not exist/),
    c('attnHeads naming a missing head', `ctx.hm.forward(ctx.ids(), { extractionConfig: { extractAttnPattern: true, attnHeads: [{ layer: 0, head: 40 }] } })`, 'InvalidArgumentError', /head 40 of layer 0 does not exist/),
    c('attnHeads of a bad form', `ctx.hm.forward(ctx.ids(), { extractionConfig: { extractAttnPattern: true, attnHeads: 'some' } })`, 'InvalidArgumentError', /attnHeads/),
    c('targetTokenPositions not an array', `ctx.hm.forward(ctx.ids(), { targetTokenPositions: 'last' })`, 'InvalidArgumentError', /targetTokenPositions must be an array/),
    c('an attention mask of the wrong shape', `ctx.hm.forward(ctx.ids(), { attentionMask: [[1, 1]] })`, 'InvalidArgumentError', /attentionMask has 2 entries; the input is \[1, 8\]/),
    c('an attention mask row of zeros', `ctx.hm.forward(ctx.ids(), { attentionMask: [[0, 0, 0, 0, 0, 0, 0, 0]] })`, 'TokenPositionError', /attention mask row 0 has no real token/),
    c('predict with a bad k', `ctx.hm.predict(ctx.ids(), { k: 0 })`, 'InvalidArgumentError', /k must be a positive integer/),
    c('toStringTokens without a tokenizer', `ctx.hm.toStringTokens([1])`, 'InvalidArgumentError', /no tokenizer/),
    c('an architecture override naming a missing module', `er.HookedModel.load(ctx.file, { architecture: { finalNorm: 'nope' } }).forward(ctx.ids(), { extractionConfig: { extractLastLayernorm: true } })`, 'InvalidArgumentError', /nope/),
    c('forward after dispose', `const h = er.HookedModel.load(ctx.file); h.dispose(); h.forward(ctx.ids())`, 'DisposedError', /disposed/),
    c('keepGradient at a vocabulary index the model lacks', `ctx.hm.forward(ctx.ids(), { extractionConfig: { keepGradient: true }, vocabularyIndex: 100000 })`, 'InvalidArgumentError', /vocabularyIndex 100000 is not a token of the vocabulary \(0 to \d+\)/),
    c('a pivot position out of range', `ctx.hm.forward(ctx.ids(), { targetTokenPositions: ['inputs-partition-0'], pivotPositions: [40] })`, 'TokenPositionError', /40|pivot/),
    c('extractCache with a bad onProgress', `await ctx.hm.extractCache([ctx.ids()], { onProgress: 5 })`, 'InvalidArgumentError', /onProgress must be a function/),
    c('a tokenizer without decode', `er.HookedModel.load(ctx.file, { tokenizer: {} })`, 'InvalidArgumentError', /tokenizer must have decode/),
    c('avg over a config without averages', `ctx.hm.forward(ctx.ids(), { extractionConfig: { avg: 'yes' } })`, 'InvalidArgumentError', /avg/),
  ],
  'token positions': [
    c('last-0', `er.validateTokenPosition('last-0')`, 'TokenPositionError', /last-0/),
    c('random-text-0', `er.validateTokenPosition('random-text-0')`, 'TokenPositionError', /random-text-0/),
    c('an unknown name', `er.validateTokenPosition('middle')`, 'TokenPositionError', /middle/),
    c('a fractional index', `er.validateTokenPosition(1.5)`, 'TokenPositionError', /1\.5/),
    c('a range with its end before its start', `er.resolveTokenPositions([[5, 2]], { offset: 0, length: 8 })`, 'TokenPositionError', /5.*2|range/),
    c('an index past the sequence', `er.resolveTokenPositions([20], { offset: 0, length: 8 })`, 'TokenPositionError', /20/),
    c('a negative index past the start', `er.resolveTokenPositions([-20], { offset: 0, length: 8 })`, 'TokenPositionError', /-20/),
    c('a partition without pivots', `er.resolveTokenPositions(['inputs-partition-0'], { offset: 0, length: 8 })`, 'TokenPositionError', /pivot/),
    c('a partition index past the pivots', `er.resolveTokenPositions(['inputs-partition-5'], { offset: 0, length: 8 }, { pivotPositions: [3] })`, 'TokenPositionError', /partition-5|5/),
    c('pivots that decrease', `er.resolveTokenPositions(['inputs-partition-0'], { offset: 0, length: 8 }, { pivotPositions: [5, 3] })`, 'TokenPositionError', /increas|pivot/),
    c('an object position', `er.validateTokenPosition({ at: 1 })`, 'TokenPositionError', /object|position/),
    c('random-5 on 3 tokens', `er.resolveTokenPositions(['random-5'], { offset: 0, length: 3 })`, 'TokenPositionError', /random-5|3/),
    c('a span that is not a span', `er.resolveTokenPositions(['last'], { offset: -1, length: 8 })`, 'InvalidArgumentError', /span must be \{ offset, length \} of non-negative integers/),
    c('a mask that is not 0/1', `er.spansFromAttentionMask([2, 1], 1, 2)`, 'InvalidArgumentError', /row 0 holds 2 at position 0; a mask holds 0 \(padding\) or 1/),
    c('a mask of the wrong size', `er.spansFromAttentionMask([1, 1, 1], 1, 2)`, 'InvalidArgumentError', /attention mask has 3 entries; expected 1 x 2 = 2/),
    c('a mask with a hole', `er.spansFromAttentionMask([1, 0, 1], 1, 3)`, 'TokenPositionError', /row 0 has a gap at position 1/),
    c('specs not an array', `er.resolveTokenPositions('last', { offset: 0, length: 8 })`, 'InvalidArgumentError', /specs must be an array of token positions/),
    c('a HookedModel forward with last-0', `ctx.hm.forward(ctx.ids(), { targetTokenPositions: ['last-0'] })`, 'TokenPositionError', /last-0/),
  ],
  interventions: [
    c('not an object', `ctx.hm.forward(ctx.ids(), { interventions: [5] })`, 'InvalidArgumentError', /intervention must be an object/),
    c('an activation that is not a string', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 3, tokenPositions: ['last'] }] })`, 'InvalidArgumentError', /activation must be a string.*got a number 3/),
    c('an unknown activation', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'resid_sideways_0', tokenPositions: ['last'] }] })`, 'InvalidArgumentError', /resid_sideways_0.*unknown activation/),
    c('a layer the model lacks', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'resid_out_9', tokenPositions: ['last'] }] })`, 'InvalidArgumentError', /layer 9 does not exist/),
    c('a head the model lacks', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'head_out_L0H40', tokenPositions: ['last'] }] })`, 'InvalidArgumentError', /head 40 does not exist/),
    c('a pattern type on a residual', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'columns', activation: 'resid_out_0', tokenPositions: ['last'] }] })`, 'InvalidArgumentError', /applies to patterns only/),
    c('full on a pattern', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'pattern_L0H0', tokenPositions: ['last'] }] })`, 'InvalidArgumentError', /does not apply to a pattern/),
    c('grid without a pair', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'grid', activation: 'pattern_L0H0', tokenPositions: ['last'] }] })`, 'InvalidArgumentError', /grid.*\[query positions, key positions\]/),
    c('a multiplicationValue string', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: ['last'], multiplicationValue: 'half' }] })`, 'InvalidArgumentError', /multiplicationValue must be a finite number.*got a string "half"/),
    c('a multiplicationValue NaN', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: ['last'], multiplicationValue: NaN }] })`, 'InvalidArgumentError', /multiplicationValue must be a finite number .*got a number NaN/),
    c('patchingValues of a bad type', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: ['last'], patchingValues: [1, 2] }] })`, 'InvalidArgumentError', /patchingValues must be 'ablation', null or a Tensor/),
    c('a patch of the wrong shape', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: ['last'], patchingValues: er.tensor([1, 2]) }] })`, 'ShapeError', /patch for 'transformer.h.0:output' is \[2\]; the selected cells are \[1, 1, 32\]/),
    c('tokenPositions not an array', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: 'last' }] })`, 'InvalidArgumentError', /tokenPositions must be an array/),
    c('a bad position inside', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'full', activation: 'resid_out_0', tokenPositions: ['last-0'] }] })`, 'TokenPositionError', /last-0/),
    c('applySoftmax not a boolean', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'columns', activation: 'pattern_L0H0', tokenPositions: ['last'], applySoftmax: 'yes' }] })`, 'InvalidArgumentError', /applySoftmax must be a boolean, got a string "yes"/),
    c('an unknown type', `ctx.hm.forward(ctx.ids(), { interventions: [{ type: 'diagonal', activation: 'pattern_L0H0', tokenPositions: ['last'] }] })`, 'InvalidArgumentError', /diagonal/),
    c('registerInterventions of a bad one', `ctx.hm.registerInterventions([{ type: 'full', activation: 'nope_0', tokenPositions: ['last'] }])`, 'InvalidArgumentError', /nope_0/),
    c('registerInterventions of a non-array', `ctx.hm.registerInterventions({ type: 'full' })`, 'InvalidArgumentError', /registerInterventions: expected an array of interventions, got an object/),
    c('interventions not an array', `ctx.hm.forward(ctx.ids(), { interventions: { type: 'full' } })`, 'InvalidArgumentError', /interventions must be an array of interventions, got an object/),
  ],
  caches: [
    c('load of a missing file', `er.ActivationCache.load(ctx.tmp + '/none.safetensors')`, 'InvalidArgumentError', /none.safetensors/),
    c('load of a directory', `er.ActivationCache.load(ctx.tmp)`, 'InvalidArgumentError', /EISDIR|directory/),
    c('save into a missing directory', `new er.ActivationCache().set('a', er.tensor([1])).save(ctx.tmp + '/no/dir/x.safetensors')`, 'InvalidArgumentError', /no\/dir/),
    c('load of a file shorter than its header size', `ctx.write('tiny.safetensors', Buffer.alloc(4)); er.ActivationCache.load(ctx.tmp + '/tiny.safetensors')`, 'InvalidArgumentError', /not a safetensors file/),
    c('load of a header that is not JSON', `const b = Buffer.alloc(16); b.writeBigUInt64LE(8n); b.write('nonsense', 8); ctx.write('nj.safetensors', b); er.ActivationCache.load(ctx.tmp + '/nj.safetensors')`, 'InvalidArgumentError', /header is not JSON/),
    c('load of a truncated file', `const p = ctx.tmp + '/full.safetensors'; new er.ActivationCache().set('a', er.tensor(new Float32Array(100), [100])).save(p); const b = fs.readFileSync(p); ctx.write('trunc.safetensors', b.subarray(0, b.length - 40)); er.ActivationCache.load(ctx.tmp + '/trunc.safetensors')`, 'InvalidArgumentError', /'a' has data_offsets.*truncated/),
    c('load of an unknown dtype', `const h = Buffer.from(JSON.stringify({ a: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } })); const s = Buffer.alloc(8); s.writeBigUInt64LE(BigInt(h.length)); ctx.write('f8.safetensors', Buffer.concat([s, h, Buffer.alloc(1)])); er.ActivationCache.load(ctx.tmp + '/f8.safetensors')`, 'InvalidArgumentError', /dtype F8/),
    c('load of a shape that disagrees with the bytes', `const h = Buffer.from(JSON.stringify({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 4] } })); const s = Buffer.alloc(8); s.writeBigUInt64LE(BigInt(h.length)); ctx.write('sh.safetensors', Buffer.concat([s, h, Buffer.alloc(4)])); er.ActivationCache.load(ctx.tmp + '/sh.safetensors')`, 'InvalidArgumentError', /needs 12 bytes but its data_offsets span 4/),
    c('save with a bigint in metadata', `const k = new er.ActivationCache().set('a', er.tensor([1])); k.addMetadata({ seed: 5n }); k.save(ctx.tmp + '/big.safetensors')`, 'InvalidArgumentError', /metadata.seed is a bigint/),
    c('save with a function value', `new er.ActivationCache().set('f', () => 1).save(ctx.tmp + '/fn.safetensors')`, 'InvalidArgumentError', /key 'f' is a function/),
    c('save with a cycle in metadata', `const k = new er.ActivationCache(); const o = {}; o.self = o; k.addMetadata({ o }); k.save(ctx.tmp + '/cy.safetensors')`, 'InvalidArgumentError', /refers back to itself/),
    c('cat of a plain object', `new er.ActivationCache().cat({})`, 'InvalidArgumentError', /expected an ActivationCache/),
    c('cat of different key sets', `new er.ActivationCache().set('a', 1).cat(new er.ActivationCache().set('b', 1))`, 'InvalidArgumentError', /key sets differ/),
    c('cat of different lengths', `new er.ActivationCache().set('r', er.tensor(new Float32Array(6), [1, 2, 3])).cat(new er.ActivationCache().set('r', er.tensor(new Float32Array(9), [1, 3, 3])))`, 'InvalidArgumentError', /'r' has shape \[1, 2, 3\] here and \[1, 3, 3\]/),
    c('tensor() of a missing key', `new er.ActivationCache().tensor('resid_out_0')`, 'InvalidArgumentError', /no key 'resid_out_0'/),
    c('tensor() of a key that holds no tensor', `new er.ActivationCache().set('x', 1).tensor('x')`, 'InvalidArgumentError', /x/),
    c('deferredMode twice', `const k = new er.ActivationCache(); k.deferredMode(); k.deferredMode()`, 'InvalidArgumentError', /already deferred/),
    c('registerAggregation with a non-function', `new er.ActivationCache().registerAggregation('a', 5)`, 'InvalidArgumentError', /fn must be a function \(current, incoming\) => merged, got a number 5/),
    c('to() an unknown device', `new er.ActivationCache().set('a', er.tensor([1])).to('tpu')`, 'DeviceError', /tpu/),
  ],
  lifecycle: [
    c('setNumThreads(0)', `er.setNumThreads(0)`, 'InvalidArgumentError', /setNumThreads/),
    c('setNumThreads of a fraction', `er.setNumThreads(1.5)`, 'InvalidArgumentError', /setNumThreads/),
    c('setCpuFusion of a non-boolean', `er.setCpuFusion('on')`, 'InvalidArgumentError', /setCpuFusion|boolean/),
    c('a model disposed twice, then used', `const m = er.loadModel(ctx.file); m.dispose(); m.dispose(); m.modules()`, 'DisposedError', /disposed/),
    c('train() on a disposed model', `const m = er.loadModel(ctx.file); m.dispose(); m.train()`, 'DisposedError', /disposed/),
    c('a HookedModel disposed twice, then used', `const h = er.HookedModel.load(ctx.file); h.dispose(); h.dispose(); h.predict(ctx.ids())`, 'DisposedError', /disposed/),
    c('a parameter handle kept after its model is disposed still works; a disposed handle does not', `const m = er.loadModel(ctx.file); const w = m.parameters().get('lm_head.weight'); m.dispose(); w.toArray(); w.dispose(); w.toArray()`, 'DisposedError', /dispos/),
    c('constructing a Model directly', `new er.Model({}, 'x').forward(ctx.ids())`, 'InvalidArgumentError', /Model cannot be constructed from JS; use loadModel/),
    c('a NativeHook from a plain object', `ctx.model.forward(ctx.ids(), { hooks: { 'transformer.h.0:output': new er.NativeHook({}) } })`, 'InvalidArgumentError', /hook|kernel/),
    c('modules() results are copies: editing them then asking for a bad point', `const mods = ctx.model.modules(); mods.length = 0; ctx.model.addHook('gone:output', () => {})`, 'InvalidArgumentError', /gone:output/),
  ],
};

const total = Object.values(AREAS).reduce((n, cases) => n + cases.length, 0);

/** Runs the cases of one area in a child process; one JSON line per case (or the case running at a crash). */
function runArea(cases: Case[]) {
  const script = `
    const er = require('./dist/index.js');
    const fs = require('node:fs');
    const path = require('node:path');
    const { unzipSync, zipSync } = require('fflate');
    const cases = JSON.parse(process.env.CASES);
    const file = process.env.MODEL;
    const ctx = {
      file,
      tmp: process.env.SCRATCH,
      model: er.loadModel(file),
      hm: er.HookedModel.load(file),
      ids: () => er.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'int64' }),
      model_bytes: fs.readFileSync(file),
      write: (name, data) => fs.writeFileSync(path.join(process.env.SCRATCH, name), data),
      zip: (entries) => Buffer.from(zipSync(Object.fromEntries(Object.entries(entries).map(([n, d]) => [n, [d, { level: 0 }]])))),
      withRecord: (pattern, edit) => {
        const entries = unzipSync(fs.readFileSync(file));
        const name = Object.keys(entries).find((n) => pattern.test(n));
        entries[name] = edit(entries[name]);
        return Buffer.from(zipSync(Object.fromEntries(Object.entries(entries).map(([n, d]) => [n, [d, { level: 0 }]]))));
      },
    };
    const reference = Array.from(ctx.model.forward(ctx.ids()).toFloat32Array());
    const AsyncFunction = (async () => {}).constructor;
    (async () => {
      for (const kase of cases) {
        process.stdout.write(JSON.stringify({ running: kase.what }) + '\\n');
        const outcome = { what: kase.what };
        try {
          await new AsyncFunction('er', 'ctx', 'fs', kase.code)(er, ctx, fs);
          outcome.threw = false;
        } catch (error) {
          outcome.threw = true;
          outcome.name = error?.constructor?.name ?? typeof error;
          outcome.code = error?.code;
          outcome.message = String(error?.message ?? error);
          outcome.easyroutine = error instanceof er.EasyroutineError;
        }
        // the process and the shared models stay usable
        try {
          const again = ctx.model.forward(ctx.ids()).toFloat32Array();
          ctx.hm.forward(ctx.ids()).dispose();
          outcome.usable = again.every((v, i) => v === reference[i]);
        } catch (error) {
          outcome.usable = false;
          outcome.usableError = String(error?.message ?? error);
        }
        process.stdout.write(JSON.stringify(outcome) + '\\n');
      }
    })();`;
  const result = spawnSync(process.execPath, ['-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, CASES: JSON.stringify(cases.map(({ what, code }) => ({ what, code }))), MODEL: fixture('gpt2_traced.pt'), SCRATCH: scratch },
  });
  const lines = result.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const outcomes = new Map(lines.filter((l) => !('running' in l)).map((l) => [l['what'] as string, l]));
  const crashedIn = result.status !== 0 ? (lines.filter((l) => 'running' in l).pop()?.['running'] as string | undefined) : undefined;
  return { outcomes, crashedIn, status: result.status, signal: result.signal, stderr: result.stderr };
}

describe(`bad input (${total} cases): typed errors that name the problem, a usable process after each`, () => {
  it('has at least 150 cases', () => {
    expect(total).toBeGreaterThanOrEqual(150);
  });

  for (const [area, cases] of Object.entries(AREAS)) {
    describe(area, () => {
      let run: ReturnType<typeof runArea> | undefined;
      const area_ = () => (run ??= runArea(cases));
      it.each(cases)('$what', (kase) => {
        const { outcomes, crashedIn, signal, status, stderr } = area_();
        const outcome = outcomes.get(kase.what);
        expect(outcome, crashedIn ? `the child died (${signal ?? status}) during '${crashedIn}': ${stderr.slice(-500)}` : `no outcome: ${stderr.slice(-500)}`).toBeDefined();
        const seen = JSON.stringify(outcome);
        expect(outcome!['threw'], `it did not throw: ${seen}`).toBe(true);
        const expected = er[kase.error] as unknown as new (message: string) => er.EasyroutineError;
        expect(outcome!['name'], seen).toBe(kase.error);
        expect(outcome!['easyroutine'], seen).toBe(true);
        expect(outcome!['code'], seen).toBe(new expected('').code);
        expect(outcome!['message'], seen).toMatch(kase.message);
        expect(outcome!['usable'], String(outcome!['usableError'] ?? 'the model gives other logits')).toBe(true);
      });
    });
  }
});
