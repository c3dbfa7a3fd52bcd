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

  it('documents every memory resource field', () => {
    for (const [parent, keys] of Object.entries(MEMORY_RESOURCE_KEYS)) {
      for (const key of keys) {
        const field = parent ? `${parent.split('.').at(-1)}` : key;
        expect(readme, `${parent ? parent + '.' : ''}${key}`).toMatch(
          new RegExp(`\`(${field}\\.)?[^\`]*\\b${key}\\b`),
        );
      }
    }
  });

  it('gives the two set-up commands exactly', () => {
    expect(readme).toContain('```sh\nnpm install && npm start\n```');
    expect(readme).toContain('```sh\nnpm test\n```');
  });
});
