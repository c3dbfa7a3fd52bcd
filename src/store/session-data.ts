/**
 * Session data: a small map of strings kept per instance beside its log (`MemoryKeys.data`,
 * docs/architecture.md, "Redis layout"), e.g. a user's locale or an agent's current task. Not
 * conversation: it costs no tokens, a flush never touches it, a clear keeps it, a delete removes
 * it. The bounds below keep one map small enough to read and write in one command.
 */
import { PayloadError } from '../core/errors.js';

/** Most entries in one instance's session data. */
export const MAX_DATA_ENTRIES = 64;

/** Longest entry key, characters (UTF-16 code units, as every other length limit of memq). */
export const MAX_DATA_KEY_CHARS = 128;

/** Largest entry value a caller may send, UTF-8 bytes: 4 KiB, the bound of a metadata string value. */
export const MAX_DATA_VALUE_BYTES = 4096;

/**
 * Largest entry value the store keeps, UTF-8 bytes: 64 KiB, 16 x {@link MAX_DATA_VALUE_BYTES}.
 * Sizes are checked on what the caller sent; the privacy policy runs after that and its
 * replacements may be longer than the text they replace (`[REDACTED]`, 10 bytes, for the 6 bytes
 * of `a@b.co`; a 20-byte `pii_` pseudonym), so a value sent within the limit can be stored
 * longer. This bound keeps a map within 64 x 64 KiB = 4 MiB whatever the policy.
 */
export const MAX_STORED_DATA_VALUE_BYTES = 16 * MAX_DATA_VALUE_BYTES;

/**
 * Checks a session-data map before anything is written: a plain object of at most
 * {@link MAX_DATA_ENTRIES} entries, each key 1..{@link MAX_DATA_KEY_CHARS} characters and each
 * value a string of at most `maxValueBytes` UTF-8 bytes. Returns the entries as `[key, value]`
 * pairs in the object's own order (`Object.entries`: JSON order, except that keys which are array
 * indexes, such as `"7"`, come first in ascending order).
 *
 * Errors name an entry by its position in that order, from 0 (`data[3]`), never by its key or
 * value: both are the caller's data and may be personal.
 * @param where The field the entries came from, named in errors (e.g. `data`).
 * @param maxValueBytes Largest value, UTF-8 bytes: {@link MAX_DATA_VALUE_BYTES} (default) for
 *   what a caller sends, {@link MAX_STORED_DATA_VALUE_BYTES} for values after the privacy policy.
 * @throws PayloadError naming the field (`<where>` or `<where>[<position>]`), the bound broken
 *   and, in `details`, `field` and `index` (the position).
 */
export function sessionDataEntries(
  entries: unknown,
  where = 'data',
  maxValueBytes = MAX_DATA_VALUE_BYTES,
): [string, string][] {
  if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) {
    throw new PayloadError(`${where}: expected an object of string values`, {
      details: { field: where },
    });
  }
  const pairs = Object.entries(entries as Record<string, unknown>);
  if (pairs.length > MAX_DATA_ENTRIES) {
    throw new PayloadError(
      `${where}: expected at most ${MAX_DATA_ENTRIES} entries, got ${pairs.length}`,
      { details: { field: where } },
    );
  }
  pairs.forEach(([key, value], index) => {
    const entry = `${where}[${index}]`;
    const details = { details: { field: where, index } };
    if (key.length < 1 || key.length > MAX_DATA_KEY_CHARS) {
      throw new PayloadError(
        `${entry}: the key: expected 1-${MAX_DATA_KEY_CHARS} characters, got ${key.length}`,
        details,
      );
    }
    if (typeof value !== 'string') {
      throw new PayloadError(
        `${entry}: the value: expected a string, got ${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value}`,
        details,
      );
    }
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > maxValueBytes) {
      throw new PayloadError(
        `${entry}: the value: expected at most ${maxValueBytes} UTF-8 bytes, got ${bytes}`,
        details,
      );
    }
  });
  return pairs as [string, string][];
}
