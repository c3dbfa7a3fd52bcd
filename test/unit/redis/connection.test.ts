/**
 * The ioredis options memq builds (src/redis/connection.ts) and `closeRedis` on a connection that
 * never connected. Nothing needs to run: the dead-port test connects to a port nothing listens on.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Cluster, type Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { closeRedis, createRedis, redisClientOptions } from '../../../src/redis/connection.js';
import { createRedisOutageReporter } from '../../../src/redis/redis-outage.js';
import { endpointOf } from '../../../src/runtime/connect.js';

/** A local port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('redisClientOptions', () => {
  it('a rediss:// cluster endpoint turns TLS on for every node, with the URL credentials', () => {
    const built = redisClientOptions({
      url: 'rediss://app%40x:p%3Ass@node-a:7000',
      clusterNodes: ['node-a:7000', 'node-b:7001'],
      role: 'producer',
    });
    expect(built.kind).toBe('cluster');
    if (built.kind !== 'cluster') return;
    expect(built.nodes).toEqual([
      { host: 'node-a', port: 7000 },
      { host: 'node-b', port: 7001 },
    ]);
    expect(built.options.redisOptions).toMatchObject({
      tls: {},
      username: 'app@x',
      password: 'p:ss',
      maxRetriesPerRequest: 1,
    });
  });

  it("connect's { cluster, tls: true } shape reaches the cluster options as TLS", () => {
    const endpoint = endpointOf({ cluster: ['n1:7000', 'n2:7000'], password: 'pw', tls: true });
    const built = redisClientOptions({ ...endpoint, role: 'worker' });
    expect(built.kind === 'cluster' && built.options.redisOptions).toMatchObject({
      tls: {},
      password: 'pw',
      maxRetriesPerRequest: null,
    });
    const plain = redisClientOptions({
      ...endpointOf({ cluster: ['n1:7000'] }),
      role: 'worker',
    });
    expect(plain.kind === 'cluster' && plain.options.redisOptions?.tls).toBeUndefined();
  });

  it('one server: TLS for rediss://, none for redis://', () => {
    expect(
      redisClientOptions({ url: 'rediss://cache:6380', role: 'producer' }).options,
    ).toMatchObject({ tls: {} });
    const plain = redisClientOptions({ url: 'redis://cache:6379', role: 'producer' });
    expect(plain.kind).toBe('server');
    expect('tls' in plain.options).toBe(false);
  });

  it('an IPv6 cluster node loses its brackets', () => {
    const built = redisClientOptions({
      url: 'redis://[::1]:7000',
      clusterNodes: ['[::1]:7000'],
      role: 'producer',
    });
    expect(built.kind === 'cluster' && built.nodes).toEqual([{ host: '::1', port: 7000 }]);
  });
});

describe('createRedis and closeRedis on an unreachable server', () => {
  /** Connection attempts `client` starts during `ms` (ioredis retries after 50 ms, 100 ms...). */
  async function attemptsDuring(client: Redis | Cluster, ms: number): Promise<number> {
    let attempts = 0;
    const count = () => (attempts += 1);
    client.on('reconnecting', count);
    client.on('connecting', count);
    await new Promise((resolve) => setTimeout(resolve, ms));
    client.off('reconnecting', count);
    client.off('connecting', count);
    return attempts;
  }

  it('reports the connection error once, without ioredis printing it; close stops reconnecting', async () => {
    const printed = vi.spyOn(console, 'error');
    const port = await deadPort();
    const lines: Array<{ msg: string; fields: Record<string, unknown> }> = [];
    const outages = createRedisOutageReporter({
      log: {
        warn: ((fields: Record<string, unknown>, msg: string) =>
          lines.push({ msg, fields })) as never,
      },
    });
    const worker = createRedis({ url: `redis://127.0.0.1:${port}`, role: 'worker', outages });
    try {
      // A worker connection never gives up a command: it reconnects until closed.
      void worker.ping().catch(() => undefined);
      await vi.waitFor(() => expect(worker.status).toBe('reconnecting'), { timeout: 5000 });
      expect(await attemptsDuring(worker, 300)).toBeGreaterThan(0);
      expect(lines).toEqual([
        {
          msg: 'Redis unreachable; reconnecting',
          fields: {
            target: `127.0.0.1:${port}`,
            code: 'ECONNREFUSED',
            err: `connect ECONNREFUSED 127.0.0.1:${port}`,
          },
        },
      ]);
      expect(printed.mock.calls.filter((call) => String(call[0]).includes('[ioredis]'))).toEqual(
        [],
      );

      // QUIT would wait for a connection that never comes; closeRedis disconnects instead, and
      // the connection ends: a command waiting for it rejects (ioredis 6 alone leaves a
      // connection disconnected while reconnecting with its commands pending for good).
      const pending = worker.get('never').then(
        () => 'resolved',
        (error: Error) => error.message,
      );
      await closeRedis(worker);
      expect(await pending).toBe('Connection is closed.');
      expect(worker.status).toBe('end');
      expect(await attemptsDuring(worker, 600)).toBe(0);
      await closeRedis(worker); // idempotent
    } finally {
      printed.mockRestore();
      worker.disconnect();
    }
  });

  it('closes a cluster client whose seed nodes never answered', async () => {
    const cluster = createRedis({
      url: 'redis://127.0.0.1:1',
      clusterNodes: [`127.0.0.1:${await deadPort()}`],
      role: 'worker',
    });
    expect(cluster).toBeInstanceOf(Cluster);
    await once(cluster, 'connecting');
    void cluster.ping().catch(() => undefined);
    await closeRedis(cluster);
    expect(await attemptsDuring(cluster, 600)).toBe(0);
  });
});
