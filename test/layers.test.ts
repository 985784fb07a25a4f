// The layer rules of ARCHITECTURE.md, read off the sources: every `#include "..."` in cpp/ and every
// relative import in lib/ must point at a layer the including one may use.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..');

/** Which folders each folder may include from (its own always). */
const CPP_RULES: Record<string, string[]> = {
  runtime: [],
  js: [],
  tensor: ['js'],
  graph: ['js/errors.h'],
  hooks: ['graph', 'tensor', 'js', 'runtime'],
  kernels: ['hooks', 'tensor', 'js'],
  model: ['hooks', 'graph', 'tensor', 'js', 'runtime'],
  // its own addon, with no libtorch: nothing of ours
  preload: [],
};

const LIB_RULES: Record<string, string[]> = {
  core: [],
  easyroutine: ['core'],
  plots: ['core', 'easyroutine'],
};

function filesUnder(dir: string, extensions: string[]): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => extensions.some((e) => f.endsWith(e))).map((f) => path.join(dir, f));
}

describe('layers (ARCHITECTURE.md)', () => {
  it('cpp/: every file is in a layer folder but the entry point and the precompiled header', () => {
    const top = fs.readdirSync(path.join(root, 'cpp')).filter((f) => fs.statSync(path.join(root, 'cpp', f)).isFile());
    expect(top.sort()).toEqual(['addon.cc', 'pch.h']);
    const folders = fs.readdirSync(path.join(root, 'cpp')).filter((f) => fs.statSync(path.join(root, 'cpp', f)).isDirectory());
    expect(folders.sort()).toEqual(Object.keys(CPP_RULES).sort());
  });

  it('cpp/: includes run only downwards', () => {
    const violations: string[] = [];
    for (const file of filesUnder(path.join(root, 'cpp'), ['.cc', '.h'])) {
      const relative = path.relative(path.join(root, 'cpp'), file);
      const layer = relative.split(path.sep)[0]!;
      const allowed = CPP_RULES[layer];
      if (!allowed) continue;
      for (const [, target] of fs.readFileSync(file, 'utf8').matchAll(/^#include "([^"]+)"/gm)) {
        const targetLayer = target!.split('/')[0]!;
        if (!fs.existsSync(path.join(root, 'cpp', target!))) violations.push(`${relative}: "${target}" does not exist (includes are written from cpp/)`);
        else if (targetLayer !== layer && !allowed.includes(targetLayer) && !allowed.includes(target!)) violations.push(`${relative} includes ${target}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('lib/: every file is in core/, easyroutine/ or plots/ but the entry point', () => {
    const top = fs.readdirSync(path.join(root, 'lib')).filter((f) => fs.statSync(path.join(root, 'lib', f)).isFile());
    expect(top).toEqual(['index.ts']);
  });

  it('lib/: imports run only downwards, and architecture/mapping.ts does not use the heuristics', () => {
    const violations: string[] = [];
    for (const file of filesUnder(path.join(root, 'lib'), ['.ts'])) {
      const relative = path.relative(path.join(root, 'lib'), file);
      const layer = relative.split(path.sep)[0]!;
      const allowed = LIB_RULES[layer];
      if (!allowed) continue;
      for (const [, target] of fs.readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
        const resolved = path.relative(path.join(root, 'lib'), path.resolve(path.dirname(file), target!));
        const targetLayer = resolved.split(path.sep)[0]!;
        if (!fs.existsSync(path.join(root, 'lib', `${resolved}.ts`))) violations.push(`${relative}: '${target}' does not exist`);
        else if (targetLayer !== layer && !allowed.includes(targetLayer)) violations.push(`${relative} imports ${resolved}`);
        if (relative === path.join('easyroutine', 'architecture', 'mapping.ts') && resolved.endsWith('detect')) violations.push(`${relative} imports the heuristics`);
      }
    }
    expect(violations).toEqual([]);
  });
});
