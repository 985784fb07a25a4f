/**
 * easyroutine: mechanistic-interpretability hooks for TorchScript models from Node.js.
 *
 * ```ts
 * import { loadModel, tensor } from 'easyroutine';
 * using model = loadModel('model.pt');
 * const logits = model.forward(tensor([[1, 2, 3]], { dtype: 'int64' }));
 * ```
 * @module
 */
export {
  Tensor,
  tensor,
  fromTypedArray,
  cat,
  stack,
  linear,
  grad,
  DTYPES,
  type DType,
  type Device,
  type IndexItem,
  type Slice,
  type NestedArray,
  type TensorData,
  type TensorOptions,
  type TensorSource,
} from './core/tensor';
export {
  Model,
  loadModel,
  type LoadOptions,
  type ForwardOptions,
  type AsyncForwardOptions,
  type ModelInput,
  type ModelOutput,
  type ModuleInfo,
  type NamedShape,
} from './core/model';
export {
  NativeHook,
  nativeHook,
  nativeHookKernels,
  type Hook,
  type HookContext,
  type HookFunction,
  type HookHandle,
  type HookMap,
  type HookPoint,
  type HookPointKind,
} from './core/hooks';
export * as builtins from './easyroutine/builtins';
export {
  HookedModel,
  type HookedForwardOptions,
  type ExtractCacheOptions,
  type ExtractionBatch,
  type HookedInput,
  type Prediction,
} from './easyroutine/hooked-model';
export {
  residualPatchingSweep,
  headPatchingSweep,
  logitDifference,
  type PatchingMetric,
  type PatchingSweep,
  type PatchingSweepOptions,
  type ResidualSite,
  type LabelledGrid,
} from './easyroutine/patching';
export { attentionPatternsPage, type AttentionPageOptions } from './plots/attention';
export { cacheReportPage } from './plots/report';
export { patchingPage, logitLensPage } from './plots/tables';
export { LogitLens, type LogitLensComputeOptions, type MeasuredNorm } from './easyroutine/cached-logit-lens';
export { logitLens, type LogitLensResult, type LogitLensOptions, type LensCell, type LensTable } from './easyroutine/logit-lens';
export { attributionPatching, type Attribution, type AttributionGrid, type AttributionOptions } from './easyroutine/attribution';
export { computePatching, type ComputePatchingOptions, type PatchingQuery } from './easyroutine/compute-patching';
export { sampleToken, type GenerateOptions, type Generation } from './easyroutine/generation';
export { loadTokenizer, type Tokenizer, type TextTokenizer } from './easyroutine/tokenization';
export type { Intervention, InterventionType } from './easyroutine/interventions';
export { detectArchitecture } from './easyroutine/architecture/detect';
export { describeArchitecture, type ArchitectureMapping, type ArchitectureOverrides, type LayerSites } from './easyroutine/architecture/mapping';
export {
  extractionConfig,
  EXTRACTION_CONFIG_FIELDS,
  type ExtractionConfig,
  type ExtractionConfigInput,
  type PythonExtractionConfig,
  type ResolvedExtractionConfig,
  type LayerHead,
  type PatternReduction,
} from './easyroutine/extraction-config';
export { ActivationSaver, ActivationLoader, QueryResult, type Run, type RunMetadata, type RunQuery } from './easyroutine/activation-store';
export { ActivationCache, formatBytes, cacheKeyGroup, type CacheValue, type Aggregation } from './easyroutine/activation-cache';
export {
  resolveTokenPositions,
  spansFromAttentionMask,
  validateTokenPosition,
  type TokenPosition,
  type SequenceSpan,
  type ResolveOptions,
} from './easyroutine/token-positions';
export { runtimeInfo, setNumThreads, getNumThreads, setCpuFusion, memoryStats, type RuntimeInfo, type MemoryStats } from './core/runtime';
export {
  EasyroutineError,
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
  TokenPositionError,
  AddonLoadError,
  MissingDependencyError,
} from './core/errors';
