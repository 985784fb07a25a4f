import { describe, expect, it } from 'vitest';
import * as api from '../lib/index';
// @ts-expect-error: a plain ES module script shared with `npm run fuzz`
import { fuzzLoad } from '../scripts/fuzz-load.mjs';
import { fixture } from './helpers';

describe('damaged model files', () => {
  it.each(['gpt2_traced.pt', 'llama_scripted.pt'])('%s: 90 mutants each load or fail with a typed error', (name) => {
    const outcomes = fuzzLoad({
      api,
      file: fixture(name),
      count: 90,
      seed: 7,
      input: () => api.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'int64' }),
    });
    expect(outcomes.loaded + outcomes.rejected).toBe(90);
    expect(outcomes.rejected).toBeGreaterThan(0);
    expect(outcomes.byMutation).toEqual({ flip: 30, truncate: 30, damageEntry: 30 });
  });
});
