import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ENV_VARS } from '../../src/config/env.js';
import { MEMORY_RESOURCE_KEYS } from '../../src/config/memory-resource-schema.js';

const readme = readFileSync('README.md', 'utf8');

describe('README matches the code', () => {
  it.each(ENV_VARS.map((v) => [v.name, v.default] as const))(
    'documents %s with its default',
    (name, defaultValue) => {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\` |`));
      expect(row, `README env table row for ${name}`).toBeDefined();
      expect(row).toContain(defaultValue === undefined ? '(unset)' : `\`${defaultValue}\``);
    },
  );

  it('documents every memory resource field in the field table, qualified by its parent', () => {
    const cells = readme
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .map((row) => row.split('|')[1]!);
    for (const [parent, keys] of Object.entries(MEMORY_RESOURCE_KEYS)) {
      for (const key of keys) {
        const field = parent ? `${parent}.${key}` : key;
        // `a.b`, a group row such as `persistence.circuit_breaker`, or a combined cell such as
        // `locking.append_ttl` / `clear_ttl`
        const found = cells.some(
          (cell) =>
            cell.includes(`\`${field}\``) ||
            cell.includes(`\`${field}.`) ||
            (parent !== '' && cell.includes(`\`${parent}.`) && cell.includes(`\`${key}\``)) ||
            (parent !== '' && cell.includes(`\`${parent}\``)),
        );
        expect(found, `README field table row for ${field}`).toBe(true);
      }
    }
  });

  it('gives the two set-up commands exactly', () => {
    expect(readme).toContain('```sh\nnpm install && npm start\n```');
    expect(readme).toContain('```sh\nnpm test\n```');
  });
});
