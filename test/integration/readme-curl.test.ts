import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { memqEnv, startMemqProcess } from '../helpers/cli.js';
import { createRedisNamespace } from '../helpers/redis-namespace.js';

/** The README's curl session: the first sh block after the "## HTTP API" heading. */
function readmeCurlSession(): string {
  const readme = readFileSync('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('\n## HTTP API'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README: no sh block under "## HTTP API"');
  return block[1]!;
}

describe('README', () => {
  it('the curl session works as written against memq start on a fresh directory', async () => {
    const ns = createRedisNamespace();
    const cwd = mkdtempSync(path.join(tmpdir(), 'memq-readme-'));
    const env = memqEnv(ns, { PORT: '0', MEMQ_MEMORIES_DIR: path.resolve('memories') });
    delete env.MEMQ_API_KEYS; // as on a fresh machine: memq creates .memq/api-key
    delete env.MEMQ_API_KEYS_FILE;
    delete env.MEMQ_BOARD_PASSWORD;
    const memq = await startMemqProcess('start', env, cwd);
    try {
      const port = /localhost:(\d+)/.exec(memq.base ?? '')?.[1];
      expect(port, memq.stderr()).toBeDefined();
      expect(memq.stderr()).toContain(
        'the API accepts the key in .memq/api-key (project default), created now',
      );
      expect(statSync(path.join(cwd, '.memq/api-key')).mode & 0o777).toBe(0o600);
      expect(memq.stderr()).not.toContain(
        readFileSync(path.join(cwd, '.memq/api-key'), 'utf8').trim(),
      );

      const session = readmeCurlSession().replaceAll('localhost:3000', `localhost:${port}`);
      const run = spawnSync('bash', ['-euo', 'pipefail', '-c', session], { cwd, encoding: 'utf8' });
      expect(run.status, run.stderr).toBe(0);
      const [append, read, agentAppend, context, flush, stats] = run.stdout
        .replace(/}\{/g, '}\n{')
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(append).toMatchObject({ redactions: 1, result: { added: 2, duplicates: 0 } });
      expect(JSON.stringify(read)).toContain('Hi, I am [REDACTED] and my order #4411 is late');
      expect(read).toMatchObject({ total: 2, context_window: { max_tokens: 4_000 } });
      expect(agentAppend).toMatchObject({ not_persisted: 0, result: { added: 6, duplicates: 0 } });
      // The newest messages that fit 70 tokens: the developer message (pinned), then the tool
      // call with its result and what follows; the first question is left out, never half a unit.
      const sent = (context as { messages: Array<Record<string, unknown>> }).messages;
      expect(sent.map((m) => m.role)).toEqual([
        'developer',
        'assistant',
        'tool',
        'assistant',
        'user',
      ]);
      expect(sent[1]).toMatchObject({ content: null, tool_calls: [{ id: 'call_1' }] });
      expect(sent[2]).toMatchObject({
        tool_call_id: 'call_1',
        content: 'In transit, arrives Friday',
      });
      expect(context).toMatchObject({ max_tokens: 70, omitted: { messages: 1 }, exact: false });
      expect((context as { tokens: number }).tokens).toBeLessThanOrEqual(70);
      expect(flush).toMatchObject({ result: { applied: false } });
      // `roles` is not asserted: it is null unless the curl line asks for ?deep=true.
      expect(stats).toMatchObject({
        message_count: 2,
        consistent: true,
        token_utilization: expect.any(Number) as unknown,
      });
      expect(run.stdout).not.toContain('jane@example.com');
    } finally {
      await memq.stop();
      rmSync(cwd, { recursive: true, force: true });
      await ns.cleanup();
    }
  });
});
