import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
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

  it('reports each field memq does not support with its file and path', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'memq-validate-'));
    try {
      writeFileSync(
        path.join(dir, 'x.yaml'),
        'resource: memory\nid: x\ntype: token_based\nmax_tokens: 100\npersistence:\n  type: in_memory\n  ttl: 1h\nlocking:\n  append_ttl: 30s\n',
      );
      const run = memq('validate', dir);
      expect(run.status).toBe(1);
      const file = path.join(dir, 'x.yaml');
      expect(run.stderr).toContain(
        `${file}: persistence.type: not supported by memq: in_memory (every memory is stored in Redis); use type: redis with a ttl\n`,
      );
      expect(run.stderr).toContain(
        `${file}: locking.append_ttl: not supported by memq: appends commit atomically in one Lua script and take no lock; use locking.flush_ttl or locking.clear_ttl for the locks memq takes\n`,
      );
      expect(run.stderr).toContain(`memq validate: 2 problem(s) in ${dir}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('explains an unknown command', () => {
    const run = memq('frobnicate');
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('memq: unknown command "frobnicate"');
  });
});
