/**
 * The environment's documentation, generated from the one table of variables
 * ({@link ENV_VARS} in src/config/env.ts): the Markdown tables of docs/configuration.md
 * ("Environment variables", between {@link ENV_TABLE_START} and {@link ENV_TABLE_END}) and the
 * repository's `.env.example`. test/unit/docs.test.ts fails when either differs from what this
 * module renders.
 *
 * Run: `tsx src/cli/env-docs-command.ts --write` (`npm run docs:env`) writes both files;
 * `--markdown` / `--example` print one of them.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ENV_GROUPS, ENV_VARS, type EnvGroup, type EnvVar } from '../config/env.js';

/** Marker line opening the generated section of docs/configuration.md. */
export const ENV_TABLE_START = '<!-- env-table:start -->';
/** Marker line closing the generated section of docs/configuration.md. */
export const ENV_TABLE_END = '<!-- env-table:end -->';

/** Where the generated files live, relative to the repository root. */
export const ENV_DOCS_FILES = Object.freeze({
  configuration: 'docs/configuration.md',
  example: '.env.example',
});

/** The command that regenerates both files (a package.json script). */
export const ENV_DOCS_COMMAND = 'npm run docs:env';

/** The repository root: two levels above this module (src/cli). */
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** What a generated file says about where it comes from. */
const GENERATED_NOTE = `Generated from ENV_VARS in src/config/env.ts by \`${ENV_DOCS_COMMAND}\`: edit the table there, not this text.`;

/** The variables of each group, in {@link ENV_GROUPS} order; empty groups are left out. */
function byGroup(vars: readonly EnvVar[]): Array<[title: string, vars: EnvVar[]]> {
  return (Object.keys(ENV_GROUPS) as EnvGroup[])
    .map((group): [string, EnvVar[]] => [ENV_GROUPS[group], vars.filter((v) => v.group === group)])
    .filter(([, members]) => members.length > 0);
}

/** Text safe inside a Markdown table cell: `|` escaped, no line breaks. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

/**
 * The generated section of docs/configuration.md, markers excluded: a note saying where it comes
 * from, then per group a `###` heading and a table `variable | default | allowed | meaning`
 * (default `(unset)` when there is none).
 * @param vars The variables. Default {@link ENV_VARS}.
 * @returns Markdown, starting and ending with a newline (so the markers stay on lines of their own).
 */
export function renderEnvTable(vars: readonly EnvVar[] = ENV_VARS): string {
  const parts = [`\n<!-- ${GENERATED_NOTE} -->\n`];
  for (const [title, members] of byGroup(vars)) {
    parts.push(
      `\n### ${title}\n\n| variable | default | allowed | meaning |\n|---|---|---|---|\n` +
        members
          .map(
            (v) =>
              `| \`${v.name}\` | ${v.default === undefined ? '(unset)' : `\`${cell(v.default)}\``} | ${cell(v.allowed)} | ${cell(v.doc)} |\n`,
          )
          .join(''),
    );
  }
  return `${parts.join('')}\n`;
}

/**
 * The text of `.env.example`: a header, then per group a `# --- <title> ---` line and, per
 * variable, a comment line with its meaning and allowed values and the assignment of its default,
 * commented out (`# NAME=` when it has none), so the file changes nothing until a line is
 * uncommented.
 * @param vars The variables. Default {@link ENV_VARS}.
 */
export function renderEnvExample(vars: readonly EnvVar[] = ENV_VARS): string {
  const lines = [
    '# memq environment variables, each with its default, commented out.',
    `# ${GENERATED_NOTE}`,
    '# memq reads the process environment, not this file: copy it to .env, uncomment what you',
    '# change, and start with `npx tsx --env-file=.env src/main.ts start`. An empty value is unset.',
  ];
  for (const [title, members] of byGroup(vars)) {
    lines.push('', `# --- ${title} ---`);
    for (const v of members) {
      lines.push('', `# ${v.doc.replace(/\s*\n\s*/g, ' ')}. Allowed: ${v.allowed}.`);
      lines.push(`# ${v.name}=${v.default ?? ''}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Both generated texts.
 * @returns `table`: the section between the markers of docs/configuration.md
 *   ({@link renderEnvTable}); `example`: `.env.example` ({@link renderEnvExample}).
 */
export function renderEnvDocs(vars: readonly EnvVar[] = ENV_VARS): {
  table: string;
  example: string;
} {
  return { table: renderEnvTable(vars), example: renderEnvExample(vars) };
}

/**
 * The text between {@link ENV_TABLE_START} and {@link ENV_TABLE_END} in `doc`.
 * @throws Error when the markers are missing, repeated or out of order.
 */
export function envTableSection(doc: string): string {
  const start = doc.indexOf(ENV_TABLE_START);
  const end = doc.indexOf(ENV_TABLE_END);
  if (
    start < 0 ||
    end < start ||
    doc.indexOf(ENV_TABLE_START, start + 1) >= 0 ||
    doc.indexOf(ENV_TABLE_END, end + 1) >= 0
  ) {
    throw new Error(
      `expected one ${ENV_TABLE_START} line followed by one ${ENV_TABLE_END} line in ${ENV_DOCS_FILES.configuration}`,
    );
  }
  return doc.slice(start + ENV_TABLE_START.length, end);
}

/**
 * `doc` with the text between its markers replaced by `section`.
 * @throws Error when the markers are missing, repeated or out of order ({@link envTableSection}).
 */
export function replaceEnvTable(doc: string, section: string): string {
  const old = envTableSection(doc);
  const start = doc.indexOf(ENV_TABLE_START) + ENV_TABLE_START.length;
  return doc.slice(0, start) + section + doc.slice(start + old.length);
}

/**
 * Writes `.env.example` and the generated section of docs/configuration.md under `root`; creates
 * docs/configuration.md with a `## Environment variables` heading and the markers when it does not
 * exist. Validation first: a configuration doc without its markers is refused before anything is
 * written.
 * @param root Repository root. Default: the one this module is in.
 * @returns The paths written, relative to `root`.
 * @throws Error when docs/configuration.md exists without the markers; fs errors as thrown.
 */
export async function writeEnvDocs(root: string = REPO_ROOT): Promise<string[]> {
  const { table, example } = renderEnvDocs();
  const docPath = path.join(root, ENV_DOCS_FILES.configuration);
  let doc: string;
  try {
    doc = await readFile(docPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    doc = `## Environment variables\n\n${ENV_TABLE_START}${ENV_TABLE_END}\n`;
  }
  const updated = replaceEnvTable(doc, table);
  await writeFile(docPath, updated);
  await writeFile(path.join(root, ENV_DOCS_FILES.example), example);
  return [ENV_DOCS_FILES.configuration, ENV_DOCS_FILES.example];
}

/** Usage line of the command. */
const USAGE = 'usage: tsx src/cli/env-docs-command.ts --write | --markdown | --example';

/**
 * The command: `--write` writes both files ({@link writeEnvDocs}) and names them; `--markdown`
 * prints the generated docs section; `--example` prints `.env.example`.
 * @param args Arguments after the script, exactly one of the flags above.
 * @param out Where results go (stdout).
 * @param err Where problems go (stderr).
 * @returns Exit code: 0, 1 when writing failed, 2 for a usage error.
 */
export async function envDocsCommand(
  args: readonly string[],
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  const [flag, ...rest] = args;
  if (rest.length > 0 || !['--write', '--markdown', '--example'].includes(flag ?? '')) {
    err(`${USAGE}\n`);
    return 2;
  }
  if (flag === '--markdown') out(renderEnvTable());
  else if (flag === '--example') out(renderEnvExample());
  else {
    try {
      for (const file of await writeEnvDocs()) out(`wrote ${file}\n`);
    } catch (error) {
      err(`memq docs:env: ${(error as Error).message}\n`);
      return 1;
    }
  }
  return 0;
}

const script = process.argv[1];
if (script !== undefined && import.meta.url === pathToFileURL(path.resolve(script)).href) {
  process.exitCode = await envDocsCommand(
    process.argv.slice(2),
    (text) => process.stdout.write(text),
    (text) => process.stderr.write(text),
  );
}
