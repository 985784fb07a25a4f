/**
 * The running averages of {@link HookedModel.extractCache}: kernels kept across the batches of one
 * extraction that fold each batch into a mean in constant memory (easyroutine's avg_pattern and
 * extract_avg_value), and the cache entries they end as.
 * @module
 */
import { nativeHook, type Hook, type NativeHook } from '../../core/hooks';
import type { Tensor } from '../../core/tensor';
import type { ActivationCache } from '../activation-cache';
import type { ArchitectureMapping } from '../architecture/mapping';
import type { OutputProjections } from '../architecture/output-projection';
import { selectedHeads, type ResolvedExtractionConfig } from '../extraction-config';
import type { Target } from './positions';

/** The running-average kernels of one extraction over a dataset. */
export class RunningAverages {
  readonly #architecture: ArchitectureMapping;
  readonly #projections: OutputProjections;
  readonly #kernels = new Map<string, NativeHook>();

  constructor(architecture: ArchitectureMapping, projections: OutputProjections) {
    this.#architecture = architecture;
    this.#projections = projections;
  }

  /** The hooks that fold one batch in (the same kernels every batch, re-aimed at its positions). */
  hooks(config: Readonly<ResolvedExtractionConfig>, { positions, groupSizes, offsets }: Target): [string, Hook][] {
    if (!config.extractAvgAttnPattern) return [];
    const arch = this.#architecture;
    const running = this.#kernels;
    const hooks: [string, Hook][] = [];
    arch.layers.forEach((layer, i) => {
      const p = layer.points;
      const patternHeads = selectedHeads(config, i, arch.nHeads);
      if (patternHeads.length > 0) {
        let hook = running.get(`avg_pattern_L${i}`);
        if (!hook) {
          hook = nativeHook('pattern', { positions, groups: groupSizes, offsets, heads: patternHeads, reduction: 'none', runningMean: true });
          running.set(`avg_pattern_L${i}`, hook);
        } else {
          hook.configure({ positions, offsets });
        }
        hooks.push([p.pattern, hook]);
        if (config.extractHeadValuesProjected) {
          // easyroutine's extract_avg_value: each key weighted by the norm of its projected value
          let norms = running.get(`value_norms_L${i}`);
          let weighted = running.get(`avg_value_weighted_pattern_L${i}`);
          if (!norms || !weighted) {
            const { weight, layout } = this.#projections.of(i);
            norms = nativeHook('value_norms', { weight: weight.native, layout, nHeads: arch.nHeads });
            weighted = nativeHook('value_weighted_pattern', { positions, heads: patternHeads, valueNorms: norms.native });
            running.set(`value_norms_L${i}`, norms);
            running.set(`avg_value_weighted_pattern_L${i}`, weighted);
          } else {
            weighted.configure({ positions });
          }
          hooks.push([p.values, norms], [p.pattern, weighted]);
        }
      }
    });
    return hooks;
  }

  /** Adds the means so far to `cache`, per head. */
  addTo(cache: ActivationCache): void {
    for (const [name, hook] of this.#kernels) {
      if (name.startsWith('value_norms')) continue;
      const info = name.startsWith('avg_pattern') ? '[1, position, position]: running mean over batches' : '[1, position, key]: running mean of pattern x value norm';
      for (const [head, value] of hook.results() as [number, Tensor][]) cache.addWithInfo(`${name}H${head}`, value, info);
    }
  }
}
