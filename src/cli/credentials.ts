/**
 * Credentials of the HTTP surfaces, resolved by the CLI: API keys from `MEMQ_API_KEYS`, else
 * `MEMQ_API_KEYS_FILE`, else a key memq creates once in `.memq/api-key` (project `default`); the
 * Bull Board password from `MEMQ_BOARD_PASSWORD`, else one created once in
 * `.memq/board-password`. Created files are mode 0600 in a 0700 `.memq` and reused on every
 * start (a looser mode is tightened), so a fresh machine is secure by default and
 * `curl -H "Authorization: Bearer $(cat .memq/api-key)"` works.
 * Secrets are never printed: messages name the file, not its content.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { API_KEYS_ALLOWED, parseApiKeys, type ApiKeyGrant, type EnvConfig } from '../config/env.js';
import { ConfigError } from '../core/errors.js';
import { ensureSecret } from '../runtime/state-files.js';

/** Where generated credentials live (relative to the working directory). */
export const STATE_DIR = '.memq';

/**
 * API key -> grant for the HTTP API (see the module comment for the order).
 * @param say Where a one-line notice goes when memq created the key file (never the key).
 * @throws ConfigError for a keys file that is missing, empty, or has an entry other than
 *   `key:project` / `key:project:read` with a 16+ character key (named by line number, never
 *   echoed).
 */
export async function resolveApiKeys(
  env: EnvConfig,
  say: (line: string) => void,
): Promise<ReadonlyMap<string, ApiKeyGrant>> {
  if (env.apiKeys) return env.apiKeys;
  if (env.apiKeysFile !== undefined) {
    let text: string;
    try {
      text = await readFile(env.apiKeysFile, 'utf8');
    } catch (error) {
      throw new ConfigError(
        `MEMQ_API_KEYS_FILE: cannot read ${env.apiKeysFile} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    const lines = text
      .split('\n')
      .map((line, index) => ({ entry: line.trim(), line: index + 1 }))
      .filter(({ entry }) => entry !== '' && !entry.startsWith('#'));
    const { keys, problems } = parseApiKeys(
      lines.map(({ entry }) => entry),
      (index) => `line ${lines[index]!.line}`,
    );
    if (problems.length > 0 || keys.size === 0) {
      const found = problems.length > 0 ? problems.join('; ') : 'no entries';
      throw new ConfigError(
        `MEMQ_API_KEYS_FILE: ${env.apiKeysFile}: ${API_KEYS_ALLOWED}, got ${found}`,
      );
    }
    return keys;
  }
  const file = path.join(STATE_DIR, 'api-key');
  const { value, created } = await ensureSecret(
    file,
    () => `mq_${randomBytes(24).toString('base64url')}`,
  );
  say(
    `memq: no MEMQ_API_KEYS set; the API accepts the key in ${file} (project ${env.project})${created ? ', created now' : ''}`,
  );
  return new Map([[value, { project: env.project, readOnly: false }]]);
}

/**
 * Bull Board's basic-auth credentials and mode.
 * @param say Where a one-line notice goes when the password comes from the file (never the password).
 */
export async function resolveBoardCredentials(
  env: EnvConfig,
  say: (line: string) => void,
): Promise<{ user: string; password: string; readOnly: boolean }> {
  if (env.boardPassword !== undefined) {
    return { user: env.boardUser, password: env.boardPassword, readOnly: env.boardReadOnly };
  }
  const file = path.join(STATE_DIR, 'board-password');
  const { value, created } = await ensureSecret(file, () => randomBytes(18).toString('base64url'));
  say(
    `memq: no MEMQ_BOARD_PASSWORD set; Bull Board takes user ${env.boardUser} with the password in ${file}${created ? ', created now' : ''}`,
  );
  return { user: env.boardUser, password: value, readOnly: env.boardReadOnly };
}
