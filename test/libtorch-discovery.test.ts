import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from './helpers';

const script = path.join(root, 'scripts', 'libtorch.js');

function probe(args: string[], env: Record<string, string>) {
  const result = spawnSync(process.execPath, [script, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('libtorch discovery (scripts/libtorch.js)', () => {
  it('finds a libtorch and reports its source, version and CUDA support', () => {
    const found = probe(['--report'], {});
    expect(found.status).toBe(0);
    expect(found.stdout).toMatch(/^easyroutine: libtorch \d+\.\d+\.\d+ from (python|system|LIBTORCH).* \((CPU only|with CUDA)\)/);
    const info = JSON.parse(probe(['--json'], {}).stdout);
    expect(info.libraries).toEqual(['torch', 'torch_cpu', 'c10']);
    expect(info.includeDirs.some((d: string) => fs.existsSync(path.join(d, 'torch', 'script.h')))).toBe(true);
    expect([0, 1]).toContain(info.cxx11Abi);
  });

  it('takes LIBTORCH first and names what is missing there', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'libtorch-'));
    const result = probe(['--report'], { LIBTORCH: empty });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`LIBTORCH: libtorch.so is missing from ${path.join(empty, 'lib')}`);
    fs.rmSync(empty, { recursive: true });
  });

  it('uses only Python when LIBTORCH_USE_PYTORCH=1', () => {
    const result = probe(['--report'], { LIBTORCH_USE_PYTORCH: '1', PYTHON: '/nonexistent/python' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('/nonexistent/python: torch not importable');
  });

  it('lists the three ways to provide libtorch when none is found', () => {
    const result = probe(['--report'], { PYTHON: '/nonexistent/python', LIBTORCH_SYSTEM_DIRS: '/nonexistent/lib' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('no libtorch found. Provide one of:');
    expect(result.stderr).toMatch(/1\. LIBTORCH=/);
    expect(result.stderr).toMatch(/2\. a Python with torch/);
    expect(result.stderr).toMatch(/3\. the system package: apt-get install libtorch-dev/);
  });

  it('names the Python that generates fixtures, or says how to get one', () => {
    const found = probe(['--python'], {});
    expect(found.status).toBe(0);
    const python = found.stdout.trim();
    expect(spawnSync(python, ['-c', 'import torch'], { env: { PATH: process.env.PATH ?? '' } }).status).toBe(0);
    const missing = probe(['--python'], { PYTHON: '/nonexistent/python' });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain("no Python with torch among /nonexistent/python: run 'bash scripts/setup.sh'");
  });

  it('reads the version in every header layout, and the C++ standard follows it', () => {
    const layouts: [string, string, string][] = [
      ['torch/csrc/api/include/torch/version.h', '1.13.1', '17'], // libtorch 1.x and 2.x up to 2.12
      ['torch/headeronly/version.h', '2.13.0', '17'], // torch >= 2.13 moved the macros
      ['torch/headeronly/version.h', '2.14.1', '20'], // ATen needs C++20 from 2.14
    ];
    for (const [header, version, standard] of layouts) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'libtorch-'));
      fs.mkdirSync(path.join(dir, 'lib'));
      for (const lib of ['torch', 'torch_cpu', 'c10']) fs.writeFileSync(path.join(dir, 'lib', `lib${lib}.so`), '');
      const file = path.join(dir, 'include', header);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(path.join(dir, 'include', 'torch', 'script.h'), '');
      const [major, minor, patch] = version.split('.');
      fs.writeFileSync(file, `#define TORCH_VERSION_MAJOR ${major}\n#define TORCH_VERSION_MINOR ${minor}\n#define TORCH_VERSION_PATCH ${patch}\n`);
      const result = probe(['--cmake'], { LIBTORCH: dir });
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toContain(`LIBTORCH_VERSION=${version}\n`);
      expect(result.stdout).toContain(`LIBTORCH_CXX_STANDARD=${standard}\n`);
      expect(probe(['--gyp', 'cxxflags'], { LIBTORCH: dir }).stdout.trim()).toBe(`-std=c++${standard}`);
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('links CUDA libraries with --no-as-needed', () => {
    const { linkFlags } = require(script) as { linkFlags: (info: unknown) => string[] };
    const flags = linkFlags({ libDir: '/x/lib', libraries: ['torch', 'torch_cpu', 'c10'], cudaLibraries: ['torch_cuda', 'c10_cuda'] });
    expect(flags.join(' ')).toBe('-L/x/lib -Wl,-rpath,/x/lib -ltorch -ltorch_cpu -lc10 -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed');
  });
});
