import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { memqEnv } from '../helpers/cli.js';
import { createRedisNamespace } from '../helpers/redis-namespace.js';

const KEY = 'cli-test-key-0123456789';
/** Any free port, a known API key and board password (no .memq files written by tests). */
const HTTP_ENV = {
  PORT: '0',
  MEMQ_API_KEYS: `${KEY}:cli`,
  MEMQ_BOARD_PASSWORD: 'cli-board-password',
};

describe('memq start', () => {
  it('serves the API, Bull Board and metrics on one port with the workers, and drains on SIGTERM', async () => {
    const ns = createRedisNamespace();
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'start'], {
        env: memqEnv(ns, HTTP_ENV),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) =>
        child.once('exit', (code) => resolve(code)),
      );
      const deadline = Date.now() + 30_000;
      while (!stderr.includes('Ctrl-C to stop') && Date.now() < deadline && child.exitCode === null)
        await new Promise((r) => setTimeout(r, 50));
      expect(stderr).toMatch(/memq start: http:\/\/localhost:\d+ .*; workers \(append x16/);
      const base = /http:\/\/localhost:(\d+)/.exec(stderr)![0];

      const append = await fetch(`${base}/v1/memories/customer-support/cli-1/messages?wait=true`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'hello from the CLI test' }] }),
      });
      expect(append.status).toBe(200);
      expect(((await append.json()) as { result: unknown }).result).toEqual({
        added: 1,
        duplicates: 0,
      });
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const board = await fetch(`${base}/admin/queues`, {
        headers: {
          Authorization: `Basic ${Buffer.from('admin:cli-board-password').toString('base64')}`,
        },
      });
      expect(board.status).toBe(200);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toContain('memq_messages_appended_total{resource="customer-support"} 1');
      expect(metrics).toContain('memq_process_resident_memory_bytes');

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toContain('SIGTERM: draining');
    } finally {
      await ns.cleanup();
    }
  });

  it('splits into memq serve (HTTP only) and memq work (workers only) against one Redis', async () => {
    const ns = createRedisNamespace();
    const env = memqEnv(ns, HTTP_ENV);
    const start = (command: string) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', command], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const state = { stderr: '' };
      child.stderr.on('data', (d: Buffer) => (state.stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      return { child, state, exited };
    };
    const serve = start('serve');
    const work = start('work');
    try {
      const deadline = Date.now() + 30_000;
      while (
        !(serve.state.stderr.includes('Ctrl-C') && work.state.stderr.includes('Ctrl-C')) &&
        Date.now() < deadline
      )
        await new Promise((r) => setTimeout(r, 50));
      expect(serve.state.stderr).toMatch(/memq serve: http:\/\/localhost:\d+ [^;]*; Ctrl-C/);
      expect(work.state.stderr).toMatch(
        /memq work: workers \(append x16, token-count x2\); Ctrl-C/,
      );
      const base = /http:\/\/localhost:(\d+)/.exec(serve.state.stderr)![0];
      expect((await fetch(`${base}/readyz`)).status).toBe(200); // a canary through memq work
      const append = await fetch(
        `${base}/v1/memories/customer-support/split-1/messages?wait=true`,
        {
          method: 'POST',
          headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({
            messages: [{ role: 'user', content: 'via serve, stored by work' }],
          }),
        },
      );
      expect(append.status).toBe(200);
    } finally {
      serve.child.kill('SIGTERM');
      work.child.kill('SIGTERM');
      expect(await serve.exited).toBe(0);
      expect(await work.exited).toBe(0);
      await ns.cleanup();
    }
  });
});
