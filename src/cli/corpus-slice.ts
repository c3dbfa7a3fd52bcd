/**
 * The corpus-slice options `memq replay` and `memq audit` share (`--limit`, `--groups`), so an
 * audit reads exactly the slice a replay wrote.
 */
import { PayloadError } from '../core/errors.js';

/**
 * `value` as an integer >= 1, or undefined when absent.
 * @throws PayloadError naming `--<name>` and the value when it is not one.
 */
export function positiveIntOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new PayloadError(`--${name}: expected an integer >= 1, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * `--limit` and `--groups` as replay and audit take them: the message cap, and the corpus groups
 * split on commas (blank entries dropped); each absent when not given.
 * @throws PayloadError for a `--limit` that is not an integer >= 1.
 */
export function corpusSlice(values: { limit?: string; groups?: string }): {
  limit?: number;
  groups?: string[];
} {
  const limit = positiveIntOption('limit', values.limit);
  const groups = values.groups
    ?.split(',')
    .map((g) => g.trim())
    .filter(Boolean);
  return { ...(limit !== undefined ? { limit } : {}), ...(groups ? { groups } : {}) };
}
