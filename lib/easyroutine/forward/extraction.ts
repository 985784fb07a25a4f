/**
 * The extraction kernels of a forward: for a config and resolved positions, the native kernels that
 * gather what the config asks for at each hook point, and how each one's results enter the cache.
 * Kernels are stateless between forwards once reset, so a later forward with the same config and
 * positions reuses them (creating them costs more than a small model's forward); a plan still in
 * use by a concurrent forward is not shared.
 * @module
 */
import { InvalidArgumentError } from '../../core/errors';
import { NativeHook, nativeHook, type Hook } from '../../core/hooks';
import type { ActivationCache } from '../activation-cache';
import type { ArchitectureMapping } from '../architecture/mapping';
import type { OutputProjections } from '../architecture/output-projection';
import { headSelected, selectedHeads, type ResolvedExtractionConfig } from '../extraction-config';
import { remember, touch } from './lru';
import { KernelGroup, type PackedResults } from './packed-results';
import type { Target } from './positions';

/** One kernel of an extraction and how its results enter the cache. */
export interface Collector {
  hook: NativeHook;
  /** Adds what the kernel collected; `index`: this collector's index in {@link Extraction.collectors} (its kernel's in the group). */
  collect(cache: ActivationCache, results: PackedResults, index: number): void;
}

/** The extraction kernels of a plan. */
export interface Extraction {
  collectors: Collector[];
  /** The collectors' kernels, taken together. */
  group: KernelGroup;
  /** The descriptions of the keys the collectors add, which each forward's cache starts from. */
  infos: ReadonlyMap<string, string>;
  hooks: [string, Hook][];
  /** `hooks` by point, for a forward with no other hooks (frozen, arrays too). */
  hookMap: Record<string, Hook[]>;
  /** keepGradient's leaf at the embeddings, when asked for. */
  leaf: NativeHook | undefined;
  /** With keepGradient, each extracted position key's activation as it stays in the autograd graph. */
  gradientSites: { key: string; hook: NativeHook }[];
  busy: boolean;
}

/** How many distinct extraction plans (config x positions) a model keeps ready. */
const EXTRACTION_CACHE_SIZE = 16;

/**
 * A collector for a kernel whose tensors go under fixed keys, in order: keys and descriptions are
 * made once per plan, not per forward.
 */
function fixedKeys(hook: NativeHook, entries: [key: string, info: string][], infos: Map<string, string>): Collector {
  for (const [key, info] of entries) infos.set(key, info);
  return {
    hook,
    collect: (cache, r, index) => {
      const count = Math.min(r.count(index), entries.length);
      for (let i = 0; i < count; i++) cache.addWithInfo(entries[i]![0], r.tensor(index, i), entries[i]![1]);
    },
  };
}

/** Builds and keeps the extraction kernels of one model. */
export class ExtractionKernels {
  readonly #architecture: ArchitectureMapping;
  readonly #projections: OutputProjections;
  readonly #extractions = new Map<string, Extraction>();
  #lastKey: string | undefined;

  readonly #pointNames: ReadonlySet<string>;

  /** `pointNames`: the model's hook point names (a site the mapping names but the graph lacks is a typed error). */
  constructor(architecture: ArchitectureMapping, projections: OutputProjections, pointNames: ReadonlySet<string>) {
    this.#architecture = architecture;
    this.#projections = projections;
    this.#pointNames = pointNames;
  }

  /** What a site whose hook point the model lacks means, for the error. */
  #missingPoint(point: string): string {
    const layers = this.#architecture.layers;
    const i = layers.findIndex((layer) => Object.values(layer.points).includes(point));
    if (i < 0) return `HookedModel: '${point}' is no hook point of this model; pass the site in the architecture overrides`;
    const layer = layers[i]!;
    const site = Object.entries(layer.points).find(([, p]) => p === point)![0];
    if (['queries', 'keys', 'values', 'scores', 'pattern', 'head_output'].includes(site)) {
      return (
        `HookedModel: layer ${i} has no ${site} ('${point}' is no hook point): ${layer.attention} is no softmax attention the engine recognises ` +
        `(a linear-attention or state-space layer?); extract the heads of the layers that have one (attnHeads)`
      );
    }
    return `HookedModel: layer ${i} has no ${site} ('${point}' is no hook point of this model); pass layers[${i}].points.${site} in the architecture overrides`;
  }

  /** Forgets every plan, releasing what their kernels hold. */
  clear(): void {
    for (const extraction of this.#extractions.values()) {
      extraction.leaf?.reset();
      for (const [, hook] of extraction.hooks) if (hook instanceof NativeHook) hook.reset();
    }
    this.#extractions.clear();
    this.#lastKey = undefined;
  }

  /** The kernels for `config` at `target` (`key` names the pair), marked busy until {@link release}. */
  acquire(key: string, config: Readonly<ResolvedExtractionConfig>, target: Target): Extraction {
    const cached = this.#extractions.get(key);
    if (cached && !cached.busy) {
      // a loop asks for the same plan each forward: it is already the most recent
      if (this.#lastKey !== key) touch(this.#extractions, key, cached);
      this.#lastKey = key;
      cached.busy = true;
      return cached;
    }
    const built = this.#build(config, target);
    built.busy = true;
    if (!cached) {
      remember(this.#extractions, key, built, EXTRACTION_CACHE_SIZE);
      this.#lastKey = key;
    }
    return built;
  }

  /** An InvalidArgumentError for an attnHeads entry this model does not have (it would extract nothing). */
  #checkHeads(config: Readonly<ResolvedExtractionConfig>): void {
    if (config.attnHeads === 'all') return;
    const arch = this.#architecture;
    for (const { layer, head } of config.attnHeads) {
      if (layer >= arch.layers.length) throw new InvalidArgumentError(`extractionConfig.attnHeads: layer ${layer} does not exist (the model has ${arch.layers.length} layers, 0 to ${arch.layers.length - 1})`);
      if (head >= arch.nHeads) throw new InvalidArgumentError(`extractionConfig.attnHeads: head ${head} of layer ${layer} does not exist (the model has ${arch.nHeads} heads, 0 to ${arch.nHeads - 1})`);
    }
  }

  /**
   * Resets the kernels of a finished or failed forward for the next one; `collected`: the
   * collectors' results were taken (PackedResults resets them).
   */
  release(extraction: Extraction, collected: boolean): void {
    if (!collected) for (const collector of extraction.collectors) collector.hook.reset();
    for (const site of extraction.gradientSites) site.hook.reset();
    extraction.leaf?.reset();
    extraction.busy = false;
  }

  #build(config: Readonly<ResolvedExtractionConfig>, { positions, groupSizes, offsets, rows, inputLength }: Target): Extraction {
    this.#checkHeads(config);
    const groups = config.avg ? groupSizes : undefined;
    const collectors: Collector[] = [];
    const infos = new Map<string, string>();
    const hooks: [string, Hook][] = [];
    const gradientSites: Extraction['gradientSites'] = [];
    const tokens = (key: string, point: string | undefined, what: string) => {
      if (!point) throw new InvalidArgumentError(`HookedModel: ${what} was not found in this architecture; pass it in the architecture overrides`);
      const hook = nativeHook('positions', { positions, groups, layout: 'tokens', avgOverExample: config.avgOverExample, sequenceLength: inputLength });
      collectors.push(fixedKeys(hook, [[key, `${point}: [batch, ${config.avg ? 'position group' : 'position'}, d]`]], infos));
      if (config.keepGradient) {
        // after the extraction at this point, so that the gradient is of the value it read
        const site = nativeHook('gradient_site');
        gradientSites.push({ key, hook: site });
        hooks.push([point, hook], [point, site]);
        return undefined;
      }
      return [point, hook] as const;
    };
    const add = (entry: readonly [string, NativeHook] | undefined) => entry && hooks.push([entry[0], entry[1]]);
    const arch = this.#architecture;

    // keepGradient's leaf gives input_embeddings itself (easyroutine's key for both)
    if (config.extractEmbed && !config.keepGradient) add(tokens('input_embeddings', arch.embeddings, 'the embeddings'));
    arch.layers.forEach((layer, i) => {
      const p = layer.points;
      if (config.extractResidIn) add(tokens(`resid_in_${i}`, p.resid_in, 'resid_in'));
      if (config.extractResidMid) {
        if (layer.parallel) throw new InvalidArgumentError(`HookedModel: resid_mid does not exist in layer ${i}: its attention and MLP run in parallel on the block's input (resid_in); extract resid_in or mlp_in instead`);
        add(tokens(`resid_mid_${i}`, p.resid_mid, 'the MLP norm (resid_mid is its input)'));
      }
      if (config.extractResidOut) add(tokens(`resid_out_${i}`, p.resid_out, 'resid_out'));
      if (config.extractResidInPostLayernorm) add(tokens(`resid_in_post_layernorm_${i}`, p.attn_in, 'attn_in'));
      if (config.extractAttnIn) add(tokens(`attn_in_${i}`, p.attn_in, 'attn_in'));
      if (config.extractAttnOut) add(tokens(`attn_out_${i}`, p.attn_out, 'attn_out'));
      if (config.extractMlpOut) add(tokens(`mlp_out_${i}`, p.mlp_out, 'the MLP'));
      for (const [flag, name, point] of [
        [config.extractQueries, 'queries', p.queries],
        [config.extractKeys, 'keys', p.keys],
        [config.extractValues, 'values', p.values],
      ] as const) {
        if (!flag) continue;
        const hook = nativeHook('positions', { positions, groups, layout: 'heads', avgOverExample: config.avgOverExample });
        const key = `${name}_L${i}`;
        collectors.push(fixedKeys(hook, [[key, `${point}: [batch, position, heads * d_head]`]], infos));
        hooks.push([point, hook]);
      }
      for (const [flag, name, point, kv] of [
        [config.extractHeadQueries, 'head_queries', p.queries, false],
        [config.extractHeadKeys, 'head_keys', p.keys, true],
        [config.extractHeadValues, 'head_values', p.values, true],
      ] as const) {
        if (!flag) continue;
        const hook = nativeHook('positions', { positions, groups, layout: 'per_head', avgOverExample: config.avgOverExample });
        collectors.push({
          hook,
          collect: (cache, r, index) => {
            // one tensor per head of the value: under grouped-query attention, fewer than the query heads
            const count = r.count(index);
            if (count === 0) return;
            const perHead = Array.from({ length: count }, (_, j) => r.tensor(index, j));
            const group = kv ? arch.nHeads / count : 1;
            for (let head = 0; head < arch.nHeads; head++) {
              if (!headSelected(config, i, head)) continue;
              // query head h reads key/value head h // (H / Hkv): the same tensor under each key
              cache.addWithInfo(`${name}_L${i}H${head}`, perHead[Math.floor(head / group)]!, `${point}: [batch, position, d_head]`);
            }
          },
        });
        hooks.push([point, hook]);
      }
      // head_out and projected_value carry b_O / H each, so the heads' outputs sum to attn_out
      // (easyroutine added b_O // H to head_out and the whole b_O to every projected value)
      for (const [flag, name, point] of [
        [config.extractHeadOut, 'head_out', p.head_output],
        [config.extractHeadValuesProjected, 'projected_value', p.values],
        [config.extractHeadKeysProjected, 'projected_key', p.keys],
        [config.extractHeadQueriesProjected, 'projected_query', p.queries],
      ] as const) {
        if (!flag) continue;
        const heads = selectedHeads(config, i, arch.nHeads);
        if (heads.length === 0) continue;
        const { weight, bias, layout } = this.#projections.of(i);
        const hook = nativeHook('project_heads', { positions, groups, avgOverExample: config.avgOverExample, weight: weight.native, layout, bias: name === 'head_out' || name === 'projected_value' ? bias?.native : undefined, heads, nHeads: arch.nHeads });
        collectors.push(fixedKeys(hook, heads.map((head) => [`${name}_L${i}H${head}`, `${point} x W_O block: [batch, position, d_model]`]), infos));
        hooks.push([point, hook]);
      }
      const patternHeads = selectedHeads(config, i, arch.nHeads);
      if (config.extractAttnPattern && patternHeads.length > 0) {
        const heads = patternHeads;
        const hook = nativeHook('pattern', {
          positions,
          groups: groupSizes,
          rows: rows?.map((g) => g.flat()),
          rowGroups: rows?.[0]!.map((g) => g.length),
          offsets,
          heads,
          reduction: config.attnPatternAvg,
          sequenceLength: inputLength,
        });
        const info = rows && config.attnPatternAvg !== 'none' ? '[batch, row group, position group]' : '[batch, position, position]';
        collectors.push(fixedKeys(hook, heads.map((head) => [`pattern_L${i}H${head}`, info]), infos));
        hooks.push([p.pattern, hook]);
      }
    });
    if (config.extractLastLayernorm) {
      if (!arch.finalNorm) throw new InvalidArgumentError('HookedModel: no final norm found for last_layernorm; pass finalNorm in the architecture overrides');
      const hook = nativeHook('statistics', { positions });
      collectors.push({
        hook,
        collect: (cache, r, index) => {
          if (r.count(index) === 0) return;
          const [mean, variance, secondMoment] = [0, 1, 2].map((j) => r.tensor(index, j));
          cache.addWithInfo('last_layernorm', { mean: mean!, variance: variance!, second_moment: secondMoment! }, '{mean, variance, second_moment}: [batch, position]');
        },
      });
      hooks.push([`${arch.finalNorm}:input`, hook]);
    }
    let leaf: NativeHook | undefined;
    if (config.keepGradient) {
      leaf = nativeHook('gradient_leaf');
      hooks.push([arch.embeddings, leaf]);
    }
    if (config.saveLogits) {
      // a model may return fewer positions than it was given (generation exports: the last one only);
      // the kernel then reads the target positions among those, or names the case. `avg` leaves the
      // logits per position, as easyroutine does (mapping_index says 'avg' for the activations)
      const hook = nativeHook('positions', { positions, layout: 'tokens', avgOverExample: config.avgOverExample, inputLength });
      collectors.push(fixedKeys(hook, [['logits', '[batch, position, vocabulary]; from an output with fewer positions than the input, its last positions']], infos));
      hooks.push(['output', hook]);
    }

    for (const [point] of hooks) if (!this.#pointNames.has(point)) throw new InvalidArgumentError(this.#missingPoint(point));
    const hookMap: Record<string, Hook[]> = {};
    for (const [point, hook] of hooks) (hookMap[point] ??= []).push(hook);
    // frozen: the model then finds its hook set by the map alone
    for (const list of Object.values(hookMap)) Object.freeze(list);
    Object.freeze(hookMap);
    return { collectors, infos, group: new KernelGroup(collectors.map((c) => c.hook.native)), hooks, hookMap, leaf, gradientSites, busy: false };
  }
}
