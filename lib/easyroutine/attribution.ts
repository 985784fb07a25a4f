/**
 * Attribution patching (Nanda 2023; Syed, Rager and Conmy 2023, "Attribution Patching Outperforms
 * Automated Circuit Discovery"): the effect of patching each site from the clean run into the
 * corrupted one, to first order, `∇_site metric(corrupted) · (clean − corrupted)`, for every
 * residual site and every head from one clean forward, one corrupted forward and one backward pass
 * (activation patching needs a forward per site).
 * @module
 */
import { InvalidArgumentError, describeValue } from '../core/errors';
import { nativeHook, type NativeHook } from '../core/hooks';
import { checkSignal } from '../core/model';
import { Tensor, fromTypedArray, grad } from '../core/tensor';
import type { HookedInput, HookedModel } from './hooked-model';
import type { LabelledGrid, PatchingMetric, ResidualSite } from './patching';

/** Options of {@link attributionPatching}. */
export interface AttributionOptions {
  /** The input whose activations would be patched in. */
  clean: HookedInput;
  /** The input that is run (same shape as `clean` once tokenized). */
  corrupted: HookedInput;
  /** A metric linear in the last-position logits, with its gradient (e.g. {@link logitDifference}). */
  metric: PatchingMetric;
  /** The residual site (default `resid_in`, each block's input). */
  site?: ResidualSite;
  /** `[batch, seq]` 0/1 mask of both inputs, when they are padded token ids. */
  attentionMask?: Tensor | number[][];
  /** Stops between the forwards and hooks. */
  signal?: AbortSignal;
}

/** One grid of estimated effects. */
export interface AttributionGrid extends LabelledGrid {
  /** `[layers, positions]` or `[layers, heads]` float32. */
  values: Tensor;
}

/** What {@link attributionPatching} returns: the estimated effect per site, on the two grids of the sweeps. */
export interface Attribution {
  /** Per residual site and position, summed over the batch and d_model. */
  resid: AttributionGrid;
  /** Per head's output (before W_O) at every position. */
  heads: AttributionGrid;
  /** The metric of the clean run and of the corrupted run. */
  cleanMetric: number;
  /** The metric of the corrupted run (the effects are changes of it). */
  corruptedMetric: number;
}

/** Σ over every element of (clean − corrupted) × gradient, grouped by `group(index)`. */
function contract(gradient: Float32Array, clean: Float32Array, corrupted: Float32Array, out: Float32Array, group: (i: number) => number): void {
  for (let i = 0; i < gradient.length; i++) out[group(i)]! += gradient[i]! * (clean[i]! - corrupted[i]!);
}

/**
 * Attribution patching of every `site` residual (layer × position) and every head's output (layer ×
 * head, all positions): the first-order estimate of what {@link residualPatchingSweep} and
 * {@link headPatchingSweep} measure as `metric(patched) − metric(corrupted)`.
 * @example
 * ```ts
 * const attribution = await attributionPatching(model, { clean: 'w7 w9 w4 w7 w9', corrupted: 'w7 w9 w4 w7 w3', metric: logitDifference(4, 9) });
 * attribution.heads.values.toArray(); // [layer][head]
 * ```
 */
export async function attributionPatching(model: HookedModel, options: AttributionOptions): Promise<Attribution> {
  const caller = 'attributionPatching';
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`${caller}: expected options { clean, corrupted, metric }, got ${describeValue(options)}`);
  const { metric } = options;
  if (!metric || typeof metric.compute !== 'function' || typeof metric.gradient !== 'function') {
    throw new InvalidArgumentError(`${caller}: metric must be a PatchingMetric linear in the logits, with gradient(batch, vocab) (e.g. logitDifference(correct, wrong)), got ${describeValue(metric)}`);
  }
  const site = options.site ?? 'resid_in';
  if (!['resid_in', 'resid_mid', 'resid_out'].includes(site)) throw new InvalidArgumentError(`${caller}: site must be resid_in, resid_mid or resid_out, got ${describeValue(site)}`);
  checkSignal(options.signal, caller);
  const layers = model.architecture.layers;
  const residPoints = layers.map((layer, i) => {
    const point = layer.points[site];
    if (!point) throw new InvalidArgumentError(`${caller}: layer ${i} has no ${site} in this architecture`);
    return point;
  });
  const headPoints = layers.map((layer) => layer.points.head_output);
  const points = [...residPoints, ...headPoints];
  const run = { targetTokenPositions: ['last' as const], attentionMask: options.attentionMask, signal: options.signal };

  const clean = new Map<string, Float32Array>();
  const cleanCache = await model.forwardAsync(options.clean, { ...run, hooks: Object.fromEntries(points.map((p) => [p, (x: Tensor) => void clean.set(p, x.toFloat32Array())])) });
  const cleanMetric = metric.compute(cleanCache.tensor('logits').index({}, 0));
  cleanCache.dispose();

  // the corrupted run keeps every site, and the logits, in the autograd graph
  const sites = new Map<string, NativeHook>(points.map((p) => [p, nativeHook('gradient_site')]));
  const output = nativeHook('gradient_site');
  const corruptedCache = await model.forwardAsync(options.corrupted, { ...run, grad: true, hooks: { ...Object.fromEntries(sites), output } });
  const logits = output.results() as Tensor;
  const values = points.map((p) => sites.get(p)!.results() as Tensor);
  try {
    const [batch, seq, vocab] = logits.shape as [number, number, number];
    for (const [i, p] of points.entries()) {
      if (values[i]!.numel !== clean.get(p)!.length) throw new InvalidArgumentError(`${caller}: clean and corrupted differ in shape at '${p}' ([${values[i]!.shape.join(', ')}]); give inputs of the same batch size and length`);
    }
    const corruptedMetric = metric.compute(corruptedCache.tensor('logits').index({}, 0));
    // d metric / d logits: the metric's weights at each row's last position
    const weights = new Float32Array(batch * seq * vocab);
    const lastWeights = metric.gradient!(batch, vocab);
    for (let b = 0; b < batch; b++) weights.set(lastWeights.subarray(b * vocab, (b + 1) * vocab), (b * seq + seq - 1) * vocab);
    const gradOutput = fromTypedArray(weights, [batch, seq, vocab]);
    const gradients = grad(logits, values, { gradOutput });
    gradOutput.dispose();

    const { nHeads } = model.architecture;
    const resid = new Float32Array(layers.length * seq);
    const heads = new Float32Array(layers.length * nHeads);
    layers.forEach((_, l) => {
      const r = l;
      const h = layers.length + l;
      const residValue = values[r]!;
      const d = residValue.shape[2]!;
      const gr = gradients[r];
      // [batch, seq, d]: grouped by position
      if (gr) contract(gr.toFloat32Array(), clean.get(points[r]!)!, residValue.toFloat32Array(), resid.subarray(l * seq, (l + 1) * seq), (i) => Math.floor(i / d) % seq);
      const headValue = values[h]!;
      const [, heads_, positions, dHead] = headValue.shape as [number, number, number, number];
      const gh = gradients[h];
      // [batch, heads, seq, d_head]: grouped by head
      if (gh) contract(gh.toFloat32Array(), clean.get(points[h]!)!, headValue.toFloat32Array(), heads.subarray(l * nHeads, (l + 1) * nHeads), (i) => Math.floor(i / (positions * dHead)) % heads_);
      gr?.dispose();
      gh?.dispose();
    });
    const layerLabels = layers.map((_, i) => String(i));
    return {
      resid: { values: fromTypedArray(resid, [layers.length, seq]), rowLabels: layerLabels, columnLabels: Array.from({ length: seq }, (_, p) => String(p)), rowTitle: 'layer', columnTitle: 'position', metric: `${metric.name} (attribution)` },
      heads: { values: fromTypedArray(heads, [layers.length, nHeads]), rowLabels: layerLabels, columnLabels: Array.from({ length: nHeads }, (_, h) => String(h)), rowTitle: 'layer', columnTitle: 'head', metric: `${metric.name} (attribution)` },
      cleanMetric,
      corruptedMetric,
    };
  } finally {
    corruptedCache.dispose();
    logits.dispose();
    for (const v of values) v.dispose();
    output.reset();
    for (const hook of sites.values()) hook.reset();
  }
}
