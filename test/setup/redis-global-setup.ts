import type { TestProject } from 'vitest/node';
import { freePort } from '../../src/runtime/embedded-redis.js';
import { startTestCluster } from '../helpers/redis-cluster.js';
import { startTestRedisServer } from '../helpers/redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the Redis the integration suite runs against (on a cluster: its first node). */
    redisUrl: string;
    /** Comma-separated `host:port` seed nodes when the suite runs on a cluster, else ''. */
    redisClusterNodes: string;
  }
}

export { freePort };

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
 * Integration-suite Redis (docs/architecture.md, "Tests"): with `MEMQ_TEST_REDIS=cluster`
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
  const server = await startTestRedisServer('none');
  project.provide('redisUrl', server.url);
  return () => server.destroy();
}
