// Choosing the native binary for the libtorch found (lib/core/addon-loader.ts), each case in a fresh
// Node process against a staged copy of the package, as npm installs it (no build/ unless given).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runtimeInfo } from '../lib/index';
import { root } from './helpers';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'easyroutine-loader-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

const built = path.join(root, 'build', 'Release');
const version = runtimeInfo().libtorchVersion.split('.').slice(0, 2).join('.');
const platformDir = `${process.platform}-${process.arch}`;

/** A copy of the package with the given prebuilds (file name -> source) and no build/. */
function stage(name: string, prebuilds: Record<string, string>): string {
  const dir = path.join(scratch, name);
  fs.mkdirSync(path.join(dir, 'prebuilds', platformDir), { recursive: true });
  fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  fs.mkdirSync(path.join(dir, 'scripts'));
  fs.copyFileSync(path.join(root, 'scripts', 'libtorch.js'), path.join(dir, 'scripts', 'libtorch.js'));
  for (const [file, source] of Object.entries(prebuilds)) fs.copyFileSync(source, path.join(dir, 'prebuilds', platformDir, file));
  return dir;
}

/** Requires the package in a child process; prints the chosen binary, or the error's class, code and message. */
function load(dir: string, env: Record<string, string> = {}) {
  const script = `
    try {
      const er = require(${JSON.stringify(path.join(dir, 'dist', 'index.js'))});
      console.log(JSON.stringify({ binary: er.runtimeInfo().binary, libtorch: er.runtimeInfo().libtorch }));
    } catch (e) {
      console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message }));
    }`;
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, EASYROUTINE_ADDON: '', EASYROUTINE_CACHE_DIR: path.join(dir, 'cache'), ...env } });
  expect(result.status, result.stderr).toBe(0); // the process survives whatever the binary does
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as { binary?: string; libtorch?: { version: string }; name?: string; code?: string; message?: string };
}

describe.skipIf(!fs.existsSync(path.join(built, 'easyroutine_preload.node')))('choosing the native binary', () => {
  it('loads the prebuild named for the libtorch found, with no build/ and no RUNPATH needed', () => {
    const dir = stage('matching', { [`easyroutine.torch-${version}-cpu.node`]: path.join(built, 'easyroutine.node'), 'easyroutine_preload.node': path.join(built, 'easyroutine_preload.node') });
    const loaded = load(dir);
    expect(loaded.binary, JSON.stringify(loaded)).toBe(path.join(dir, 'prebuilds', platformDir, `easyroutine.torch-${version}-cpu.node`));
    expect(loaded.libtorch!.version.startsWith(version)).toBe(true);
    // a second process takes the cached probe and spawns nothing
    expect(fs.readFileSync(path.join(dir, 'cache', 'addon-loader.json'), 'utf8')).toContain('"ok":true');
    expect(load(dir).binary).toBe(loaded.binary);
  });

  it('a libtorch that matches no binary is an AddonLoadError naming it, the binaries and the build command', () => {
    // a libtorch directory that says 9.9 (its libraries are the real ones, so a wrong choice would load)
    const fake = path.join(scratch, 'libtorch-9.9');
    fs.mkdirSync(path.join(fake, 'lib'), { recursive: true });
    fs.mkdirSync(path.join(fake, 'include', 'torch', 'headeronly'), { recursive: true });
    fs.writeFileSync(path.join(fake, 'include', 'torch', 'headeronly', 'version.h'), '#define TORCH_VERSION_MAJOR 9\n#define TORCH_VERSION_MINOR 9\n#define TORCH_VERSION_PATCH 0\n');
    for (const lib of ['libc10.so', 'libtorch_cpu.so', 'libtorch.so']) {
      const real = runtimeInfo().libtorch?.libDir ?? '/usr/lib/x86_64-linux-gnu';
      fs.symlinkSync(fs.realpathSync(path.join(real, lib)), path.join(fake, 'lib', lib));
    }
    const dir = stage('mismatch', { [`easyroutine.torch-${version}-cpu.node`]: path.join(built, 'easyroutine.node'), 'easyroutine_preload.node': path.join(built, 'easyroutine_preload.node') });
    const failed = load(dir, { LIBTORCH: fake });
    expect(failed).toMatchObject({ name: 'AddonLoadError', code: 'ERR_EASYROUTINE_ADDON_LOAD' });
    expect(failed.message).toContain(`no native binary for libtorch 9.9.0 (CPU) from LIBTORCH at ${path.join(fake, 'lib')}`);
    expect(failed.message).toContain(`easyroutine.torch-${version}-cpu.node`);
    expect(failed.message).toContain('npx easyroutine build');
  });

  it('a binary that dies on an undefined symbol is tried in a child process: this one gets the typed error', () => {
    // an addon whose initialisation calls a function no library defines: with lazy binding the
    // dynamic linker kills the process that loads it ("symbol lookup error", exit 127)
    const source = path.join(scratch, 'broken.c');
    fs.writeFileSync(source, 'void easyroutine_missing_symbol(void);\nvoid* napi_register_module_v1(void* env, void* exports) { easyroutine_missing_symbol(); return exports; }\n');
    const broken = path.join(scratch, 'broken.node');
    execFileSync('cc', ['-shared', '-fPIC', '-o', broken, source]);
    const dir = stage('broken', { [`easyroutine.torch-${version}-cpu.node`]: broken, 'easyroutine_preload.node': path.join(built, 'easyroutine_preload.node') });
    const failed = load(dir);
    expect(failed).toMatchObject({ name: 'AddonLoadError', code: 'ERR_EASYROUTINE_ADDON_LOAD' });
    expect(failed.message).toMatch(/does not load \(.*undefined symbol: easyroutine_missing_symbol/);
  });

  it('no binary at all says so', () => {
    const failed = load(stage('empty', {}));
    expect(failed).toMatchObject({ name: 'AddonLoadError' });
    expect(failed.message).toMatch(/Prebuilt binaries here \(prebuilds\/[^)]+\): none/);
  });
});
