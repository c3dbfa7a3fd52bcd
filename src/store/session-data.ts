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

/** Largest entry value, UTF-8 bytes: 4 KiB, the bound of a metadata string value. */
export const MAX_DATA_VALUE_BYTES = 4096;

/**
 * Checks a session-data map before anything is written: a plain object of at most
 * {@link MAX_DATA_ENTRIES} entries, each key 1..{@link MAX_DATA_KEY_CHARS} characters and each
 * value a string of at most {@link MAX_DATA_VALUE_BYTES} UTF-8 bytes. Returns the entries as
 * `[key, value]` pairs in the object's own order.
 * @param where The field the entries came from, named in errors (e.g. `data`).
 * @throws PayloadError naming the field (`<where>` or `<where>.<key>`) and the bound broken.
 */
export function sessionDataEntries(entries: unknown, where = 'data'): [string, string][] {
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
  for (const [key, value] of pairs) {
    if (key.length < 1 || key.length > MAX_DATA_KEY_CHARS) {
      const shown =
        key.length > 64 ? `${JSON.stringify(key.slice(0, 64))}...` : JSON.stringify(key);
      throw new PayloadError(
        `${where}: entry key ${shown}: expected 1-${MAX_DATA_KEY_CHARS} characters, got ${key.length}`,
        { details: { field: where } },
      );
    }
    const field = `${where}.${key}`;
    if (typeof value !== 'string') {
      throw new PayloadError(`${field}: expected a string, got ${typeof value}`, {
        details: { field },
      });
    }
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > MAX_DATA_VALUE_BYTES) {
      throw new PayloadError(
        `${field}: expected at most ${MAX_DATA_VALUE_BYTES} UTF-8 bytes, got ${bytes}`,
        { details: { field } },
      );
    }
  }
  return pairs as [string, string][];
}
