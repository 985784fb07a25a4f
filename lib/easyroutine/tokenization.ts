/**
 * Text in and out of a model: the {@link Tokenizer} that HookedModel uses for string prompts and
 * string tokens, and {@link loadTokenizer}, which makes one from a Hugging Face `tokenizer.json`.
 *
 * Tokenizing is `@huggingface/tokenizers`' work (tokenizers.js: pure JS, Hugging Face's own port of
 * the Rust tokenizers' file format, no dependencies, ~0.6 MB), an optional dependency: token ids
 * work without it, and a string prompt without it is a {@link MissingDependencyError} saying what to
 * install. `@huggingface/transformers` would do the same at 474 MB with an install script.
 * @module
 */
import { InvalidArgumentError, MissingDependencyError, describeValue } from '../core/errors';
import type { Model } from '../core/model';

/**
 * Turns token ids into text and, for string prompts, text into token ids: {@link loadTokenizer}'s, or
 * any object with these methods (a tokenizers.js or transformers.js tokenizer has them).
 */
export interface Tokenizer {
  /** The text of these ids. */
  decode(ids: number[]): string;
  /** The ids of a text, with the special tokens the tokenizer adds (e.g. BOS); needed for string prompts. */
  encode?(text: string): number[] | {
    /** The token ids. */
    ids: number[];
  };
  /** The id that fills the left of shorter prompts in a batch (they are masked); default 0. */
  padTokenId?: number;
}

/** A tokenizer that can encode, as {@link loadTokenizer} returns. */
export interface TextTokenizer extends Tokenizer {
  encode(text: string): number[];
  /** The token strings of a text, as the tokenizer splits it (e.g. `['Hello', 'Ġworld']`). */
  tokenize(text: string): string[];
}

/** The names of the tokenizer's files among a TorchScript archive's extra files (`easyroutine export` writes them). */
export const TOKENIZER_FILES = { tokenizer: 'tokenizer.json', config: 'tokenizer_config.json' } as const;

interface TokenizersModule {
  Tokenizer: new (tokenizer: object, config: object) => {
    encode(text: string): { ids: number[] };
    decode(ids: number[]): string;
    tokenize(text: string): string[];
    token_to_id(token: string): number | undefined;
  };
}

function tokenizersModule(): TokenizersModule {
  try {
    return require('@huggingface/tokenizers') as TokenizersModule;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    throw new MissingDependencyError('string prompts and tokenizer.json need the optional package @huggingface/tokenizers, which is not installed; run: npm install @huggingface/tokenizers');
  }
}

function parseJson(what: string, value: string | object): Record<string, unknown> {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  if (typeof value !== 'string') throw new InvalidArgumentError(`loadTokenizer: ${what} must be its JSON text or the parsed object, got ${describeValue(value)}`);
  try {
    const parsed: unknown = JSON.parse(value);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch (error) {
    throw new InvalidArgumentError(`loadTokenizer: ${what} is not valid JSON (${(error as Error).message})`);
  }
  throw new InvalidArgumentError(`loadTokenizer: ${what} must hold a JSON object`);
}

/** A special token in tokenizer_config.json: a string, or `{ content }` (an AddedToken). */
function tokenContent(entry: unknown): string | undefined {
  if (typeof entry === 'string') return entry;
  if (entry !== null && typeof entry === 'object' && typeof (entry as { content?: unknown }).content === 'string') return (entry as { content: string }).content;
  return undefined;
}

/**
 * A tokenizer from a Hugging Face `tokenizer.json` (text or parsed) and, optionally, its
 * `tokenizer_config.json` (which names the pad token and the clean-up rules). Encoding adds the
 * special tokens the file's post-processor adds, as `tokenizer(text)` does in Python.
 * @example
 * ```ts
 * const tokenizer = loadTokenizer(fs.readFileSync('gpt2/tokenizer.json', 'utf8'));
 * tokenizer.encode('Hello world'); // [15496, 995]
 * ```
 */
export function loadTokenizer(tokenizerJson: string | object, tokenizerConfig?: string | object): TextTokenizer {
  const json = parseJson('tokenizer.json', tokenizerJson);
  const config = tokenizerConfig === undefined ? {} : parseJson('tokenizer_config.json', tokenizerConfig);
  if (typeof json.model !== 'object' || json.model === null) throw new InvalidArgumentError("loadTokenizer: tokenizer.json has no 'model' object; is it a Hugging Face tokenizer.json?");
  const { Tokenizer } = tokenizersModule();
  let inner: InstanceType<TokenizersModule['Tokenizer']>;
  try {
    inner = new Tokenizer(json, config);
  } catch (error) {
    throw new InvalidArgumentError(`loadTokenizer: @huggingface/tokenizers cannot read this tokenizer.json: ${(error as Error).message}`);
  }
  const padToken = tokenContent(config.pad_token);
  const filePadding = json.padding as { pad_id?: unknown } | null | undefined;
  const padTokenId = padToken !== undefined ? inner.token_to_id(padToken) : typeof filePadding?.pad_id === 'number' ? filePadding.pad_id : undefined;
  return {
    encode: (text) => inner.encode(text).ids,
    decode: (ids) => inner.decode(ids),
    tokenize: (text) => inner.tokenize(text),
    ...(padTokenId === undefined ? {} : { padTokenId }),
  };
}

/** The tokenizer a model's archive embeds (`easyroutine export` copies the model's tokenizer files), or undefined. */
export function embeddedTokenizer(model: Model): TextTokenizer | undefined {
  const files = model.extraFiles;
  const json = files[TOKENIZER_FILES.tokenizer];
  if (json === undefined || json === '') return undefined;
  const config = files[TOKENIZER_FILES.config];
  return loadTokenizer(json, config === undefined || config === '' ? undefined : config);
}

/** The ids of `text` through `tokenizer`, whichever of encode's return forms it has. */
export function encodeText(tokenizer: Tokenizer, text: string, caller: string): number[] {
  if (typeof tokenizer.encode !== 'function') throw new InvalidArgumentError(`${caller}: the tokenizer has no encode(text), so string prompts cannot be used; pass token ids, or a tokenizer from loadTokenizer()`);
  const encoded = tokenizer.encode(text);
  const ids: unknown = Array.isArray(encoded) ? encoded : encoded?.ids;
  if (!Array.isArray(ids)) throw new InvalidArgumentError(`${caller}: the tokenizer's encode() returned ${describeValue(encoded)}; expected an array of ids or { ids }`);
  const missing = ids.findIndex((id) => !Number.isInteger(id));
  // tokenizers.js leaves a word its vocabulary lacks as undefined when the file names no usable unk token
  if (missing >= 0) throw new InvalidArgumentError(`${caller}: the tokenizer gave no token id for token ${missing} of ${JSON.stringify(text)} (a word outside its vocabulary, and no unknown token?)`);
  if (ids.length === 0) throw new InvalidArgumentError(`${caller}: the prompt ${JSON.stringify(text)} has no tokens`);
  return ids as number[];
}
