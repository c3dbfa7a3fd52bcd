import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ENV_DOCS_COMMAND,
  ENV_DOCS_FILES,
  envTableSection,
  renderEnvDocs,
} from '../../src/cli/env-docs-command.js';
import {
  MEMORY_RESOURCE_KEYS,
  UNSUPPORTED_MEMORY_FIELDS,
} from '../../src/config/memory-resource-schema.js';

const configuration = readFileSync(ENV_DOCS_FILES.configuration, 'utf8');
const readme = readFileSync('README.md', 'utf8');
const generated = renderEnvDocs();
const regenerate = `run \`${ENV_DOCS_COMMAND}\` to regenerate it from src/config/env.ts`;

/**
 * The first cell of every row of the configuration doc's memory field table (the table whose
 * header starts `| field |`), e.g. `` `flushing.type` ``.
 */
function memoryFieldCells(): string[] {
  const lines = configuration.split('\n');
  const header = lines.findIndex((line) => line.startsWith('| field |'));
  expect(
    header,
    `a memory field table (header "| field |") in ${ENV_DOCS_FILES.configuration}`,
  ).toBeGreaterThanOrEqual(0);
  const rows: string[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|')[1]!.trim());
  }
  return rows;
}

/** Every field of MEMORY_RESOURCE_KEYS as a dotted path, e.g. `flushing.summarizer.model`. */
const memoryFields = Object.entries(MEMORY_RESOURCE_KEYS).flatMap(([parent, keys]) =>
  keys.map((key) => (parent ? `${parent}.${key}` : key)),
);

describe('docs match the code', () => {
  it(`${ENV_DOCS_FILES.configuration}: the environment table is the generated one`, () => {
    expect(
      envTableSection(configuration),
      `the env table of ${ENV_DOCS_FILES.configuration} differs from the generator's: ${regenerate}`,
    ).toBe(generated.table);
  });

  it(`${ENV_DOCS_FILES.example} is the generated one`, () => {
    expect(
      readFileSync(ENV_DOCS_FILES.example, 'utf8'),
      `${ENV_DOCS_FILES.example} differs from the generator's: ${regenerate}`,
    ).toBe(generated.example);
  });

  it.each(memoryFields)('the memory field table has a row for %s', (field) => {
    expect(memoryFieldCells(), `${ENV_DOCS_FILES.configuration} memory field table`).toContain(
      `\`${field}\``,
    );
  });

  it('every row of the memory field table names a field memq reads', () => {
    const known = new Set(memoryFields.map((field) => `\`${field}\``));
    expect(memoryFieldCells().filter((cell) => !known.has(cell))).toEqual([]);
  });

  it.each(Object.keys(UNSUPPORTED_MEMORY_FIELDS))(
    'the memory field table has no row for %s, which memq refuses',
    (field) => {
      expect(memoryFieldCells().filter((cell) => cell.includes(`\`${field}`))).toEqual([]);
    },
  );

  it('README.md gives the two set-up commands exactly', () => {
    expect(readme).toContain('```sh\nnpm install && npm start\n```');
    expect(readme).toContain('```sh\nnpm test\n```');
  });
});
