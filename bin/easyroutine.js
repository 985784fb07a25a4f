#!/usr/bin/env node
'use strict';
// The easyroutine command line.
//
//   easyroutine export MODEL_DIR OUT.pt [--attn eager|sdpa] [--dtype float32|float16|bfloat16] [--device cpu|cuda]
//   easyroutine build
//
// `export` runs python/easyroutine_export.py with your Python (EASYROUTINE_PYTHON, else python3),
// which parses its own options (argparse) and says what to pip install when torch or transformers
// is missing. `build` compiles the addon from source for the libtorch scripts/libtorch.js finds
// (cmake-js, every core, its progress shown), for when no prebuilt binary matches it.
const { spawnSync } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const USAGE = `usage: easyroutine <command> [options]

commands:
  export MODEL_DIR OUT.pt [--attn eager|sdpa] [--dtype float32|float16|bfloat16] [--device cpu|cuda]
      export a Hugging Face causal LM saved in MODEL_DIR to TorchScript, with its architecture
      (run 'easyroutine export --help' for details)
  build
      compile the native addon for the libtorch found (LIBTORCH, your Python's torch, or Debian's)
      into build/Release, when no prebuilt binary matches it

Python: EASYROUTINE_PYTHON, else python3 (it needs torch and transformers).`;

function python() {
  return process.env.EASYROUTINE_PYTHON || 'python3';
}

function runExport(args) {
  const script = path.join(__dirname, '..', 'python', 'easyroutine_export.py');
  const result = spawnSync(python(), [script, ...args], { stdio: 'inherit' });
  if (result.error) {
    const why = result.error.code === 'ENOENT' ? `no Python at '${python()}'` : result.error.message;
    process.stderr.write(`easyroutine export: ${why}; set EASYROUTINE_PYTHON to a Python that has torch and transformers\n`);
    return 3;
  }
  return result.status ?? 1;
}

function runBuild(args) {
  const root = path.join(__dirname, '..');
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const cores = String(os.availableParallelism ? os.availableParallelism() : os.cpus().length);
  const help = args.includes('--help') || args.includes('-h');
  if (!help) process.stdout.write(`easyroutine build: compiling with ${cores} jobs (a few minutes)\n`);
  const result = spawnSync(process.execPath, [cmakeJs, 'compile', ...args], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL || cores },
  });
  if (result.status === 0 && !help) process.stdout.write(`easyroutine build: done; ${path.join(root, 'build', 'Release')} is used from now on\n`);
  return result.status ?? 1;
}

function main(argv) {
  const [command, ...rest] = argv;
  if (command === 'export') return runExport(rest);
  if (command === 'build') return runBuild(rest);
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  process.stderr.write(`easyroutine: unknown command '${command}'\n\n${USAGE}\n`);
  return 2;
}

process.exitCode = main(process.argv.slice(2));
