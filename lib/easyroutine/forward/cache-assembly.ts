/**
 * The cache of one forward: what the extraction kernels collected under easyroutine's keys, the
 * gradient of keepGradient, `input_ids`, `mapping_index`, `token_dict`, `target_tokens` and the metadata.
 * @module
 */
import { InvalidArgumentError } from '../../core/errors';
import { grad, tensor, type Tensor } from '../../core/tensor';
import { ActivationCache } from '../activation-cache';
import type { ArchitectureMapping } from '../architecture/mapping';
import type { ResolvedExtractionConfig } from '../extraction-config';
import type { TokenPosition } from '../token-positions';
import type { Extraction } from './extraction';

/** What a forward's cache is made from. */
export interface ForwardRecord {
  architecture: ArchitectureMapping;
  /** Decodes one token id for `target_tokens`, when the model has a tokenizer. */
  decodeToken: ((id: number) => string) | undefined;
  ids: Tensor;
  config: Readonly<ResolvedExtractionConfig>;
  specs: TokenPosition[];
  perRow: number[][][];
  groupSizes: number[];
  positions: number[][];
  /** Whether `positions` are every position of every row, in order. */
  wholeSequence: boolean;
  extraction: Extraction;
  pivotPositions: number[] | undefined;
  vocabularyIndex: number | undefined;
}

/** Builds the cache of one forward from what the extraction's kernels collected. */
export function assembleCache(output: Tensor | null, record: ForwardRecord): ActivationCache {
  const { architecture: arch, decodeToken, ids, config, specs, perRow, groupSizes, positions, extraction } = record;
  const { leaf, collectors } = extraction;
  const cache = new ActivationCache();
  cache._shareInfo(extraction.infos);
  // t[b, positions[b]] for every row b, by advanced indexing; the indices are made on first use
  let index: [rows: Tensor, columns: Tensor] | undefined;
  const atTargets = (t: Tensor) => t.index(...(index ??= [tensor(positions.map((_, b) => [b]), { dtype: 'int64' }), tensor(positions, { dtype: 'int64' })]));
  if (leaf) {
    const embeddings = leaf.results() as Tensor;
    const last = output!.index(0, -1);
    const vocabulary = last.shape.at(-1) ?? 0;
    const vocabularyIndex = record.vocabularyIndex ?? argmax(last.toFloat32Array());
    if (!Number.isInteger(vocabularyIndex) || vocabularyIndex < 0 || vocabularyIndex >= vocabulary) {
      throw new InvalidArgumentError(`HookedModel.forward: vocabularyIndex ${vocabularyIndex} is not a token of the vocabulary (0 to ${vocabulary - 1})`);
    }
    // the extracted activations as they stay in the autograd graph: one backward for all of them
    const sites = extraction.gradientSites.map(({ key, hook }) => ({ key, value: hook.results() as Tensor | undefined })).filter((s): s is { key: string; value: Tensor } => s.value !== undefined);
    const [gradient, ...siteGradients] = grad(last.index(vocabularyIndex), [embeddings, ...sites.map((s) => s.value)]);
    // at the target positions, as easyroutine returns them
    cache.addWithInfo('input_embeddings', atTargets(embeddings), `${arch.embeddings} at the target positions: [batch, position, d_model], from a leaf that requires grad`);
    cache.addWithInfo('input_embeddings_gradients', atTargets(gradient!), `d logits[0, -1, ${vocabularyIndex}] / d input_embeddings, at the target positions: [batch, position, d_model]`);
    sites.forEach(({ key }, i) => {
      const g = siteGradients[i];
      // an activation the logit does not depend on has no gradient, and no key
      const value = g ? atTargets(g) : null;
      if (value) cache.addWithInfo(`${key}_gradients`, value, `d logits[0, -1, ${vocabularyIndex}] / d ${key}, at the target positions: [batch, position, d]`);
    });
  }
  const results = extraction.group.take();
  for (let i = 0; i < collectors.length; i++) collectors[i]!.collect(cache, results, i);
  if (config.saveInputIds) {
    const int64 = ids.dtype === 'int64' ? ids : ids.to('int64');
    // at every position the gather is a copy, without the two index tensors
    cache.addWithInfo('input_ids', record.wholeSequence ? int64.clone() : atTargets(int64), '[batch, position]: token ids');
    if (int64 !== ids) int64.dispose();
  }
  index?.forEach((t) => t.dispose());
  // mapping_index, token_dict and target_tokens are made when first read (extraction loops seldom
  // read them, and making them cost more than the tensors), from copies of what they need: the
  // caller may change its specs and ids after the forward
  const names = specs.map((spec) => (typeof spec === 'string' ? spec : JSON.stringify(spec)));
  const avg = config.avg;
  cache._setDeferred('mapping_index', () => {
    let start = 0;
    const mappingIndex: Record<string, number[] | string> = {};
    names.forEach((name, i) => {
      const count = avg ? 1 : groupSizes[i]!;
      mappingIndex[name] = Array.from({ length: count }, (_, j) => start + j);
      start += count;
    });
    // easyroutine marks averaged indices so (the logits stay per position)
    if (avg) mappingIndex['info'] = 'avg';
    return mappingIndex;
  });
  // token_dict: per spec, the positions row 0 resolved to, as easyroutine has it; target_tokens: the
  // tokens there (text with a tokenizer, else ids)
  const rowPositions = perRow[0]!;
  cache._setDeferred('token_dict', () => Object.fromEntries(names.map((name, i) => [name, rowPositions[i]!.slice()])));
  const row = firstRow(ids);
  cache._setDeferred('target_tokens', () => Object.fromEntries(names.map((name, i) => [name, rowPositions[i]!.map((p) => (decodeToken ? decodeToken(row[p]!) : row[p]!))])));
  cache.metadata = { targetTokenPositions: specs, pivotPositions: record.pivotPositions ?? null, extractionConfig: config };
  return cache;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A copy of row 0's token ids as numbers (the ids may change after the forward). Read as 32-bit
 * words where an id fits one: reading a BigInt64Array element allocates a BigInt, and slicing one
 * allocates an ArrayBuffer outside the heap, which cost a forward more than the gather.
 */
function firstRow(ids: Tensor): number[] {
  const length = ids.shape[1] ?? 0;
  const values = ids.dtype === 'int64' && ids.device === 'cpu' && ids.isContiguous ? (ids.data as BigInt64Array) : (ids.to('int64').index(0).copyData() as BigInt64Array);
  const row = new Array<number>(length);
  if (!LITTLE_ENDIAN) {
    for (let p = 0; p < length; p++) row[p] = Number(values[p]!);
    return row;
  }
  const words = new Uint32Array(values.buffer, values.byteOffset, length * 2);
  for (let p = 0; p < length; p++) row[p] = words[2 * p + 1] === 0 ? words[2 * p]! : Number(values[p]!);
  return row;
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

