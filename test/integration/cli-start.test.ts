import { readFileSync } from 'node:fs';
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

/**
 * The addresses sockets listen on at `port`, as `ss -ltn` shows them: the LISTEN (state 0A) rows
 * of /proc/net/tcp and /proc/net/tcp6, addresses decoded (tcp: little-endian IPv4).
 */
function listeningAddresses(port: number): string[] {
  const rows = (file: string) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f[3] === '0A' && Number.parseInt(f[1]!.split(':')[1]!, 16) === port)
      .map((f) => f[1]!.split(':')[0]!);
  const v4 = rows('/proc/net/tcp').map((hex) =>
    [6, 4, 2, 0].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)).join('.'),
  );
  const v6 = rows('/proc/net/tcp6').map((hex) => `[${hex}]`);
  return [...v4, ...v6].sort();
}

const portOf = (base: string) => Number(new URL(base).port);

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
      expect(metrics).toMatch(/^process_resident_memory_bytes \d+/m);

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

  it('listens on 127.0.0.1 only unless HOST says otherwise (HOST=0.0.0.0 in the Docker image)', async () => {
    const ns = createRedisNamespace();
    try {
      const local = await startMemqProcess('serve', memqEnv(ns, HTTP_ENV));
      try {
        expect(local.stderr()).toMatch(
          /http:\/\/localhost:\d+ \(listening on 127\.0\.0\.1: API \/v1/,
        );
        expect(listeningAddresses(portOf(local.base!))).toEqual(['127.0.0.1']);
        expect((await fetch(`${local.base!}/healthz`)).status).toBe(200);
      } finally {
        expect(await local.stop()).toBe(0);
      }
      const everywhere = await startMemqProcess(
        'serve',
        memqEnv(ns, { ...HTTP_ENV, HOST: '0.0.0.0' }),
      );
      try {
        expect(listeningAddresses(portOf(everywhere.base!))).toEqual(['0.0.0.0']);
      } finally {
        expect(await everywhere.stop()).toBe(0);
      }
    } finally {
      await ns.cleanup();
    }
  });
});
