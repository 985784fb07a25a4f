/**
 * Architecture detection: the heuristics that guess an {@link ArchitectureMapping} from a model's
 * graph and module tree rather than from a per-model table, so GPT-2-like, Llama-like and other
 * exports of the same structure work, traced or scripted. Anything found can be overridden.
 * @module
 */
import { InvalidArgumentError } from '../../core/errors';
import type { Model, ModelInput } from '../../core/model';
import { tensor, type Tensor } from '../../core/tensor';
import { fullMask, takesAttentionMask } from '../forward/inputs';
import { applyOverrides, layerPoints, type ArchitectureMapping, type ArchitectureOverrides, type LayerSites } from './mapping';

const NORM = /norm|ln/i;

function parentOf(path: string): string {
  const i = path.lastIndexOf('.');
  return i < 0 ? '' : path.slice(0, i);
}

/**
 * Finds the semantic sites of `model`. `sampleInput` is a forward input used to read head counts
 * from shapes (default: token ids `[[0, 1]]`). Throws an {@link InvalidArgumentError} when the model
 * has no attention that the hook engine recognises, unless the overrides supply the layers.
 */
export function detectArchitecture(model: Model, overrides: ArchitectureOverrides = {}, sampleInput?: Tensor): ArchitectureMapping {
  const points = model.hookPoints();
  const names = new Set(points.map((p) => p.name));
  const modules = model.modules();
  const order = new Map(modules.map((m, i) => [m.path, i]));
  const typeOf = new Map(modules.map((m) => [m.path, m.type]));
  const attentionPaths = [...new Set(points.filter((p) => p.kind === 'pattern').map((p) => p.module))];
  if (attentionPaths.length === 0 && !overrides.layers) {
    throw new InvalidArgumentError('detectArchitecture: no attention found in the graph (a softmax feeding a matmul with V); pass the layers as overrides');
  }
  const children = (path: string) => modules.filter((m) => m.path !== path && parentOf(m.path) === path).map((m) => m.path);
  const isNorm = (path: string) => NORM.test(path.split('.').pop() ?? '') || /Norm/.test(typeOf.get(path) ?? '');

  const inside = (path: string, root: string) => path === root || path.startsWith(root + '.');
  const sample = sampleInput ?? tensor([[0, 1, 2, 3]], { dtype: 'int64' });
  const args = takesAttentionMask(model) ? [sample, fullMask(sample)] : [sample];
  const blocks = attentionPaths.map((attention) => {
    // the block: the closest ancestor (or the attention itself) whose last component is the layer number
    let block = attention;
    while (block && !/^\d+$/.test(block.split('.').pop() ?? '')) block = parentOf(block);
    return block || attention;
  });
  // Where each value goes is read off one forward: a module reads another's output when the two
  // values are the same data (registration order says nothing: Hugging Face registers self_attn,
  // mlp, input_layernorm, post_attention_layernorm).
  const inBlocks = (path: string) => blocks.some((b) => inside(path, b));
  // a module's outputs: `:output`, or `:output.K` for a traced module that returns several values
  const outputsOf = (path: string) => points.filter((p) => p.module === path && p.kind === 'output').map((p) => p.name);
  const probed = modules.filter((m) => m.path).flatMap((m) => (inBlocks(m.path) ? [`${m.path}:input`, ...outputsOf(m.path)] : [`${m.path}:input`]));
  probed.push(...attentionPaths.map((a) => `${a}:head_output`));
  const values = probeValues(model, args, probed.filter((p) => names.has(p)));
  const same = (a: string, b: string) => sameData(values.get(a), values.get(b));
  const feeds = (module: string, input: string) => outputsOf(module).some((output) => same(output, input));

  // A block that returns a tuple (xLSTM's return their states first): its residual is the element
  // the next block reads, or after the last block the one a norm outside the blocks reads.
  const outsideNorms = modules.filter((m) => m.path && !inBlocks(m.path) && isNorm(m.path)).map((m) => m.path);
  const residualOutputOf = (i: number): string | undefined => {
    const block = blocks[i]!;
    if (names.has(`${block}:output`)) return undefined;
    const outputs = outputsOf(block);
    const next = blocks[i + 1];
    const readers = next !== undefined ? [`${next}:input`] : outsideNorms.map((n) => `${n}:input`);
    const found = outputs.find((output) => readers.some((reader) => same(output, reader)));
    return (found ?? outputs[0])?.slice(block.length + 1);
  };

  const layers: LayerSites[] = attentionPaths.map((attention, i) => {
    const block = blocks[i]!;
    const residualOutput = residualOutputOf(i);
    const siblings = children(block);
    const attentionChild = siblings.find((c) => inside(attention, c)) ?? attention;
    const outsideAttention = modules.map((m) => m.path).filter((p) => inside(p, block) && p !== block && !inside(p, attentionChild));
    const norms = outsideAttention.filter(isNorm);
    const attentionNorm = norms.find((n) => feeds(n, `${attention}:input`)) ?? null;
    const mlpCandidates = siblings.filter((c) => c !== attentionChild && !isNorm(c) && modules.some((m) => inside(m.path, c) && m.parameters.length > 0));
    let mlpNorm: string | null = null;
    let mlp: string | null = null;
    for (const candidate of mlpCandidates) {
      const norm = norms.find((n) => feeds(n, `${candidate}:input`));
      if (norm !== undefined) {
        mlp = candidate;
        mlpNorm = norm;
        break;
      }
    }
    if (mlp === null) mlp = mlpCandidates.find((c) => outputsOf(c).length > 0) ?? null;
    // parallel attention and MLP: both read the block's input (through one norm or two)
    const parallel = mlpNorm !== null && (mlpNorm === attentionNorm || same(`${mlpNorm}:input`, `${block}:input`));
    // The MLP's output is what the block adds to resid_mid to make resid_out. When the module that
    // reads the MLP norm is not it, the MLP is no module of its own (OPT: fc1 ... fc2), and its output
    // is the sibling's that is.
    let mlpOutput: string | null = null;
    if (mlp !== null && mlpNorm !== null && !parallel) {
      const residual = (out: string) => addsUp(values.get(`${block}:${residualOutput ?? 'output'}`), values.get(`${mlpNorm}:input`), values.get(out));
      if (!outputsOf(mlp).some(residual)) {
        const whole = mlpCandidates.find((c) => outputsOf(c).some(residual));
        if (whole !== undefined) {
          mlpOutput = whole;
          mlp = null;
        }
      }
    }
    // W_O: the projection whose input is the merged head outputs (the same numbers in another order)
    const projections = modules.filter((m) => inside(m.path, attention) && m.path !== attention && /Linear|Conv1D/.test(m.type)).map((m) => m.path);
    const outputProjection =
      projections.find((p) => sameNumbers(values.get(`${p}:input`), values.get(`${attention}:head_output`))) ??
      projections.find((c) => /(^|\.)(c_proj|o_proj|out_proj|dense|out)$/.test(c)) ??
      projections.at(-1) ??
      null;
    const sites: LayerSites = {
      block,
      attention,
      attentionNorm,
      mlpNorm,
      mlp,
      outputProjection,
      points: layerPoints({ block, attention, mlpNorm, mlp, mlpOutput, parallel, residualOutput }, names),
    };
    if (outputProjection !== null && typeOf.get(outputProjection) === 'Conv1D') sites.outputProjectionLayout = 'in_out';
    if (parallel) sites.parallel = true;
    return sites;
  });

  const lastBlock = layers.at(-1)?.block ?? '';
  const lastIndex = order.get(lastBlock) ?? 0;
  const outside = modules.filter((m) => m.path && !inBlocks(m.path));
  const after = outside.filter((m) => (order.get(m.path) ?? 0) > lastIndex);
  // the final norm reads the last block's output (OPT registers it before the layers)
  const lastResidual = layers.at(-1)?.points.resid_out ?? '';
  const finalNorm = outside.find((m) => isNorm(m.path) && same(`${m.path}:input`, lastResidual))?.path ?? after.find((m) => isNorm(m.path))?.path ?? null;
  const unembed = [...after].reverse().find((m) => /Linear/.test(m.type))?.path ?? null;

  let shapes = new Map<string, number[] | null>();
  const first = layers[0];
  if (first) shapes = model.hookPointShapes(args);
  const q = first ? shapes.get(first.points.queries) : null;
  const k = first ? shapes.get(first.points.keys) : null;
  const resid = first ? shapes.get(first.points.resid_out) : null;
  const mapping: ArchitectureMapping = {
    layers,
    nHeads: q?.[1] ?? 0,
    nKvHeads: k?.[1] ?? q?.[1] ?? 0,
    dHead: q?.[3] ?? 0,
    dModel: resid?.at(-1) ?? 0,
    finalNorm,
    unembed,
    embeddings: first ? first.points.resid_in : 'input',
    source: 'detected',
  };
  return applyOverrides(mapping, overrides);
}

/** The first value seen at each of `points` on one forward of `args`, as float32 copies. */
function probeValues(model: Model, args: ModelInput[], points: string[]): Map<string, Float32Array> {
  const seen = new Map<string, Float32Array>();
  if (points.length === 0) return seen;
  const record = (point: string) => (value: Tensor) => {
    if (!seen.has(point) && (value.dtype.startsWith('float') || value.dtype === 'bfloat16')) seen.set(point, value.toFloat32Array());
  };
  model.forward(args, { hooks: Object.fromEntries(points.map((p) => [p, record(p)])), output: false });
  return seen;
}

/** The same numbers in the same order (a view or reshape of one value). */
function sameData(a: Float32Array | undefined, b: Float32Array | undefined): boolean {
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

/** The same numbers in any order (a permutation, as merging heads is). */
function sameNumbers(a: Float32Array | undefined, b: Float32Array | undefined): boolean {
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  return sameData(Float32Array.from(a).sort(), Float32Array.from(b).sort());
}

/** Whether `total` is `base + part`, element by element, to float32 rounding. */
function addsUp(total: Float32Array | undefined, base: Float32Array | undefined, part: Float32Array | undefined): boolean {
  if (total === undefined || base === undefined || part === undefined || total.length !== base.length || total.length !== part.length) return false;
  for (let i = 0; i < total.length; i++) {
    const sum = base[i]! + part[i]!;
    if (Math.abs(total[i]! - sum) > 1e-5 * Math.max(1, Math.abs(sum))) return false;
  }
  return true;
}
