import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, TokenPositionError, EXTRACTION_CONFIG_FIELDS, extractionConfig, type ExtractionConfig, type HookedForwardOptions, type PythonExtractionConfig } from '../lib/index';
import { expectThrows } from './helpers';

describe('ExtractionConfig', () => {
  it('types: a config is any subset of the fields, camelCase or Python names; a misspelt field in forward options does not compile', () => {
    // tsc checks this file (npm test's typecheck): an unused @ts-expect-error would fail it
    const config: ExtractionConfig = { extractResidOut: true };
    const python: PythonExtractionConfig = { extract_resid_out: true, attn_heads: [{ layer: 0, head: 1 }], attn_pattern_avg: 'mean' };
    expect(extractionConfig(config).extractResidOut).toBe(true);
    expect(extractionConfig(python)).toMatchObject({ extractResidOut: true, attnHeads: [{ layer: 0, head: 1 }], attnPatternAvg: 'mean' });
    const options: HookedForwardOptions = {
      // @ts-expect-error: no such field
      extractionConfig: { extractResidOutt: true },
    };
    expectThrows(() => extractionConfig(options.extractionConfig), InvalidArgumentError, /unknown field 'extractResidOutt'/);
    // @ts-expect-error: a value the field does not take
    const wrong: PythonExtractionConfig = { attn_pattern_avg: 'max' };
    expect(wrong).toBeDefined();
  });

  it('has all 29 fields with easyroutine defaults', () => {
    expect(EXTRACTION_CONFIG_FIELDS).toHaveLength(29);
    const config = extractionConfig();
    expect(Object.keys(config).sort()).toEqual([...EXTRACTION_CONFIG_FIELDS].sort());
    expect(config).toMatchObject({ saveLogits: true, attnHeads: 'all', attnPatternAvg: 'none', attnPatternRowPositions: null, extractResidOut: false });
  });

  it('accepts camelCase and Python names', () => {
    const config = extractionConfig({ extract_resid_out: true, attnPatternAvg: 'baseline_ratio', attn_heads: [{ layer: 1, head: 2 }], attn_pattern_row_positions: ['all', [0, 3]] });
    expect(config).toMatchObject({ extractResidOut: true, attnPatternAvg: 'baseline_ratio', attnHeads: [{ layer: 1, head: 2 }], attnPatternRowPositions: ['all', [0, 3]] });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('is frozen plain data all the way down: the caller changing its own heads and ranges later changes nothing', () => {
    const heads = [{ layer: 1, head: 2 }];
    const range: [number, number] = [0, 3];
    const config = extractionConfig({ attnHeads: heads, attnPatternRowPositions: ['last', range] });
    heads[0]!.head = 0;
    range[1] = 1;
    expect(config.attnHeads).toEqual([{ layer: 1, head: 2 }]);
    expect(config.attnPatternRowPositions).toEqual(['last', [0, 3]]);
    const nested = [config.attnHeads, (config.attnHeads as object[])[0], config.attnPatternRowPositions, config.attnPatternRowPositions![1]];
    expect(nested.every((value) => Object.isFrozen(value))).toBe(true);
  });

  it('takes a Python name for what it means in easyroutine: avg_over_example is the running mean of patterns', () => {
    expect(extractionConfig({ avg_over_example: true })).toMatchObject({ extractAvgAttnPattern: true, avgOverExample: false });
    expect(extractionConfig({ avgOverExample: true })).toMatchObject({ extractAvgAttnPattern: false, avgOverExample: true });
  });

  it('rejects unknown fields and bad values, naming what is accepted (and neither compiles)', () => {
    // @ts-expect-error: a misspelt field is a compile error
    expectThrows(() => extractionConfig({ extractResidOutt: true }), InvalidArgumentError, /unknown field 'extractResidOutt'; did you mean 'extractResidOut'/);
    // @ts-expect-error: so is a value of the wrong type, under the Python name too
    expectThrows(() => extractionConfig({ extract_resid_in: 1 }), InvalidArgumentError, /extractResidIn must be a boolean, got 1/);
    expectThrows(() => extractionConfig({ attnPatternAvg: 'max' as never }), InvalidArgumentError, /one of 'none', 'mean', 'sum', 'baseline_ratio'/);
    expectThrows(() => extractionConfig({ attnHeads: [{ layer: -1, head: 0 }] }), InvalidArgumentError, /attnHeads must be 'all' or an array/);
    expectThrows(() => extractionConfig({ attnPatternRowPositions: ['first'] }), TokenPositionError, /unknown token position/);
    expectThrows(() => extractionConfig([] as never), InvalidArgumentError, /expected an object/);
  });
});
