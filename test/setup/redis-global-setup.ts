import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePort } from '../../src/runtime/embedded-redis.js';
import { startTestCluster } from '../helpers/redis-cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the Redis the integration suite runs against (on a cluster: its first node). */
    redisUrl: string;
    /** Comma-separated `host:port` seed nodes when the suite runs on a cluster, else ''. */
    redisClusterNodes: string;
  }
}

export { freePort };

/** Resolves when something answers PING on `port`, or rejects after `timeoutMs`. */
export async function waitForRedis(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => socket.write('PING\r\n'));
      socket.once('data', (data) => {
        socket.destroy();
        resolve(data.toString().startsWith('+PONG'));
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function tryTestcontainers(): Promise<
  { url: string; stop: () => Promise<unknown> } | undefined
> {
  if (process.env.TESTCONTAINERS === '0') return undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 5000).unref()),
    ]);
    const { RedisContainer } = await import('@testcontainers/redis');
    const container = await new RedisContainer('redis:7.4').start();
    return { url: container.getConnectionUrl(), stop: () => container.stop() };
  } catch {
    return undefined;
  }
}

/**
 * Integration-suite Redis (STYLE.md "Tests"): with `MEMQ_TEST_REDIS=cluster`
 * (`npm run test:cluster`) a local three-master Redis Cluster; else REDIS_URL if set; else a Testcontainers Redis when
 * a container runtime answers; else a `redis-server` spawned on a free loopback port with no
 * persistence; with none of these it fails loudly.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  project.provide('redisClusterNodes', '');
  if (process.env.MEMQ_TEST_REDIS === 'cluster') {
    const cluster = await startTestCluster();
    project.provide('redisUrl', `redis://${cluster.nodes[0]}`);
    project.provide('redisClusterNodes', cluster.nodes.join(','));
    return () => cluster.stop();
  }
  if (process.env.REDIS_URL) {
    project.provide('redisUrl', process.env.REDIS_URL);
    return async () => {};
  }
  const container = await tryTestcontainers();
  if (container) {
    project.provide('redisUrl', container.url);
    return async () => {
      await container.stop();
    };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'memq-test-redis-'));
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const child: ChildProcess = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: 'ignore' },
  );
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (err) =>
      reject(
        new Error(
          `integration tests need Redis: set REDIS_URL, or run a container runtime for Testcontainers, or install redis-server (apt-get install redis-server). Spawning ${bin} failed: ${err.message}`,
        ),
      ),
    ),
  );
  await Promise.race([waitForRedis(port), spawnError]);
  project.provide('redisUrl', `redis://127.0.0.1:${port}`);
  return async () => {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  };
}
