/**
 * Every error the package throws on purpose is an {@link EasyroutineError}; the subclass says what
 * kind of input or state was wrong, and `code` is stable for programmatic checks.
 * @module
 */

/** Base class of all errors thrown by easyroutine. */
export class EasyroutineError extends Error {
  /** A stable identifier, e.g. `ERR_EASYROUTINE_SHAPE`. */
  readonly code: string = 'ERR_EASYROUTINE';
  /** The full underlying message (e.g. a TorchScript traceback) when `message` shows only its root cause. */
  detail?: string;

  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** An argument has the wrong type or an unacceptable value. */
export class InvalidArgumentError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_INVALID_ARGUMENT';
}

/** An unknown dtype, or data whose type does not match the dtype asked for. */
export class DTypeError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_DTYPE';
}

/** A shape that is malformed or does not match the data or the operation. */
export class ShapeError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_SHAPE';
}

/** An index or slice that is malformed or out of range. */
export class TensorIndexError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_INDEX';
}

/** An unknown device, or a device (e.g. CUDA) that is not available. */
export class DeviceError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_DEVICE';
}

/** A tensor or model was used after `dispose()`. */
export class DisposedError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_DISPOSED';
}

/** A model file is missing, unreadable, damaged or not TorchScript. */
export class ModelLoadError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_MODEL_LOAD';
}

/** The model's forward failed (e.g. wrong input dtype or rank); the model stays usable. */
export class ForwardError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_FORWARD';
}

/** A tensor operation failed inside libtorch. */
export class TorchError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_TORCH';
}

/** An operation was cancelled through its AbortSignal (thrown when the signal carries no reason). */
export class AbortError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_ABORTED';
}

/** A token position spec that is malformed or points outside a sequence. */
export class TokenPositionError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_TOKEN_POSITION';
}

/**
 * No native binary matches the libtorch found (or no libtorch is found). The message names the
 * libtorch, the binaries tried and available, and the command that builds one. Thrown when the
 * package is first imported.
 */
export class AddonLoadError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_ADDON_LOAD';
}

/**
 * A feature needs an optional package that is not installed (e.g. string prompts need
 * `@huggingface/tokenizers`); the message names the package and the command that installs it.
 */
export class MissingDependencyError extends EasyroutineError {
  override readonly code = 'ERR_EASYROUTINE_MISSING_DEPENDENCY';
}

/** @internal The classes the native addon instantiates, by name. */
export const errorClasses = {
  InvalidArgumentError,
  DTypeError,
  ShapeError,
  TensorIndexError,
  DeviceError,
  DisposedError,
  ModelLoadError,
  ForwardError,
  TorchError,
  AbortError,
};

/** @internal How a wrong value is named in messages: "null", "an array", "a function", "a string 'x'", "a number 1.5". */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'string') return `a string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `a ${typeof value} ${String(value)}`;
  if (typeof value === 'symbol') return 'a symbol';
  return `an object (${(value as object).constructor?.name ?? 'no prototype'})`;
}
