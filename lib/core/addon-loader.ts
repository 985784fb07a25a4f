/**
 * Choosing and loading the native addon next to the user's libtorch, so that a mismatch is a typed
 * error and never a crash:
 *
 * 1. find the libtorch the process will use: `LIBTORCH` (a directory with `lib/`), else the torch of
 *    `EASYROUTINE_PYTHON` or `python3` (or `/usr/bin/python3`), else Debian's `libtorch-dev`;
 * 2. take the binaries that could match it: a local build (`build/Release`), then the prebuilds named
 *    `easyroutine.torch-<major.minor>-<cpu|cuda>.node` for its version;
 * 3. load each candidate first in a child process, with that libtorch preloaded: an undefined symbol
 *    kills the child (the dynamic linker exits the process), never this one; the child reports the
 *    libtorch version the binary was built for, which must be the one found;
 * 4. preload the libtorch libraries here by absolute path (the preload addon, `cpp/preload`), so the
 *    chosen binary's dependencies resolve to them whatever RUNPATH it was built with, and load it.
 *
 * What the Python and the child reported is cached (`EASYROUTINE_CACHE_DIR`, else
 * `~/.cache/easyroutine`), keyed by the files' paths, sizes and times, so a later process spawns
 * nothing. The build scripts find libtorch with `scripts/libtorch.js`, which also needs headers and
 * the C++ ABI (it imports torch, about a second); this needs only the libraries and the version, read
 * without importing torch.
 * @module
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AddonLoadError } from './errors';

// The version macros of libtorch's headers are read the way the build reads them (the script ships
// in the package).
const { readVersion } = require('../../scripts/libtorch.js') as { readVersion(includeDirs: string[]): string };

/** The libtorch the process will run with. */
export interface RuntimeLibtorch {
  /** Where it came from, e.g. `python (/usr/bin/python3)`, `LIBTORCH`, `system`. */
  source: string;
  libDir: string;
  /** e.g. `2.13.0+cpu`, `1.13.0a0`, `2.6` (Debian's, from the library's file name). */
  version: string;
  cuda: boolean;
  /** The libraries to preload, in dependency order. */
  libraries: string[];
}

/** Which binary was chosen, for runtimeInfo(). */
export interface AddonChoice {
  /** The path of the loaded addon. */
  binary: string;
  libtorch: RuntimeLibtorch | null;
}


const BUILD_COMMAND = 'npx easyroutine build';
const SYSTEM_LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib'];

/** major.minor of a version string. */
export function minorVersion(version: string): string {
  return version.split('.').slice(0, 2).join('.');
}

/** The libraries of a libtorch lib directory, in the order they must be loaded. */
function librariesIn(libDir: string, suffix: string): string[] {
  const cuda = fs.existsSync(path.join(libDir, `libtorch_cuda.so${suffix}`));
  const names = cuda ? ['libc10.so', 'libc10_cuda.so', 'libtorch_cpu.so', 'libtorch_cuda.so', 'libtorch.so'] : ['libc10.so', 'libtorch_cpu.so', 'libtorch.so'];
  return names.map((n) => path.join(libDir, `${n}${suffix}`)).filter((f) => fs.existsSync(f));
}

// ------------------------------------------------------------------------------------ the cache

function cacheFile(env: NodeJS.ProcessEnv): string {
  const dir = env.EASYROUTINE_CACHE_DIR ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'easyroutine');
  return path.join(dir, 'addon-loader.json');
}

/** A key that changes whenever one of `files` does. */
function fileKey(files: string[]): string {
  return files
    .map((f) => {
      try {
        const s = fs.statSync(f);
        return `${f}:${s.size}:${s.mtimeMs}`;
      } catch {
        return `${f}:-`;
      }
    })
    .join('|');
}

class Cache {
  #entries: Record<string, unknown> = {};
  #dirty = false;
  constructor(readonly file: string) {
    try {
      this.#entries = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch {
      // none yet, or unreadable: start empty
    }
  }
  get<T>(key: string): T | undefined {
    return this.#entries[key] as T | undefined;
  }
  set(key: string, value: unknown): void {
    this.#entries[key] = value;
    this.#dirty = true;
  }
  save(): void {
    if (!this.#dirty) return;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      const temporary = `${this.file}.${process.pid}`;
      fs.writeFileSync(temporary, JSON.stringify(this.#entries));
      fs.renameSync(temporary, this.file);
    } catch {
      // a read-only home: nothing is cached, every process probes again
    }
  }
}

// --------------------------------------------------------------------------- finding libtorch

const TORCH_SPEC = "import importlib.util, os; s = importlib.util.find_spec('torch'); print(os.path.dirname(s.origin) if s and s.origin else '')";

function fromPython(python: string, cache: Cache): RuntimeLibtorch | null {
  const resolved = resolveExecutable(python);
  if (!resolved) return null;
  const key = `python ${fileKey([resolved])}`;
  let root = cache.get<string>(key);
  // a cached torch directory that is gone (the environment changed behind a shim) is asked again
  if (root === undefined || (root !== '' && !fs.existsSync(root))) {
    const result = spawnSync(python, ['-c', TORCH_SPEC], { encoding: 'utf8', timeout: 30_000 });
    root = result.status === 0 ? result.stdout.trim() : '';
    cache.set(key, root);
  }
  if (!root) return null;
  const libDir = path.join(root, 'lib');
  const libraries = librariesIn(libDir, '');
  if (libraries.length < 3) return null;
  let version = 'unknown';
  let cuda = false;
  try {
    const text = fs.readFileSync(path.join(root, 'version.py'), 'utf8');
    version = /__version__\s*=\s*'([^']+)'/.exec(text)?.[1] ?? version;
    cuda = /^cuda(?::[^=]*)?=\s*'[^']+'/m.test(text);
  } catch {
    // no version.py: the child's report decides
  }
  return { source: `python (${python})`, libDir, version, cuda, libraries };
}

function resolveExecutable(command: string): string | null {
  if (command.includes('/')) return fs.existsSync(command) ? fs.realpathSync(command) : null;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const file = path.join(dir, command);
    if (dir && fs.existsSync(file)) return fs.realpathSync(file);
  }
  return null;
}

function fromSystem(): RuntimeLibtorch | null {
  for (const dir of SYSTEM_LIB_DIRS) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    // Debian ships libtorch_cpu.so.<major.minor> (the unversioned name only with -dev)
    const versioned = names.map((n) => /^libtorch_cpu\.so\.(\d+\.\d+)$/.exec(n)).find((m) => m !== null);
    if (!versioned) continue;
    const version = versioned[1]!;
    const libraries = librariesIn(dir, `.${version}`);
    if (libraries.length < 3) continue;
    return { source: 'system', libDir: dir, version, cuda: libraries.some((l) => l.includes('cuda')), libraries };
  }
  return null;
}

function fromLibtorchDir(dir: string): RuntimeLibtorch | null {
  const libDir = path.join(dir, 'lib');
  const libraries = librariesIn(libDir, '');
  if (libraries.length < 3) return null;
  const version = readVersion([path.join(dir, 'include')]);
  return { source: 'LIBTORCH', libDir, version, cuda: libraries.some((l) => l.includes('cuda')), libraries };
}

/** The libtorch this process will use, or null when there is none. */
function findRuntimeLibtorch(env: NodeJS.ProcessEnv, cache: Cache): RuntimeLibtorch | null {
  if (env.LIBTORCH) return fromLibtorchDir(env.LIBTORCH);
  const pythons = env.EASYROUTINE_PYTHON ? [env.EASYROUTINE_PYTHON] : ['python3', '/usr/bin/python3'];
  for (const python of pythons) {
    const found = fromPython(python, cache);
    if (found) return found;
  }
  return fromSystem();
}

// ----------------------------------------------------------------------------- the binaries

/** Where the preload addon is: next to the main one's build, or among the prebuilds. */
function preloadAddon(root: string, prebuildDir: string): string | null {
  for (const file of [path.join(root, 'build', 'Release', 'easyroutine_preload.node'), path.join(prebuildDir, 'easyroutine_preload.node')]) {
    if (fs.existsSync(file)) return file;
  }
  return null;
}

/** The prebuild name for a libtorch version and variant. */
export function prebuildName(version: string, cuda: boolean): string {
  return `easyroutine.torch-${minorVersion(version)}-${cuda ? 'cuda' : 'cpu'}.node`;
}

function candidates(root: string, prebuildDir: string, libtorch: RuntimeLibtorch | null): string[] {
  const out: string[] = [];
  const local = path.join(root, 'build', 'Release', 'easyroutine.node');
  if (fs.existsSync(local)) out.push(local);
  if (libtorch && libtorch.version !== 'unknown') {
    const names = libtorch.cuda ? [prebuildName(libtorch.version, true), prebuildName(libtorch.version, false)] : [prebuildName(libtorch.version, false)];
    for (const name of names) if (fs.existsSync(path.join(prebuildDir, name))) out.push(path.join(prebuildDir, name));
  }
  return out;
}

function availablePrebuilds(prebuildDir: string): string[] {
  try {
    return fs.readdirSync(prebuildDir).filter((n) => /^easyroutine\.torch-.*\.node$/.test(n));
  } catch {
    return [];
  }
}

interface Probe {
  ok: boolean;
  libtorchVersion?: string;
  cudaBuild?: boolean;
  error?: string;
}

const PROBE_SCRIPT = `
const [preload, binary, libs] = JSON.parse(process.argv[1]);
if (preload) require(preload).preload(libs);
const addon = require(binary);
const info = addon.runtimeInfo();
process.stdout.write(JSON.stringify({ libtorchVersion: info.libtorchVersion, cudaBuild: info.cudaBuild }));
`;

/** Loads `binary` in a child process with the libraries preloaded and reports what it was built for. */
function probe(binary: string, preload: string | null, libtorch: RuntimeLibtorch | null, cache: Cache): Probe {
  const key = `probe ${fileKey([binary, ...(preload ? [preload] : []), ...(libtorch?.libraries ?? [])])}`;
  const known = cache.get<Probe>(key);
  if (known) return known;
  let found = probeOnce(binary, preload, libtorch);
  // a child killed by a signal before it reported may have met a crash that is not the binary's
  // (one in some hundred processes dies in teardown next to some libtorch builds): asked again, and
  // never cached, so one bad exit does not condemn the binary for good
  if (!found.ok && found.signal) found = probeOnce(binary, preload, libtorch);
  if (!found.signal) cache.set(key, found);
  return found;
}

function probeOnce(binary: string, preload: string | null, libtorch: RuntimeLibtorch | null): Probe & { signal?: boolean } {
  const result = spawnSync(process.execPath, ['-e', PROBE_SCRIPT, JSON.stringify([preload, binary, libtorch?.libraries ?? []])], {
    encoding: 'utf8',
    timeout: 120_000,
    // under Electron, process.execPath is Electron itself: run it as plain Node
    env: { ...process.env, OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE', ELECTRON_RUN_AS_NODE: '1' },
  });
  // the report is what counts: a child that wrote it loaded the binary, whatever its exit
  try {
    const report = JSON.parse(result.stdout) as { libtorchVersion?: unknown; cudaBuild?: unknown };
    if (typeof report.libtorchVersion === 'string' && typeof report.cudaBuild === 'boolean') {
      return { ok: true, libtorchVersion: report.libtorchVersion, cudaBuild: report.cudaBuild };
    }
  } catch {
    // no report: the reason is in stderr
  }
  const why = (result.stderr || result.error?.message || `exit ${result.status ?? result.signal}`).trim().split('\n').filter((l) => l.trim()).slice(-3).join(' ');
  return { ok: false, error: why, ...(result.signal ? { signal: true } : {}) };
}

/**
 * Finds the libtorch, chooses the binary that matches it and loads it (see the module comment).
 * `root` is the package's directory.
 */
export function loadAddon<T>(root: string, env: NodeJS.ProcessEnv = process.env): { addon: T; choice: AddonChoice } {
  // process.dlopen, not require: node-gyp-build would pick by Node-API version and platform, but
  // the choice here turns on the libtorch
  const requireNative = <U>(file: string): U => {
    const module = { exports: {} as U };
    process.dlopen(module, file, os.constants.dlopen.RTLD_NOW);
    return module.exports;
  };
  type Preload = { preload(paths: string[]): void };
  if (env.EASYROUTINE_ADDON) {
    // a given build: loaded as it is (its RUNPATH finds its libtorch)
    const binary = path.resolve(env.EASYROUTINE_ADDON);
    return { addon: requireNative<T>(binary), choice: { binary, libtorch: null } };
  }
  const cache = new Cache(cacheFile(env));
  try {
    const prebuildDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    const libtorch = findRuntimeLibtorch(env, cache);
    const preload = preloadAddon(root, prebuildDir);
    const tried: string[] = [];
    for (const binary of candidates(root, prebuildDir, libtorch)) {
      const report = probe(binary, preload, libtorch, cache);
      const relative = path.relative(root, binary);
      if (!report.ok) {
        tried.push(`${relative}: does not load (${report.error})`);
        continue;
      }
      if (libtorch && libtorch.version !== 'unknown' && minorVersion(report.libtorchVersion!) !== minorVersion(libtorch.version)) {
        tried.push(`${relative}: built for libtorch ${report.libtorchVersion}`);
        continue;
      }
      if (preload && libtorch) requireNative<Preload>(preload).preload(libtorch.libraries);
      return { addon: requireNative<T>(binary), choice: { binary, libtorch } };
    }
    const found = libtorch ? `libtorch ${libtorch.version} (${libtorch.cuda ? 'CUDA' : 'CPU'}) from ${libtorch.source} at ${libtorch.libDir}` : 'no libtorch';
    const available = availablePrebuilds(prebuildDir);
    throw new AddonLoadError(
      [
        `easyroutine: no native binary for ${found}.`,
        ...(tried.length ? ['Tried:', ...tried.map((t) => `  ${t}`)] : []),
        `Prebuilt binaries here (${path.relative(root, prebuildDir) || '.'}): ${available.length ? available.join(', ') : 'none'}.`,
        libtorch
          ? `Build one for this libtorch with: ${BUILD_COMMAND}`
          : 'Install torch for your Python (pip install torch), set EASYROUTINE_PYTHON to a Python that has it, set LIBTORCH to a libtorch directory, or install Debian\'s libtorch-dev; then, if no prebuilt binary matches, run: ' + BUILD_COMMAND,
      ].join('\n'),
    );
  } finally {
    cache.save();
  }
}
