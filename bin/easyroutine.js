#!/usr/bin/env node
'use strict';
// The easyroutine command line.
//
//   easyroutine export MODEL_DIR OUT.pt [--attn eager|sdpa] [--dtype float32|float16|bfloat16] [--device cpu|cuda]
//
// `export` runs python/easyroutine_export.py with your Python (EASYROUTINE_PYTHON, else python3),
// which parses its own options (argparse) and says what to pip install when torch or transformers
// is missing.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const USAGE = `usage: easyroutine <command> [options]

commands:
  export MODEL_DIR OUT.pt [--attn eager|sdpa] [--dtype float32|float16|bfloat16] [--device cpu|cuda]
      export a Hugging Face causal LM saved in MODEL_DIR to TorchScript, with its architecture
      (run 'easyroutine export --help' for details)

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

function main(argv) {
  const [command, ...rest] = argv;
  if (command === 'export') return runExport(rest);
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  process.stderr.write(`easyroutine: unknown command '${command}'\n\n${USAGE}\n`);
  return 2;
}

process.exitCode = main(process.argv.slice(2));
