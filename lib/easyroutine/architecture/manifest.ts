/**
 * The manifest that `easyroutine export` (python/easyroutine_export.py) writes into a TorchScript
 * archive as `easyroutine.json`: the exporter found the architecture by data flow on the original
 * nn.Module, so a file that has one needs no heuristics.
 * @module
 */
import { ModelLoadError } from '../../core/errors';
import type { Model } from '../../core/model';
import { layerPoints, type ArchitectureMapping, type LayerSites } from './mapping';

/** The manifest's name among the archive's extra files. */
export const MANIFEST_FILE = 'easyroutine.json';

/** The manifest versions this package reads. */
const MANIFEST_VERSIONS = [1];

interface ManifestLayer {
  block: string;
  attention: string;
  attention_norm: string | null;
  mlp_norm: string | null;
  post_attention_norm: string | null;
  post_mlp_norm: string | null;
  parallel: boolean;
  mlp: string | null;
  mlp_in: string | null;
  mlp_out: string | null;
  /** The block's output point that is the residual (`output.K`) when the block returns a tuple; absent or null: `output`. */
  resid_out?: string | null;
  projections: { qkv: string[]; fused_qkv: boolean; output: string | null; layout: 'out_in' | 'in_out' | null };
}

/** What the exporter records: the Hugging Face class and config, and the architecture. */
export interface Manifest {
  format: 'easyroutine-manifest';
  version: number;
  hf_class: string | null;
  config: Record<string, unknown> | null;
  torch: string;
  inputs: string[];
  architecture: {
    layers: ManifestLayer[];
    n_heads: number;
    n_kv_heads: number;
    head_dim: number;
    d_model: number;
    rope: { theta: number | null; partial_rotary_factor: number | null } | null;
    final_norm: string | null;
    final_norm_kind: string | null;
    unembed: string | null;
  };
}

/** The manifest of `model`'s file, or undefined when it has none; a ModelLoadError when it is unreadable. */
export function readManifest(model: Model): Manifest | undefined {
  const text = model.extraFiles[MANIFEST_FILE];
  if (text === undefined) return undefined;
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text) as Manifest;
  } catch (error) {
    throw new ModelLoadError(`${model.path}: its ${MANIFEST_FILE} is not JSON (${(error as Error).message}); export the model again with easyroutine export`);
  }
  if (manifest?.format !== 'easyroutine-manifest' || !MANIFEST_VERSIONS.includes(manifest.version)) {
    throw new ModelLoadError(`${model.path}: its ${MANIFEST_FILE} has format ${String(manifest?.format)} version ${String(manifest?.version)}; this package reads version ${MANIFEST_VERSIONS.join(', ')}`);
  }
  return manifest;
}

/** The mapping a manifest records, with the hook point names of `model`. */
export function mappingFromManifest(model: Model, manifest: Manifest): ArchitectureMapping {
  const names = new Set(model.hookPoints().map((p) => p.name));
  const arch = manifest.architecture;
  const layers: LayerSites[] = arch.layers.map((layer) => ({
    block: layer.block,
    attention: layer.attention,
    attentionNorm: layer.attention_norm,
    mlpNorm: layer.mlp_norm,
    mlp: layer.mlp,
    outputProjection: layer.projections.output,
    outputProjectionLayout: layer.projections.layout ?? 'out_in',
    parallel: layer.parallel,
    points: layerPoints({ block: layer.block, attention: layer.attention, mlpNorm: layer.mlp_norm, mlp: layer.mlp, mlpOutput: layer.mlp_out, parallel: layer.parallel, residualOutput: layer.resid_out }, names),
  }));
  return {
    layers,
    nHeads: arch.n_heads,
    nKvHeads: arch.n_kv_heads,
    dHead: arch.head_dim,
    dModel: arch.d_model,
    finalNorm: arch.final_norm,
    unembed: arch.unembed,
    embeddings: layers[0] ? layers[0].points.resid_in : 'input',
    source: 'manifest',
  };
}
