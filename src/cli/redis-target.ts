/**
 * Where a CLI command's Redis is: `REDIS_CLUSTER_NODES` (a cluster), else `REDIS_URL`, else the
 * default (`memq start`/`work`/`replay` may start a private server; operator commands use
 * `redis://127.0.0.1:6379`).
 */
import type { EnvConfig } from '../config/env.js';
import { createRedis, type RedisConnection } from '../redis/connection.js';

/** Where to connect: a URL, cluster seed nodes, and the private server memq started, if any. */
export interface RedisTarget {
  /** Redis URL (with cluster nodes: where credentials come from). */
  readonly url: string;
  /** Redis Cluster seed nodes (`host:port`), when configured. */
  readonly clusterNodes?: readonly string[];
  /** The private `redis-server` memq started (stopped with memq), if any. */
  readonly embedded?: { stop(): Promise<void> };
}

/** The URL and cluster nodes to connect to when `env` names them; undefined when it names none. */
export function configuredRedis(env: EnvConfig): RedisTarget | undefined {
  if (env.redisClusterNodes) {
    return {
      url: env.redisUrl ?? `redis://${env.redisClusterNodes[0]}`,
      clusterNodes: env.redisClusterNodes,
    };
  }
  return env.redisUrl ? { url: env.redisUrl } : undefined;
}

/** A producer (fail-fast) connection for an operator command (inspect, jobs, audit). */
export function operatorConnection(env: EnvConfig): RedisConnection {
  const target = configuredRedis(env) ?? { url: 'redis://127.0.0.1:6379' };
  const redis = createRedis({ ...target, role: 'producer' });
  redis.on('error', () => undefined);
  return redis;
}
