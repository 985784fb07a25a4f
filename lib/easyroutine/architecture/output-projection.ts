/**
 * The attention output projections (W_O, b_O) that a mapping names, as tensors sharing the model's
 * memory, looked up once per layer.
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

  constructor(model: Model, mapping: ArchitectureMapping) {
    this.#model = model;
    this.#mapping = mapping;
  }

  /** W_O and b_O of `layer`; an {@link InvalidArgumentError} when the mapping has none. */
  of(layer: number): OutputProjection {
    let found = this.#found.get(layer);
    if (!found) {
      const path = this.#mapping.layers[layer]?.outputProjection;
      if (!path) throw new InvalidArgumentError(`HookedModel: no output projection (W_O) found for layer ${layer}; pass outputProjection in the architecture overrides`);
      const parameters = this.#model.parameters();
      const weight = parameters.get(`${path}.weight`);
      const bias = parameters.get(`${path}.bias`);
      // the handles of every other parameter go now, not at some later GC
      for (const parameter of parameters.values()) if (parameter !== weight && parameter !== bias) parameter.dispose();
      if (!weight) throw new InvalidArgumentError(`HookedModel: '${path}' has no weight to use as W_O`);
      found = { weight, bias, layout: this.#mapping.layers[layer]!.outputProjectionLayout ?? 'out_in' };
      this.#found.set(layer, found);
    }
    return found;
  }

  /** Releases the handles of the projections looked up (the model's memory stays the model's). */
  dispose(): void {
    for (const { weight, bias } of this.#found.values()) {
      weight.dispose();
      bias?.dispose();
    }
    this.#found.clear();
  }
}
