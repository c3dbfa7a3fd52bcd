/**
 * API key entries: `k:acme:READ` or `k:acme:ro` in MEMQ_API_KEYS_FILE became a
 * read-write key of project `READ` / `ro`. Only `key:project` and `key:project:read` with a key of
 * 16+ characters are accepted; a bad line is named by number, never echoed.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveApiKeys } from '../../src/cli/credentials.js';
import { loadEnvConfig } from '../../src/config/env.js';
import { ConfigError } from '../../src/core/errors.js';

describe('MEMQ_API_KEYS_FILE entries', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'memq-keys-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Resolves the keys of a file holding `text`. */
  const keysOf = async (text: string) => {
    const file = path.join(dir, `keys-${Math.random().toString(36).slice(2)}`);
    await writeFile(file, text);
    return {
      file,
      result: resolveApiKeys(loadEnvConfig({ MEMQ_API_KEYS_FILE: file }), () => undefined),
    };
  };

  it.each([
    ['secret-key-0123456789:acme:READ', 'line 3 whose third part is not "read"'],
    ['secret-key-0123456789:acme:ro', 'line 3 whose third part is not "read"'],
    ['secret-key:acme', 'line 3 with a key of 10 characters (at least 16)'],
  ])('refuses %s naming the file and line, not the key', async (entry, got) => {
    const { file, result } = await keysOf(`# keys\nfirst-key-0123456789:acme:read\n${entry}\n\n`);
    const error = await result.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    expect(message).toContain(
      `MEMQ_API_KEYS_FILE: ${file}: expected key:project or key:project:read`,
    );
    expect(message).toContain(got);
    expect(message).not.toContain('secret-key');
    expect(message).not.toContain('first-key');
  });

  it('accepts the documented forms', async () => {
    const { result } = await keysOf(
      '# comment\nfirst-key-0123456789:acme:read\n\nsecond-key-0123456789:beta\n',
    );
    expect(Object.fromEntries(await result)).toEqual({
      'first-key-0123456789': { project: 'acme', readOnly: true },
      'second-key-0123456789': { project: 'beta', readOnly: false },
    });
  });
});
