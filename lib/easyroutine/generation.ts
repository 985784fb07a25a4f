/**
 * Generation with hooks and interventions: greedy decoding or seeded sampling (temperature, top-k,
 * top-p), stop tokens and a token budget, where every step is a full forward of the sequence so far
 * through {@link HookedModel.forwardAsync}. So it works for any export (no KV cache is needed from
 * the graph), and registered and per-call interventions and your hooks apply at every step, their
 * token positions resolved on the prompt plus the tokens generated so far (`'last'` is the newest).
 * @module
 */
import { InvalidArgumentError, describeValue } from '../core/errors';
import type { HookMap } from '../core/hooks';
import { checkSignal } from '../core/model';
import { Tensor } from '../core/tensor';
import type { ActivationCache } from './activation-cache';
import type { ExtractionConfigInput } from './extraction-config';
import type { HookedInput, HookedModel } from './hooked-model';
import type { Intervention } from './interventions';
import { seededRandom } from './seeded-random';
import type { TokenPosition } from './token-positions';

/** Options of {@link HookedModel.generate}. */
export interface GenerateOptions {
  /** How many tokens to add at most (default 20). */
  maxNewTokens?: number;
  /** Sampling temperature; 0 or absent: greedy (the most likely token every step). */
  temperature?: number;
  /** Sample among the k most likely tokens only. */
  topK?: number;
  /** Sample among the most likely tokens whose probabilities add up to at least p (nucleus sampling). */
  topP?: number;
  /** Seed of the sampler (default 0): the same seed gives the same tokens. */
  seed?: number;
  /** A row stops after any of these tokens (it is kept); the generation stops when every row has. */
  stopTokens?: number[];
  /** Interventions at every step (after the registered ones), positions on the sequence so far. */
  interventions?: Intervention[];
  /** Your own hooks, run at every step. */
  hooks?: HookMap;
  /**
   * What to extract from the finished sequences (one more forward on them), into
   * {@link Generation.cache}; with `extractEachStep`, from every step's forward too.
   */
  extractionConfig?: ExtractionConfigInput;
  /** Where to extract (default `['all']`). */
  targetTokenPositions?: TokenPosition[];
  /** Keep every step's cache in {@link Generation.steps} (the positions resolve on that step's sequence). */
  extractEachStep?: boolean;
  /** Stops between steps and between hooks; the promise rejects with the reason. */
  signal?: AbortSignal;
  /** Called after each step with the tokens just chosen (one per row) and the step number from 1. */
  onToken?: (tokens: number[], step: number) => void;
}

/** What {@link HookedModel.generate} returns. */
export interface Generation {
  /** Per row, the tokens generated (up to and with the stop token). */
  tokens: number[][];
  /** Per row, the prompt's tokens and the generated ones (unpadded). */
  sequences: number[][];
  /** Per row, the generated tokens decoded, when the model has a tokenizer. */
  text?: string[];
  /** The extraction on the finished sequences, when `extractionConfig` was given. */
  cache?: ActivationCache;
  /** Every step's cache, with `extractEachStep`. */
  steps?: ActivationCache[];
}

/**
 * The next token from one row of logits: the argmax without a temperature, else a draw from the
 * softmax of `logits / temperature` restricted to the top k and then to the top-p nucleus.
 */
export function sampleToken(logits: ArrayLike<number>, options: { temperature?: number; topK?: number; topP?: number }, random: () => number): number {
  const vocab = logits.length;
  let best = 0;
  for (let i = 1; i < vocab; i++) if (logits[i]! > logits[best]!) best = i;
  const temperature = options.temperature ?? 0;
  if (temperature === 0) return best;
  const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]!);
  const kept = order.slice(0, Math.min(options.topK ?? vocab, vocab));
  const max = logits[best]!;
  const weights = kept.map((i) => Math.exp((logits[i]! - max) / temperature));
  const total = weights.reduce((a, w) => a + w, 0);
  let cut = kept.length;
  if (options.topP !== undefined) {
    // the smallest prefix whose probability reaches p (always at least one token)
    let sum = 0;
    for (let j = 0; j < kept.length; j++) {
      sum += weights[j]! / total;
      if (sum >= options.topP) {
        cut = j + 1;
        break;
      }
    }
  }
  const nucleus = weights.slice(0, cut);
  const mass = nucleus.reduce((a, w) => a + w, 0);
  let draw = random() * mass;
  for (let j = 0; j < cut; j++) {
    draw -= nucleus[j]!;
    if (draw < 0) return kept[j]!;
  }
  return kept[cut - 1]!;
}

function checkOptions(options: GenerateOptions): void {
  const caller = 'HookedModel.generate';
  const positiveInteger = (name: keyof GenerateOptions) => {
    const v = options[name];
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < 1)) throw new InvalidArgumentError(`${caller}: ${name} must be a positive integer, got ${describeValue(v)}`);
  };
  positiveInteger('maxNewTokens');
  positiveInteger('topK');
  const { temperature, topP, seed, stopTokens, onToken } = options;
  if (temperature !== undefined && (typeof temperature !== 'number' || !(temperature >= 0) || !Number.isFinite(temperature))) throw new InvalidArgumentError(`${caller}: temperature must be a finite number >= 0 (0: greedy), got ${describeValue(temperature)}`);
  if (topP !== undefined && (typeof topP !== 'number' || !(topP > 0 && topP <= 1))) throw new InvalidArgumentError(`${caller}: topP must be a number in (0, 1], got ${describeValue(topP)}`);
  if (seed !== undefined && !Number.isInteger(seed)) throw new InvalidArgumentError(`${caller}: seed must be an integer, got ${describeValue(seed)}`);
  if (stopTokens !== undefined && (!Array.isArray(stopTokens) || !stopTokens.every((t) => Number.isInteger(t) && t >= 0))) throw new InvalidArgumentError(`${caller}: stopTokens must be an array of token ids, got ${describeValue(stopTokens)}`);
  if (onToken !== undefined && typeof onToken !== 'function') throw new InvalidArgumentError(`${caller}: onToken must be a function (tokens, step) => void, got ${describeValue(onToken)}`);
  checkSignal(options.signal, caller);
}

/** {@link HookedModel.generate}: see there. */
export async function generate(model: HookedModel, input: HookedInput, options: GenerateOptions = {}): Promise<Generation> {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`HookedModel.generate: options must be an object, got ${describeValue(options)}`);
  checkOptions(options);
  const texts = typeof input === 'string' ? [input] : Array.isArray(input) && input.length > 0 && input.every((p) => typeof p === 'string') ? (input as readonly string[]) : undefined;
  let prompts: number[][];
  if (texts) prompts = texts.map((text) => model.toTokens(text));
  else if (input instanceof Tensor) prompts = (input.toArray() as number[][]).map((row) => row.map(Number));
  else if (Array.isArray(input) && input.every((row) => Array.isArray(row) && row.every(Number.isInteger))) prompts = (input as number[][]).map((row) => [...row]);
  else throw new InvalidArgumentError(`HookedModel.generate: input must be a prompt, prompts, token id rows or a [batch, seq] tensor, got ${describeValue(input)}`);
  if (prompts.length === 0 || prompts.some((row) => row.length === 0)) throw new InvalidArgumentError('HookedModel.generate: give at least one prompt, each with at least one token');
  const maxNewTokens = options.maxNewTokens ?? 20;
  const random = seededRandom(options.seed ?? 0);
  const stop = new Set(options.stopTokens ?? []);
  const rows = prompts.map((row) => [...row]);
  const generated: number[][] = prompts.map(() => []);
  const done = prompts.map(() => false);
  const steps: ActivationCache[] = [];
  const extraction = options.extractEachStep ? options.extractionConfig : undefined;
  for (let step = 1; step <= maxNewTokens && !done.every(Boolean); step++) {
    options.signal?.throwIfAborted();
    // rows of unequal lengths are left-padded and masked by forward; the newest token is each row's last
    const cache = await model.forwardAsync(rows, {
      targetTokenPositions: extraction ? options.targetTokenPositions ?? ['all'] : ['last'],
      extractionConfig: extraction,
      interventions: options.interventions,
      hooks: options.hooks,
      signal: options.signal,
    });
    const logits = cache.tensor('logits');
    const [batch, positions, vocab] = logits.shape as [number, number, number];
    const values = logits.toFloat32Array();
    const chosen = Array.from({ length: batch }, (_, b) => {
      const last = values.subarray((b * positions + positions - 1) * vocab, (b * positions + positions) * vocab);
      return sampleToken(last, options, random);
    });
    if (extraction) steps.push(cache);
    else cache.dispose();
    chosen.forEach((token, b) => {
      rows[b]!.push(token);
      if (done[b]) return;
      generated[b]!.push(token);
      if (stop.has(token)) done[b] = true;
    });
    options.onToken?.(chosen, step);
  }
  const sequences = prompts.map((prompt, b) => [...prompt, ...generated[b]!]);
  const tokenizer = model.tokenizer;
  const result: Generation = { tokens: generated, sequences, ...(tokenizer ? { text: generated.map((t) => tokenizer.decode(t)) } : {}) };
  if (options.extractEachStep) result.steps = steps;
  if (options.extractionConfig) {
    result.cache = await model.forwardAsync(sequences, { targetTokenPositions: options.targetTokenPositions, extractionConfig: options.extractionConfig, interventions: options.interventions, hooks: options.hooks, signal: options.signal });
  }
  return result;
}
