import { describe, expect, it } from 'vitest';
import * as api from '../lib/index';
// @ts-expect-error: a plain ES module script shared with `npm run fuzz`
import { fuzzLoad } from '../scripts/fuzz-load.mjs';
import { fixture } from './helpers';

describe('damaged model files', () => {
  it.each(['gpt2_traced.pt', 'llama_scripted.pt'])('%s: 90 mutants each load (then forward and take writes) or fail with a typed error', (name) => {
    const outcomes = fuzzLoad({
      api,
      file: fixture(name),
      count: 90,
      seed: 7,
      input: () => api.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'int64' }),
    });
    expect(outcomes.loaded + outcomes.rejected).toBe(90);
    expect(outcomes.rejected).toBeGreaterThan(0);
    expect(outcomes.byMutation).toEqual({ flip: 18, truncate: 18, damageEntry: 18, truncateRecord: 18, emptyRecord: 18 });
    // a storage record shorter than its tensor, in a zip whose every CRC is right, is refused at load
    expect(outcomes.rejectedByMutation).toMatchObject({ truncateRecord: 18, emptyRecord: 18 });
    expect([...outcomes.messages].some((m: string) => /needs N bytes but its storage record '[^']*\/(data|constants)\/N' holds N/.test(m))).toBe(true);
  });
});
