import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import type { Tensor } from '../lib/index';

/** A tensor's data (never int64) as plain numbers, for comparisons. */
export function numbers(data: ArrayLike<number> | ArrayLike<bigint>): number[] {
  return Array.from(data as ArrayLike<number>);
}

export const root = path.join(__dirname, '..');
export const fixtures = path.join(__dirname, 'fixtures', 'generated');

export function fixture(name: string): string {
  const file = path.join(fixtures, name);
  if (!fs.existsSync(file)) throw new Error(`missing fixture ${file}: run 'npm run fixtures'`);
  return file;
}

export interface FamilyReference {
  family: string;
  config: Record<string, number>;
  torch_version: string;
  modules: { path: string; type: string; parameters: { name: string; shape: number[] }[] }[];
  parameter_count: number;
  cases: { input_ids: number[][]; shape: number[]; logits: number[] }[];
}

export function reference<T = FamilyReference>(name: string): T {
  return JSON.parse(fs.readFileSync(fixture(name), 'utf8')) as T;
}

/** Largest absolute difference between a tensor's values and a flat reference. */
export function maxAbsDiff(actual: Tensor | ArrayLike<number>, expected: ArrayLike<number>): number {
  const values = 'copyData' in actual ? (actual.toFloat32Array() as ArrayLike<number>) : actual;
  expect(values.length).toBe(expected.length);
  let max = 0;
  for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]! - expected[i]!));
  return max;
}

type ErrorClass = abstract new (...args: never[]) => Error;

function expectError(caught: unknown, cls: ErrorClass, patterns: RegExp[]): Error {
  expect(caught, 'expected an error').toBeInstanceOf(cls);
  const error = caught as Error;
  for (const pattern of patterns) expect(error.message).toMatch(pattern);
  return error;
}

/** Asserts `fn` throws an instance of `cls` whose message matches every pattern. */
export function expectThrows(fn: () => unknown, cls: ErrorClass, ...patterns: RegExp[]): Error {
  try {
    fn();
  } catch (error) {
    return expectError(error, cls, patterns);
  }
  return expectError(undefined, cls, patterns);
}

/** Asserts `promise` rejects with an instance of `cls` whose message matches every pattern. */
export async function expectRejects(promise: Promise<unknown>, cls: ErrorClass, ...patterns: RegExp[]): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return expectError(error, cls, patterns);
  }
  return expectError(undefined, cls, patterns);
}

/** A reference value dumped by make_fixtures.py (non-finite values as strings). */
export interface EncodedTensor {
  shape: number[];
  values: (number | string)[];
}

export function decode(encoded: EncodedTensor): Float64Array {
  return Float64Array.from(encoded.values, (v) => (typeof v === 'number' ? v : v === '-inf' ? -Infinity : Infinity));
}

/** Largest absolute difference to a reference, where infinities must match exactly. */
export function maxDiffToReference(actual: Tensor, expected: EncodedTensor): number {
  expect(actual.shape).toEqual(expected.shape);
  const values = actual.toFloat32Array();
  const reference = decode(expected);
  let max = 0;
  for (let i = 0; i < reference.length; i++) {
    const a = values[i]!;
    const e = reference[i]!;
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (a !== e) return Infinity;
      continue;
    }
    max = Math.max(max, Math.abs(a - e));
  }
  return max;
}

export interface HookReference {
  points: Record<string, EncodedTensor>;
  edits: Record<string, EncodedTensor>;
  input_ids?: number[][];
}
