import { z } from 'zod';
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

/**
 * Identifies one memory instance (docs/architecture.md, "Domain"): the schema job payloads carry
 * as `ref` and the source of the {@link MemoryRef} type. The project comes from the caller's
 * credentials or CLI configuration, never from a request body.
 */
export const MemoryRefSchema = z.strictObject({
  /** Tenant, 1-100 of `[A-Za-z0-9_-]` ({@link NAME_PATTERN}). */
  project: z.string().regex(NAME_PATTERN, 'expected 1-100 characters of letters, digits, _ or -'),
  /** Memory resource id (a file in `memories/`), 1-100 of `[A-Za-z0-9_-]` ({@link NAME_PATTERN}). */
  resource: z.string().regex(NAME_PATTERN, 'expected 1-100 characters of letters, digits, _ or -'),
  /**
   * Rendered instance key, e.g. `support:42`: {@link MEMORY_KEY_PATTERN}, not starting or ending
   * with `__` (the rule {@link validateMemoryKey} applies).
   */
  key: z
    .string()
    .regex(MEMORY_KEY_PATTERN, 'expected 1-256 characters of letters, digits, _ : - @ .')
    .refine((k) => !k.startsWith('__') && !k.endsWith('__'), 'must not start or end with "__"'),
});

/** One memory instance, as {@link MemoryRefSchema} parses it (read-only). */
export type MemoryRef = Readonly<z.output<typeof MemoryRefSchema>>;
