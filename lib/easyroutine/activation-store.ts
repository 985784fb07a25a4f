/**
 * easyroutine's ActivationSaver and ActivationLoader: caches kept on disk in its directory layout,
 * `BASE_DIR/<experiment>/<model>/<save time>/`, each run a `tensor.safetensors` (easyroutine:
 * `tensor.pt`, a pickle) and a `metadata.json` with easyroutine's keys (`tag`, `save_time`,
 * `experiment_name`, `model_name`, `target_token_positions`, `pivot_positions`, `interventions`,
 * `extraction_config`, and yours), queried by any of them. Files are streamed both ways (see
 * `./safetensors-file`), so a run of any size saves and loads.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, describeValue } from '../core/errors';
import { Tensor } from '../core/tensor';
import { ActivationCache } from './activation-cache';

/** What metadata.json holds: easyroutine's keys, and whatever `otherMetadata` added. */
export interface RunMetadata {
  /** The tag given to `save`, or null. */
  tag: string | null;
  /** `YYYY-MM-DD HH:MM:SS`, local time, as easyroutine writes it. */
  save_time: string;
  /** The saver's experiment. */
  experiment_name: string;
  /** The model's name (its folder has `/` as `_`). */
  model_name: string;
  /** The token positions the cache was extracted at. */
  target_token_positions: unknown;
  /** The pivot positions of `inputs-partition-K` specs, or null. */
  pivot_positions: unknown;
  /** The interventions of the extraction (a patch tensor named by its shape). */
  interventions: unknown;
  /** The resolved extraction config. */
  extraction_config: unknown;
  /** What `otherMetadata` added. */
  [key: string]: unknown;
}

/** One saved run. */
export interface Run {
  /** Its experiment's folder. */
  experiment: string;
  /** Its model's folder. */
  model: string;
  /** Its directory. */
  dir: string;
  /** Its metadata.json. */
  metadata: RunMetadata;
}

const TENSORS_FILE = 'tensor.safetensors';
const METADATA_FILE = 'metadata.json';

/** easyroutine's folder name for a model (`org/name` -> `org_name`). */
function modelFolder(name: string): string {
  return name.replace(/\//g, '_');
}

function saveTime(date: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/** Interventions as JSON: a patch tensor is named by its shape (the values are in the run's tensors when saved there). */
function plainInterventions(value: unknown): unknown {
  if (!Array.isArray(value)) return value ?? null;
  return value.map((iv: Record<string, unknown>) => (iv && iv['patchingValues'] instanceof Tensor ? { ...iv, patchingValues: `tensor [${(iv['patchingValues'] as Tensor).shape.join(', ')}]` } : iv));
}

/** Saves caches in easyroutine's layout under `baseDir/experimentName`. */
export class ActivationSaver {
  /** Where experiments are kept. */
  readonly baseDir: string;
  /** The experiment this saver saves under. */
  readonly experimentName: string;

  constructor(baseDir: string, experimentName = 'default') {
    if (typeof baseDir !== 'string' || baseDir === '') throw new InvalidArgumentError(`ActivationSaver: baseDir must be a directory path, got ${describeValue(baseDir)}`);
    if (typeof experimentName !== 'string' || experimentName === '' || /[\\/]/.test(experimentName)) throw new InvalidArgumentError(`ActivationSaver: experimentName must be a non-empty name without slashes, got ${describeValue(experimentName)}`);
    this.baseDir = baseDir;
    this.experimentName = experimentName;
  }

  /** A saver at `$ACTIVATION_BASE_DIR`, as easyroutine's `from_env`. */
  static fromEnv(experimentName = 'default'): ActivationSaver {
    const base = process.env.ACTIVATION_BASE_DIR;
    if (!base) throw new InvalidArgumentError('ActivationSaver.fromEnv: ACTIVATION_BASE_DIR is not set');
    return new ActivationSaver(base, experimentName);
  }

  /**
   * Saves `cache` as a new run and returns its directory. Its positions, config and interventions
   * come from the cache's metadata (what extractCache records); `modelName` defaults to the
   * metadata's `modelName`. Two saves in the same second get distinct folders (`…_2`).
   */
  save(cache: ActivationCache, options: { modelName?: string; tag?: string; otherMetadata?: Record<string, unknown>; now?: Date } = {}): string {
    if (!(cache instanceof ActivationCache)) throw new InvalidArgumentError(`ActivationSaver.save: expected an ActivationCache, got ${describeValue(cache)}`);
    const recorded = cache.metadata;
    const modelName = options.modelName ?? (typeof recorded['modelName'] === 'string' ? recorded['modelName'] : undefined);
    if (!modelName) throw new InvalidArgumentError("ActivationSaver.save: no model name: pass { modelName }, or save a cache from extractCache (its metadata names the model)");
    const time = saveTime(options.now ?? new Date());
    const metadata: RunMetadata = {
      tag: options.tag ?? null,
      save_time: time,
      experiment_name: this.experimentName,
      model_name: modelName,
      target_token_positions: recorded['targetTokenPositions'] ?? null,
      pivot_positions: recorded['pivotPositions'] ?? null,
      interventions: plainInterventions(recorded['interventions']),
      extraction_config: recorded['extractionConfig'] ?? null,
      ...options.otherMetadata,
    };
    const parent = path.join(this.baseDir, this.experimentName, modelFolder(modelName));
    fs.mkdirSync(parent, { recursive: true });
    const folder = time.replace(/:/g, '_').replace(' ', '_');
    let dir = path.join(parent, folder);
    for (let n = 2; fs.existsSync(dir); n++) dir = path.join(parent, `${folder}_${n}`);
    fs.mkdirSync(dir);
    cache.save(path.join(dir, TENSORS_FILE));
    fs.writeFileSync(path.join(dir, METADATA_FILE), `${JSON.stringify(metadata, null, 2)}\n`);
    return dir;
  }
}

/** What {@link ActivationLoader.query} matches; every given field must equal the run's. */
export interface RunQuery {
  /** Only this experiment (default: every one). */
  experimentName?: string;
  /** Only this model (as given to `save`, `/` allowed). */
  modelName?: string;
  /** The positions the cache was extracted at. */
  targetTokenPositions?: unknown[];
  /** The pivot positions. */
  pivotPositions?: number[];
  /** `YYYY-MM-DD HH:MM:SS`. */
  saveTime?: string;
  /** The tag. */
  tag?: string;
  /** Compared with the run's as a whole (the resolved config, as extractCache records it). */
  extractionConfig?: Record<string, unknown>;
  /** The interventions, as metadata.json holds them. */
  interventions?: unknown[];
  /** Keys of `otherMetadata`, each equal. */
  customKeys?: Record<string, unknown>;
}

/** Equal as JSON values, whatever the key order of objects. */
function sameJson(a: unknown, b: unknown): boolean {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

/** The runs a query found, oldest first. */
export class QueryResult {
  /** The runs, oldest first. */
  readonly runs: Run[];

  constructor(runs: Run[]) {
    this.runs = [...runs].sort((a, b) => a.metadata.save_time.localeCompare(b.metadata.save_time) || a.dir.localeCompare(b.dir));
  }

  /** How many runs matched. */
  get length(): number {
    return this.runs.length;
  }

  #pick(which: string | number, caller: string): Run {
    if (this.runs.length === 0) throw new InvalidArgumentError(`QueryResult.${caller}: the query found no runs`);
    if (typeof which === 'string') {
      const run = this.runs.find((r) => path.basename(r.dir) === which || r.metadata.save_time === which);
      if (!run) throw new InvalidArgumentError(`QueryResult.${caller}: no run at time '${which}'; there are ${this.runs.map((r) => path.basename(r.dir)).join(', ')}`);
      return run;
    }
    if (!Number.isInteger(which)) throw new InvalidArgumentError(`QueryResult.${caller}: give a time folder or save_time, or an index (-1: the newest), got ${describeValue(which)}`);
    const index = which < 0 ? this.runs.length + which : which;
    const run = this.runs[index];
    if (!run) throw new InvalidArgumentError(`QueryResult.${caller}: index ${which} is out of range (${this.runs.length} runs)`);
    return run;
  }

  /** Loads a run (by its time folder, its save_time, or an index: -1 is the newest), streamed from disk. */
  load(which: string | number = -1): {
    /** The run's cache. */
    cache: ActivationCache;
    /** Its metadata.json. */
    metadata: RunMetadata;
  } {
    const run = this.#pick(which, 'load');
    return { cache: ActivationCache.load(path.join(run.dir, TENSORS_FILE)), metadata: run.metadata };
  }

  /** Deletes a run's files and folder. */
  remove(which: string | number): void {
    const run = this.#pick(which, 'remove');
    for (const file of [TENSORS_FILE, METADATA_FILE]) fs.rmSync(path.join(run.dir, file), { force: true });
    fs.rmdirSync(run.dir);
    this.runs.splice(this.runs.indexOf(run), 1);
  }

  /** One line per run, as easyroutine prints a query. */
  toString(): string {
    return this.runs.map((r, i) => `${i} - Experiment: ${r.experiment}, Model: ${r.model}, Time Folder: ${path.basename(r.dir)}${r.metadata.tag ? `\n  Tag: ${r.metadata.tag}` : ''}`).join('\n');
  }
}

/** Finds the runs an {@link ActivationSaver} wrote, by their metadata. */
export class ActivationLoader {
  /** Where experiments are kept. */
  readonly baseDir: string;
  /** The experiment of {@link ActivationLoader.fromSaver}'s saver (queries look in every one unless told). */
  readonly experimentName: string;

  constructor(baseDir: string, experimentName = 'default') {
    if (typeof baseDir !== 'string' || baseDir === '') throw new InvalidArgumentError(`ActivationLoader: baseDir must be a directory path, got ${describeValue(baseDir)}`);
    this.baseDir = baseDir;
    this.experimentName = experimentName;
  }

  /** A loader where `saver` saves. */
  static fromSaver(saver: ActivationSaver): ActivationLoader {
    return new ActivationLoader(saver.baseDir, saver.experimentName);
  }

  /** A loader at `$ACTIVATION_BASE_DIR`. */
  static fromEnv(experimentName = 'default'): ActivationLoader {
    const base = process.env.ACTIVATION_BASE_DIR;
    if (!base) throw new InvalidArgumentError('ActivationLoader.fromEnv: ACTIVATION_BASE_DIR is not set');
    return new ActivationLoader(base, experimentName);
  }

  /** The runs whose metadata matches every field given (all experiments unless `experimentName`). */
  query(query: RunQuery = {}): QueryResult {
    const dirs = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name) : []);
    const runs: Run[] = [];
    const experiments = query.experimentName ? [query.experimentName] : dirs(this.baseDir);
    for (const experiment of experiments) {
      const models = query.modelName ? [modelFolder(query.modelName)] : dirs(path.join(this.baseDir, experiment));
      for (const model of models) {
        for (const time of dirs(path.join(this.baseDir, experiment, model))) {
          const dir = path.join(this.baseDir, experiment, model, time);
          const file = path.join(dir, METADATA_FILE);
          if (!fs.existsSync(file)) continue;
          let metadata: RunMetadata;
          try {
            metadata = JSON.parse(fs.readFileSync(file, 'utf8')) as RunMetadata;
          } catch {
            continue; // not a run of ours
          }
          const checks: [unknown, unknown][] = [
            [query.tag, metadata.tag],
            [query.saveTime, metadata.save_time],
            [query.targetTokenPositions, metadata.target_token_positions],
            [query.pivotPositions, metadata.pivot_positions],
            [query.extractionConfig, metadata.extraction_config],
            [query.interventions, metadata.interventions],
          ];
          if (checks.some(([wanted, actual]) => wanted !== undefined && !sameJson(wanted, actual))) continue;
          if (query.customKeys && Object.entries(query.customKeys).some(([k, v]) => !sameJson(v, metadata[k]))) continue;
          runs.push({ experiment, model, dir, metadata });
        }
      }
    }
    return new QueryResult(runs);
  }
}
