import { describe, expect, it } from 'vitest';
import { memqEnv, startMemqProcess } from '../helpers/cli.js';
import { createRedisNamespace } from '../helpers/redis-namespace.js';

const KEY = 'cli-test-key-0123456789';
/** Any free port, a known API key and board password (no .memq files written by tests). */
const HTTP_ENV = {
  PORT: '0',
  MEMQ_API_KEYS: `${KEY}:cli`,
  MEMQ_BOARD_PASSWORD: 'cli-board-password',
};

const appendOne = (base: string, key: string, content: string) =>
  fetch(`${base}/v1/memories/customer-support/${key}/messages?wait=true`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content }] }),
  });

describe('memq start', () => {
  it('serves the API, Bull Board and metrics on one port with the workers, and drains on SIGTERM', async () => {
    const ns = createRedisNamespace();
    try {
      const memq = await startMemqProcess('start', memqEnv(ns, HTTP_ENV));
      expect(memq.stderr()).toMatch(/memq start: http:\/\/localhost:\d+ .*; workers \(append x16/);
      const base = memq.base!;

      const append = await appendOne(base, 'cli-1', 'hello from the CLI test');
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

      expect(await memq.stop()).toBe(0);
      expect(memq.stderr()).toContain('SIGTERM: draining');
    } finally {
      await ns.cleanup();
    }
  });

  it('splits into memq serve (HTTP only) and memq work (workers only) against one Redis', async () => {
    const ns = createRedisNamespace();
    const env = memqEnv(ns, HTTP_ENV);
    const [serve, work] = await Promise.all([
      startMemqProcess('serve', env),
      startMemqProcess('work', env),
    ]);
    try {
      expect(serve.stderr()).toMatch(/memq serve: http:\/\/localhost:\d+ [^;]*; Ctrl-C/);
      expect(work.stderr()).toMatch(/memq work: workers \(append x16, token-count x4\); Ctrl-C/);
      expect(work.base).toBeUndefined();
      expect((await fetch(`${serve.base!}/readyz`)).status).toBe(200); // a canary through memq work
      expect((await appendOne(serve.base!, 'split-1', 'via serve, stored by work')).status).toBe(
        200,
      );
    } finally {
      expect(await serve.stop()).toBe(0);
      expect(await work.stop()).toBe(0);
      await ns.cleanup();
    }
  });
});
