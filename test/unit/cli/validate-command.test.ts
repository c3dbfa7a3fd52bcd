import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const memq = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    encoding: 'utf8',
    env: { ...process.env, MEMQ_LOG_LEVEL: 'warn' },
  });

describe('memq validate (CLI)', () => {
  it('exits 0 on the shipped memories and names them', () => {
    const run = memq('validate', 'memories');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(
      '3 memory resource(s) OK in memories: agent-memory, chat-buffer, customer-support',
    );
  });

  it('exits 1 on the invalid fixtures and prints one problem line per file, naming the file', () => {
    const run = memq('validate', 'test/fixtures/memories/invalid');
    expect(run.status).toBe(1);
    for (const file of readdirSync('test/fixtures/memories/invalid')) {
      expect(run.stderr, file).toContain(`test/fixtures/memories/invalid/${file}: `);
    }
    expect(run.stderr).toMatch(
      /memq validate: \d+ problem\(s\) in test\/fixtures\/memories\/invalid/,
    );
  });

  it('explains an unknown command', () => {
    const run = memq('frobnicate');
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('memq: unknown command "frobnicate"');
  });
});
