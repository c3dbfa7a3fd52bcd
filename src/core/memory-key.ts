import { PayloadError } from './errors.js';

/**
 * Instance keys (docs/architecture.md, "Domain"): 1-256 characters of `[A-Za-z0-9_:\-@.]`, not starting or
 * ending with `__` (Compozy's rule, without its `*`, which is a glob
 * character in Redis SCAN patterns).
 */
export const MEMORY_KEY_PATTERN = /^[A-Za-z0-9_:\-@.]{1,256}$/;

/**
 * Returns `key` if it is a valid instance key.
 * @param where Names the field for the error, e.g. `key` or `messages[0].key`.
 * @throws PayloadError naming `where`, the rule and (truncated) what was found.
 */
export function validateMemoryKey(key: string, where = 'key'): string {
  if (!MEMORY_KEY_PATTERN.test(key) || key.startsWith('__') || key.endsWith('__')) {
    const shown =
      key.length > 64
        ? `${JSON.stringify(key.slice(0, 64))}... (${key.length} chars)`
        : JSON.stringify(key);
    throw new PayloadError(
      `${where}: expected 1-256 characters of letters, digits, _ : - @ . not starting or ending with "__", got ${shown}`,
      { details: { field: where } },
    );
  }
  return key;
}

/** Projects and resource ids: 1-100 characters of `[A-Za-z0-9_-]`, starting with a letter or digit. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;
