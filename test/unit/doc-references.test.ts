import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** Every file git tracks in the places code and docs live (what a fresh clone holds). */
const tracked = execFileSync(
  'git',
  [
    'ls-files',
    '--',
    'src',
    'queues',
    'processors',
    'test',
    'bench',
    'docs',
    'memories',
    'examples',
    'README.md',
    '.ci',
    'eslint.config.js',
    '.dependency-cruiser.cjs',
    'Dockerfile',
    'docker-compose.yml',
  ],
  {
    encoding: 'utf8',
  },
)
  .split('\n')
  .filter((file) => /\.(ts|md|lua|yaml|yml|js|cjs)$|^\.ci\/|Dockerfile$/.test(file))
  // this file names the forbidden references in order to look for them
  .filter((file) => file !== 'test/unit/doc-references.test.ts');

/** The `#`-headings of a Markdown file, without the hashes. */
function headings(file: string): Set<string> {
  return new Set(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => /^#{1,6} /.test(line))
      .map((line) => line.replace(/^#+ /, '').trim()),
  );
}

/**
 * References of the form `docs/x.md, "Heading"` or `docs/x.md "Heading"`, possibly wrapped onto
 * the next docstring or Markdown line, with the file and line they appear on.
 */
function headingReferences(): { where: string; doc: string; heading: string }[] {
  const found: { where: string; doc: string; heading: string }[] = [];
  for (const file of tracked) {
    const text = readFileSync(file, 'utf8');
    const pattern =
      /(docs\/[a-z-]+\.md|README\.md),?\s*(?:\n\s*(?:\*|\/\/|#)?\s*)?"([^"]{1,160})"/g;
    for (const match of text.matchAll(pattern)) {
      const line = text.slice(0, match.index).split('\n').length;
      // a heading wrapped onto the next docstring or comment line reads as one line
      const heading = match[2]!.replace(/\s*\n\s*(?:\*|\/\/|#)?\s*/g, ' ');
      found.push({ where: `${file}:${line}`, doc: match[1]!, heading });
    }
  }
  return found;
}

describe('references in code and docs', () => {
  it('every `docs/x.md, "Heading"` reference names a heading that exists', () => {
    // a reference to a missing heading is what a rename or rewrite leaves behind
    const references = headingReferences();
    expect(references.length).toBeGreaterThan(20);
    const dangling = references.filter(
      ({ doc, heading }) =>
        !existsSync(doc) ||
        // a heading may add a parenthesised note: "Soak" names "Soak (`npm run soak`, ...)"
        ![...headings(doc)].some((h) => h === heading || h.startsWith(`${heading} (`)),
    );
    expect(dangling.map(({ where, doc, heading }) => `${where}: ${doc} "${heading}"`)).toEqual([]);
  });

  it('nothing refers to documents outside the repository, or to issues', () => {
    const trackedFiles = new Set(
      execFileSync('git', ['ls-files'], { encoding: 'utf8' }).split('\n').filter(Boolean),
    );
    const trackedNames = new Set([...trackedFiles].map((file) => file.split('/').pop()!));
    // a Markdown file named by path must be tracked; one named bare must exist somewhere here
    const markdown = /(?<![\w/.-])((?:[\w.-]+\/)*[\w.-]+\.md)\b/g;
    const history = /\bissue (?:#?\d+|")|\bsession \d+\b|\.\.\/shared\b/i;
    const offenders: string[] = [];
    for (const file of tracked) {
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, index) => {
          const where = `${file}:${index + 1}`;
          for (const [, name] of line.matchAll(markdown)) {
            const known = name!.includes('/')
              ? trackedFiles.has(name!.replace(/^\.\//, ''))
              : trackedNames.has(name!);
            if (!known) offenders.push(`${where}: ${name} is not in the repository`);
          }
          if (history.test(line)) offenders.push(`${where}: ${line.trim()}`);
        });
    }
    expect(offenders).toEqual([]);
  });
});
