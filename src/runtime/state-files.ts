/**
 * memq's private state on disk (`.memq`: generated API key, board password, the embedded Redis's
 * password, configuration and data): the directory is owner-only (0700) and every secret file
 * owner read/write only (0600), whatever the umask, and tightened again when found looser.
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../core/errors.js';

/** Mode of memq's state directories: owner only (rwx------). */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode of a secret file memq writes: owner read/write only (rw-------). */
export const SECRET_FILE_MODE = 0o600;

/** Sets `mode` on `target`, or says what to fix when the process may not (another owner). */
async function restrict(target: string, mode: number): Promise<void> {
  try {
    await chmod(target, mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(
      `${target}: cannot set mode ${mode.toString(8)} (${code}); memq keeps secrets there, so it must own it: fix its owner or remove it`,
    );
  }
}

/**
 * Creates `dir` (and missing parents) and makes it {@link PRIVATE_DIR_MODE}, also when it already
 * existed with a looser mode.
 * @throws ConfigError when its mode cannot be set (e.g. another user owns it).
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await restrict(dir, PRIVATE_DIR_MODE);
}

/**
 * Writes `text` to `file` with {@link SECRET_FILE_MODE} (in a private directory), replacing what
 * was there.
 * @throws ConfigError when a mode cannot be set.
 */
export async function writeSecretFile(file: string, text: string): Promise<void> {
  await ensurePrivateDir(path.dirname(file));
  await writeFile(file, text, { mode: SECRET_FILE_MODE });
  await restrict(file, SECRET_FILE_MODE);
}

/**
 * Reads a secret memq created before, or creates it with `make()`: one line, mode
 * {@link SECRET_FILE_MODE}, in a {@link PRIVATE_DIR_MODE} directory. An existing file keeps its
 * value and gets its mode tightened.
 * @returns The value (trimmed) and whether it was created now.
 * @throws ConfigError when a mode cannot be set; the read error for anything but a missing file.
 */
export async function ensureSecret(
  file: string,
  make: () => string,
): Promise<{ value: string; created: boolean }> {
  await ensurePrivateDir(path.dirname(file));
  try {
    const value = (await readFile(file, 'utf8')).trim();
    if (value !== '') {
      if (((await stat(file)).mode & 0o777) !== SECRET_FILE_MODE) {
        await restrict(file, SECRET_FILE_MODE);
      }
      return { value, created: false };
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const value = make();
  await writeSecretFile(file, value + '\n');
  return { value, created: true };
}
