/**
 * Human durations as memory resources write them (Compozy's `ParseHumanDuration` subset):
 * `500ms`, `30s`, `5m`, `24h`, `7d`, `2w`, compound `1h30m`, decimals `1.5h`, and the bare
 * number `0` (meaning "none" / "never", e.g. `persistence.ttl: "0"`).
 */

/** Milliseconds per unit suffix. A day is 24 h and a week 7 days (no calendar arithmetic). */
export const DURATION_UNITS_MS = Object.freeze({
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
} as const);

/** What a duration may look like, for error messages. */
export const DURATION_FORMAT = 'a duration like 500ms, 30s, 5m, 1h30m, 24h or 7d';

const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g;

/**
 * Parses a human duration into milliseconds.
 *
 * Accepts one or more `<number><unit>` parts (units in {@link DURATION_UNITS_MS}, in any order,
 * summed as Go's `time.ParseDuration` does) or the bare `0`. No sign, no spaces. Fractions are
 * rounded to the nearest millisecond.
 *
 * @param text The duration text, e.g. `1h30m`.
 * @returns The duration in milliseconds (`0` for `"0"`), or `undefined` when `text` is not a
 *   duration or exceeds `Number.MAX_SAFE_INTEGER` milliseconds.
 */
export function parseDurationMs(text: string): number | undefined {
  if (text === '0') return 0;
  if (!WHOLE.test(text)) return undefined;
  let totalMs = 0;
  for (const [, amount, unit] of text.matchAll(PART)) {
    totalMs += Number(amount) * DURATION_UNITS_MS[unit as keyof typeof DURATION_UNITS_MS];
  }
  totalMs = Math.round(totalMs);
  return Number.isSafeInteger(totalMs) ? totalMs : undefined;
}
