/**
 * The attention output projections (W_O, b_O) that a mapping names, as tensors sharing the model's
 * memory, looked up once for all layers.
 * @module
 */
import { InvalidArgumentError } from '../../core/errors';
import type { Model } from '../../core/model';
import type { Tensor } from '../../core/tensor';
import type { ArchitectureMapping } from './mapping';

/** W_O and b_O of one layer. */
export interface OutputProjection {
  weight: Tensor;
  bias: Tensor | undefined;
  /** The weight's layout, as the kernels' `layout` option takes it. */
  layout: 'out_in' | 'in_out';
}

/** The output projections of a model's layers, read on first use. */
export class OutputProjections {
  readonly #model: Model;
  readonly #mapping: ArchitectureMapping;
  readonly #found = new Map<number, OutputProjection>();
  #lookedUp = false;

  constructor(model: Model, mapping: ArchitectureMapping) {
    this.#model = model;
    this.#mapping = mapping;
  }

  /** W_O and b_O of `layer`; an {@link InvalidArgumentError} when the mapping has none. */
  of(layer: number): OutputProjection {
    const path = this.#mapping.layers[layer]?.outputProjection;
    if (!path) throw new InvalidArgumentError(`HookedModel: no output projection (W_O) found for layer ${layer}; pass outputProjection in the architecture overrides`);
    if (!this.#lookedUp) this.#lookUp();
    const found = this.#found.get(layer);
    if (!found) throw new InvalidArgumentError(`HookedModel: '${path}' has no weight to use as W_O`);
    return found;
  }

  /** Takes every layer's W_O and b_O from one parameters() call; the other handles go at once, not at some later GC. */
  #lookUp(): void {
    const parameters = this.#model.parameters();
    this.#lookedUp = true;
    const kept = new Set<Tensor>();
    this.#mapping.layers.forEach((sites, layer) => {
      const weight = sites.outputProjection ? parameters.get(`${sites.outputProjection}.weight`) : undefined;
      if (!weight) return;
      const bias = parameters.get(`${sites.outputProjection}.bias`);
      this.#found.set(layer, { weight, bias, layout: sites.outputProjectionLayout ?? 'out_in' });
      kept.add(weight);
      if (bias) kept.add(bias);
    });
    for (const parameter of parameters.values()) if (!kept.has(parameter)) parameter.dispose();
  }

  /** Releases the handles of the projections looked up (the model's memory stays the model's). */
  dispose(): void {
    for (const { weight, bias } of this.#found.values()) {
      weight.dispose();
      bias?.dispose();
    }
    this.#found.clear();
    this.#lookedUp = false;
  }
}
