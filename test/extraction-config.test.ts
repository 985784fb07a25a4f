import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, TokenPositionError, EXTRACTION_CONFIG_FIELDS, extractionConfig } from '../lib/index';
import { expectThrows } from './helpers';

describe('ExtractionConfig', () => {
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

  it('rejects unknown fields and bad values, naming what is accepted', () => {
    expectThrows(() => extractionConfig({ extractResidOutt: true }), InvalidArgumentError, /unknown field 'extractResidOutt'; did you mean 'extractResidOut'/);
    expectThrows(() => extractionConfig({ extract_resid_in: 1 }), InvalidArgumentError, /extractResidIn must be a boolean, got 1/);
    expectThrows(() => extractionConfig({ attnPatternAvg: 'max' as never }), InvalidArgumentError, /one of 'none', 'mean', 'sum', 'baseline_ratio'/);
    expectThrows(() => extractionConfig({ attnHeads: [{ layer: -1, head: 0 }] }), InvalidArgumentError, /attnHeads must be 'all' or an array/);
    expectThrows(() => extractionConfig({ attnPatternRowPositions: ['first'] }), TokenPositionError, /unknown token position/);
    expectThrows(() => extractionConfig([] as never), InvalidArgumentError, /expected an object/);
  });
});
