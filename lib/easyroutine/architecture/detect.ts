/**
 * Architecture detection: the heuristics that guess an {@link ArchitectureMapping} from a model's
 * graph and module tree rather than from a per-model table, so GPT-2-like, Llama-like and other
 * exports of the same structure work, traced or scripted. Anything found can be overridden.
 * @module
 */
import { InvalidArgumentError } from '../../core/errors';
import type { Model } from '../../core/model';
import { tensor, type Tensor } from '../../core/tensor';
import { applyOverrides, type ArchitectureMapping, type ArchitectureOverrides, type LayerSites } from './mapping';

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
  const has = (name: string) => (names.has(name) ? name : undefined);

  const layers: LayerSites[] = attentionPaths.map((attention) => {
    // the block: the closest ancestor (or the attention itself) whose last component is the layer number
    let block = attention;
    while (block && !/^\d+$/.test(block.split('.').pop() ?? '')) block = parentOf(block);
    if (!block) block = attention;
    const siblings = children(block);
    const attentionChild = siblings.find((c) => attention === c || attention.startsWith(c + '.')) ?? attention;
    const at = order.get(attentionChild) ?? 0;
    const before = siblings.filter((c) => (order.get(c) ?? 0) < at);
    const after = siblings.filter((c) => (order.get(c) ?? 0) > at);
    const attentionNorm = [...before].reverse().find(isNorm) ?? null;
    const mlpNorm = after.find(isNorm) ?? null;
    const mlp = after.find((c) => !isNorm(c) && modules.some((m) => (m.path === c || m.path.startsWith(c + '.')) && m.parameters.length > 0)) ?? null;
    const projections = children(attention).filter((c) => /Linear/.test(typeOf.get(c) ?? ''));
    const outputProjection = projections.find((c) => /(^|\.)(c_proj|o_proj|out_proj|dense|out)$/.test(c)) ?? projections.at(-1) ?? null;
    const point = (path: string | null, p: string) => (path === null ? undefined : has(`${path}:${p}`));
    return {
      block,
      attention,
      attentionNorm,
      mlpNorm,
      mlp,
      outputProjection,
      points: {
        resid_in: `${block}:input`,
        resid_out: `${block}:output`,
        resid_mid: point(mlpNorm, 'input'),
        mlp_in: point(mlpNorm, 'output'),
        attn_in: `${attention}:input`,
        attn_out: `${attention}:output`,
        queries: `${attention}:queries`,
        keys: `${attention}:keys`,
        values: `${attention}:values`,
        scores: `${attention}:scores`,
        pattern: `${attention}:pattern`,
        head_output: `${attention}:head_output`,
        mlp_out: point(mlp, 'output'),
      },
    };
  });

  const lastBlock = layers.at(-1)?.block ?? '';
  const lastIndex = order.get(lastBlock) ?? 0;
  const outside = modules.filter((m) => m.path && !layers.some((l) => m.path === l.block || m.path.startsWith(l.block + '.')) && (order.get(m.path) ?? 0) > lastIndex);
  const finalNorm = outside.find((m) => isNorm(m.path))?.path ?? null;
  const unembed = [...outside].reverse().find((m) => /Linear/.test(m.type))?.path ?? null;

  let shapes = new Map<string, number[] | null>();
  const first = layers[0];
  if (first) {
    shapes = model.hookPointShapes(sampleInput ?? tensor([[0, 1]], { dtype: 'int64' }));
  }
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
  };
  return applyOverrides(mapping, overrides);
}
