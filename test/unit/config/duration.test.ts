import { describe, expect, it } from 'vitest';
import { parseDurationMs } from '../../../src/config/duration.js';

describe('parseDurationMs', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['2w', 1_209_600_000],
    ['1h30m', 5_400_000],
    ['1m30s500ms', 90_500],
    ['1.5h', 5_400_000],
    ['0.5s', 500],
    ['0', 0],
    ['0s', 0],
  ])('reads %s as %d ms', (text, expectedMs) => {
    expect(parseDurationMs(text)).toBe(expectedMs);
  });

  it.each([
    ['', 'empty'],
    ['30', 'a number without unit'],
    ['30 seconds', 'words'],
    ['30 s', 'a space'],
    ['-5m', 'a sign'],
    ['5M', 'an upper-case unit'],
    ['1y', 'an unknown unit'],
    ['h', 'a unit without a number'],
    ['1h 30m', 'spaced parts'],
    ['.5s', 'a fraction without a leading digit'],
    ['999999999999w', 'more than Number.MAX_SAFE_INTEGER ms'],
  ])('rejects %j (%s)', (text) => {
    expect(parseDurationMs(text)).toBeUndefined();
  });
});
