#!/usr/bin/env node
'use strict';
// Finds the libtorch to build against. The one implementation behind CMakeLists.txt and binding.gyp,
// so both builds always agree on headers, libraries and ABI.
//
// Order (first hit wins):
//   1. LIBTORCH=<dir>                    a libtorch directory (include/, lib/); LIBTORCH_INCLUDE and
//                                        LIBTORCH_LIB override its two halves
//   2. an importable Python `torch`      PYTHON, else python3 on PATH, else /usr/bin/python3;
//                                        LIBTORCH_USE_PYTORCH=1 makes this the only source tried
//   3. the system libtorch               Debian/Ubuntu `libtorch-dev` (LIBTORCH_SYSTEM_DIRS, a
//                                        colon-separated list, replaces where to look)
//
// Usage: node scripts/libtorch.js [--json | --cmake | --gyp FIELD | --report | --python]
// (--python prints the Python that imports torch, used to generate the test fixtures)

const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const DEFAULT_SYSTEM_LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib'];

class LibtorchNotFound extends Error {}

function readVersion(includeDirs) {
  for (const dir of includeDirs) {
    // torch >= 2.13 keeps the version macros in torch/headeronly/version.h
    for (const rel of ['torch/csrc/api/include/torch/version.h', 'torch/version.h', 'torch/headeronly/version.h']) {
      const file = path.join(dir, rel);
      if (!fs.existsSync(file)) continue;
      const text = fs.readFileSync(file, 'utf8');
      const part = (name) => (text.match(new RegExp(`#define\\s+TORCH_VERSION_${name}\\s+(\\d+)`)) || [])[1];
      const [major, minor, patch] = [part('MAJOR'), part('MINOR'), part('PATCH')];
      if (major !== undefined) return `${major}.${minor}.${patch}`;
    }
  }
  return 'unknown';
}

function libraryExists(libDir, name) {
  return fs.existsSync(path.join(libDir, `lib${name}.so`));
}

// CUDA libraries must be linked with --no-as-needed: nothing references their symbols directly, so a
// plain link silently drops them and CUDA reports itself unavailable at run time.
function describe(source, root, includeDirs, libDir, cxx11Abi) {
  const required = ['torch', 'torch_cpu', 'c10'];
  for (const lib of required) {
    if (!libraryExists(libDir, lib)) {
      throw new LibtorchNotFound(`${source}: lib${lib}.so is missing from ${libDir}`);
    }
  }
  if (!includeDirs.some((d) => fs.existsSync(path.join(d, 'torch/script.h')))) {
    throw new LibtorchNotFound(`${source}: torch/script.h is missing from ${includeDirs.join(', ')}`);
  }
  const cudaLibs = ['torch_cuda', 'c10_cuda'].filter((lib) => libraryExists(libDir, lib));
  return {
    source,
    root,
    version: readVersion(includeDirs),
    cuda: cudaLibs.includes('torch_cuda'),
    includeDirs,
    libDir,
    libraries: required,
    cudaLibraries: cudaLibs,
    cxx11Abi,
  };
}

function abiFromTorchConfig(root) {
  const candidates = [
    path.join(root, 'share/cmake/Torch/TorchConfig.cmake'),
    path.join(root, 'lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake'),
  ];
  for (const file of candidates) {
    if (!fs.existsSync(file)) continue;
    const m = fs.readFileSync(file, 'utf8').match(/_GLIBCXX_USE_CXX11_ABI=([01])/);
    if (m) return Number(m[1]);
  }
  return 1;
}

function fromLibtorchDir(env) {
  const root = path.resolve(env.LIBTORCH);
  const include = env.LIBTORCH_INCLUDE ? path.resolve(env.LIBTORCH_INCLUDE) : path.join(root, 'include');
  const libDir = env.LIBTORCH_LIB ? path.resolve(env.LIBTORCH_LIB) : path.join(root, 'lib');
  const includeDirs = [include, path.join(include, 'torch/csrc/api/include')];
  return describe('LIBTORCH', root, includeDirs, libDir, abiFromTorchConfig(root));
}

const PYTHON_PROBE = `
import json, os, torch, torch.utils.cpp_extension as ext
print(json.dumps({
  "root": os.path.dirname(torch.__file__),
  "include": ext.include_paths(),
  "lib": ext.library_paths()[0],
  "abi": int(torch._C._GLIBCXX_USE_CXX11_ABI),
  "version": torch.__version__,
}))
`;

function pythonCandidates(env) {
  if (env.PYTHON) return [env.PYTHON];
  return ['python3', '/usr/bin/python3'];
}

/** The first Python that imports torch (for generating fixtures), or null. */
function findPythonWithTorch(env = process.env) {
  for (const python of pythonCandidates(env)) {
    try {
      execFileSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
      return python;
    } catch {
      // not this one
    }
  }
  return null;
}

function fromPython(env) {
  const errors = [];
  for (const python of pythonCandidates(env)) {
    let probe;
    try {
      probe = JSON.parse(
        execFileSync(python, ['-c', PYTHON_PROBE], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
      );
    } catch (err) {
      errors.push(`${python}: torch not importable`);
      continue;
    }
    const includeDirs = probe.include.filter((d) => !d.endsWith('TH') && !d.endsWith('THC'));
    return describe(`python (${python}, torch ${probe.version})`, probe.root, includeDirs, probe.lib, probe.abi);
  }
  throw new LibtorchNotFound(errors.join('; '));
}

// LIBTORCH_SYSTEM_DIRS (':'-separated) replaces the directories searched, e.g. for a multiarch layout.
function systemLibDirs(env) {
  return env.LIBTORCH_SYSTEM_DIRS ? env.LIBTORCH_SYSTEM_DIRS.split(':') : DEFAULT_SYSTEM_LIB_DIRS;
}

function fromSystem(env) {
  for (const libDir of systemLibDirs(env)) {
    if (!libraryExists(libDir, 'torch')) continue;
    const includeDirs = ['/usr/include', '/usr/include/torch/csrc/api/include'];
    return describe('system', '/usr', includeDirs, libDir, abiFromTorchConfig(path.dirname(libDir)));
  }
  throw new LibtorchNotFound('no libtorch.so in ' + systemLibDirs(env).join(', '));
}

/** Returns the libtorch description, or throws LibtorchNotFound with every reason collected. */
function findLibtorch(env = process.env) {
  if (env.LIBTORCH) return fromLibtorchDir(env);
  if (env.LIBTORCH_USE_PYTORCH === '1') return fromPython(env);
  const reasons = [];
  for (const attempt of [fromPython, fromSystem]) {
    try {
      return attempt(env);
    } catch (err) {
      if (!(err instanceof LibtorchNotFound)) throw err;
      reasons.push(err.message);
    }
  }
  throw new LibtorchNotFound(
    [
      'easyroutine: no libtorch found. Provide one of:',
      '  1. LIBTORCH=/path/to/libtorch (a directory with include/ and lib/)',
      '  2. a Python with torch installed (PYTHON=/path/to/python, LIBTORCH_USE_PYTORCH=1 to force it)',
      '  3. the system package: apt-get install libtorch-dev libopenblas0-pthread (or: bash scripts/setup.sh)',
      'Tried: ' + reasons.join('; '),
    ].join('\n'),
  );
}

function linkFlags(info) {
  const flags = [`-L${info.libDir}`, `-Wl,-rpath,${info.libDir}`];
  flags.push(...info.libraries.map((l) => `-l${l}`));
  if (info.cudaLibraries.length) {
    flags.push('-Wl,--no-as-needed', ...info.cudaLibraries.map((l) => `-l${l}`), '-Wl,--as-needed');
  }
  return flags;
}

// The C++ standard libtorch's headers need: ATen requires C++20 from torch 2.14 (`#error C++20 or
// later compatible compiler is required`); older ones build as C++17.
function cxxStandard(version) {
  const [major, minor] = version.split('.').map(Number);
  return major > 2 || (major === 2 && minor >= 14) ? 20 : 17;
}

function report(info) {
  return `easyroutine: libtorch ${info.version} from ${info.source} at ${info.root} (${info.cuda ? 'with CUDA' : 'CPU only'})`;
}

function main(argv) {
  if (argv[0] === '--python') {
    const python = findPythonWithTorch();
    if (!python) {
      process.stderr.write(`no Python with torch among ${pythonCandidates(process.env).join(', ')}: run 'bash scripts/setup.sh' (installs python3-torch) or set PYTHON\n`);
      process.exit(1);
    }
    process.stdout.write(python + '\n');
    return;
  }
  let info;
  try {
    info = findLibtorch();
  } catch (err) {
    if (!(err instanceof LibtorchNotFound)) throw err;
    process.stderr.write(err.message + '\n');
    process.exit(1);
  }
  const mode = argv[0] || '--report';
  if (mode === '--json') {
    process.stdout.write(JSON.stringify(info, null, 2) + '\n');
  } else if (mode === '--cmake') {
    // One `KEY=value` per line; lists are '|'-joined (CMakeLists.txt turns them into CMake lists).
    const lines = {
      LIBTORCH_REPORT: report(info),
      LIBTORCH_VERSION: info.version,
      LIBTORCH_CUDA: info.cuda ? 'ON' : 'OFF',
      LIBTORCH_INCLUDE_DIRS: info.includeDirs.join('|'),
      LIBTORCH_LINK_FLAGS: linkFlags(info).join('|'),
      LIBTORCH_CXX11_ABI: String(info.cxx11Abi),
      LIBTORCH_CXX_STANDARD: String(cxxStandard(info.version)),
    };
    for (const [k, v] of Object.entries(lines)) process.stdout.write(`${k}=${v}\n`);
  } else if (mode === '--gyp') {
    const field = argv[1];
    const values = {
      include_dirs: info.includeDirs,
      libraries: linkFlags(info),
      defines: [`_GLIBCXX_USE_CXX11_ABI=${info.cxx11Abi}`, `EASYROUTINE_LIBTORCH_CUDA=${info.cuda ? 1 : 0}`],
      cxxflags: [`-std=c++${cxxStandard(info.version)}`],
    }[field];
    if (!values) {
      process.stderr.write(`unknown --gyp field '${field}': include_dirs, libraries, defines or cxxflags\n`);
      process.exit(2);
    }
    process.stderr.write(report(info) + '\n');
    process.stdout.write(values.join(' ') + '\n');
  } else if (mode === '--report') {
    process.stdout.write(report(info) + '\n');
  } else {
    process.stderr.write(`unknown option ${mode}: --json, --cmake, --gyp FIELD, --report or --python\n`);
    process.exit(2);
  }
}

module.exports = { findLibtorch, findPythonWithTorch, LibtorchNotFound, linkFlags, report, cxxStandard, readVersion };

if (require.main === module) main(process.argv.slice(2));
