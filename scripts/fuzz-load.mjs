#!/usr/bin/env node
// Loads mutated copies of a TorchScript fixture: each must load (and then forward, and take a write
// through parameters(), or fail with a typed error) or fail to load with a typed error. A crash ends
// the process, which is the failure. Half the mutations damage raw bytes (the CRC check catches
// them); the other half damage a storage record and rebuild a valid zip, every CRC right (a
// truncated write or a bad merge before the archive was rebuilt), which the storage check catches.
//
//   node scripts/fuzz-load.mjs [--count 5000] [--seed 1] [--file test/fixtures/generated/gpt2_traced.pt]
import { unzipSync, zipSync } from 'fflate';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A small seeded PRNG (mulberry32), so every run mutates the same way. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function localHeaders(bytes) {
  const offsets = [];
  for (let i = 0; i + 4 <= bytes.length; i++) {
    if (bytes[i] === 0x50 && bytes[i + 1] === 0x4b && bytes[i + 2] === 0x03 && bytes[i + 3] === 0x04) offsets.push(i);
  }
  return offsets;
}

/** Rebuilds the archive with one storage record (data/N or constants/N) replaced by `edit(bytes)`. */
function withStorageRecord(bytes, rand, edit) {
  const entries = unzipSync(bytes);
  const records = Object.keys(entries).filter((name) => /\/(data|constants)\/\d+$/.test(name) && entries[name].length > 0);
  const name = records[Math.floor(rand() * records.length)];
  entries[name] = edit(entries[name]);
  // stored, not deflated, as torch.jit.save writes them; fflate keeps the entries' order
  return Buffer.from(zipSync(Object.fromEntries(Object.entries(entries).map(([n, data]) => [n, [data, { level: 0 }]]))));
}

const MUTATIONS = {
  flip(bytes, rand) {
    const out = Buffer.from(bytes);
    const flips = 1 + Math.floor(rand() * 16);
    for (let i = 0; i < flips; i++) out[Math.floor(rand() * out.length)] ^= 1 << Math.floor(rand() * 8);
    return out;
  },
  truncate(bytes, rand) {
    return Buffer.from(bytes.subarray(0, Math.floor(rand() * bytes.length)));
  },
  damageEntry(bytes, rand, headers) {
    const out = Buffer.from(bytes);
    const start = headers[Math.floor(rand() * headers.length)];
    const length = 1 + Math.floor(rand() * 64);
    const at = start + Math.floor(rand() * 96);
    for (let i = at; i < Math.min(out.length, at + length); i++) out[i] = Math.floor(rand() * 256);
    return out;
  },
  truncateRecord(bytes, rand) {
    return withStorageRecord(bytes, rand, (data) => data.subarray(0, Math.floor(rand() * data.length)));
  },
  emptyRecord(bytes, rand) {
    return withStorageRecord(bytes, rand, () => new Uint8Array(0));
  },
};

/**
 * Runs `count` mutants of `file` through `api.loadModel`, forwarding `input()` through those that load.
 * Returns counts per outcome; throws on an error that is not an EasyroutineError.
 */
export function fuzzLoad({ api, file, count, seed, input }) {
  const original = fs.readFileSync(file);
  const headers = localHeaders(original);
  const rand = random(seed);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-fuzz-'));
  const outcomes = { loaded: 0, forwarded: 0, forwardFailed: 0, rejected: 0, byMutation: {}, rejectedByMutation: {}, messages: new Set() };
  const kinds = Object.keys(MUTATIONS);
  try {
    for (let i = 0; i < count; i++) {
      const kind = kinds[i % kinds.length];
      const mutant = path.join(dir, `mutant-${i}.pt`);
      fs.writeFileSync(mutant, MUTATIONS[kind](original, rand, headers));
      outcomes.byMutation[kind] = (outcomes.byMutation[kind] ?? 0) + 1;
      let model;
      try {
        model = api.loadModel(mutant);
      } catch (error) {
        if (!(error instanceof api.ModelLoadError)) throw new Error(`mutant ${i} (${kind}): untyped load error: ${error?.stack ?? error}`);
        outcomes.rejected++;
        outcomes.rejectedByMutation[kind] = (outcomes.rejectedByMutation[kind] ?? 0) + 1;
        // the message with the file's name and the figures taken out: what kinds of refusal there were
        outcomes.messages.add(error.message.replace(mutant, 'FILE').replace(/\d+/g, 'N'));
        continue;
      } finally {
        fs.rmSync(mutant, { force: true });
      }
      outcomes.loaded++;
      try {
        model.forward(input());
        for (const parameter of model.parameters().values()) parameter.write(new Float32Array(parameter.numel).fill(0.5));
        model.forward(input());
        outcomes.forwarded++;
      } catch (error) {
        if (!(error instanceof api.EasyroutineError)) throw new Error(`mutant ${i} (${kind}): untyped forward error: ${error?.stack ?? error}`);
        outcomes.forwardFailed++;
      } finally {
        model.dispose();
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return outcomes;
}

async function main() {
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
  const api = (await import(path.join(root, 'dist', 'index.js'))).default;
  const file = option('file', path.join(root, 'test', 'fixtures', 'generated', 'gpt2_traced.pt'));
  const count = Number(option('count', 5000));
  const seed = Number(option('seed', 1));
  const started = Date.now();
  const outcomes = fuzzLoad({
    api,
    file,
    count,
    seed,
    input: () => api.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'int64' }),
  });
  const summary = { file: path.relative(root, file), count, seed, seconds: (Date.now() - started) / 1000, ...outcomes, messages: [...outcomes.messages].sort() };
  console.log(JSON.stringify(summary, null, 2));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
