/**
 * Where a CLI command's Redis is: `REDIS_CLUSTER_NODES` (a cluster), else `REDIS_SENTINELS` with
 * `REDIS_SENTINEL_NAME` (the primary Sentinel names), else `REDIS_URL`, else the
 * default (`memq start`/`work`/`replay` may start a private server; operator commands use
 * `redis://127.0.0.1:6379`).
 */
import type { EnvConfig } from '../config/env.js';
import { createRedis, type RedisConnection, type SentinelTarget } from '../redis/connection.js';

/** Where to connect: a URL, cluster seed nodes, and the private server memq started, if any. */
export interface RedisTarget {
  /** Redis URL (with cluster nodes: where credentials come from). */
  readonly url: string;
  /** Redis Cluster seed nodes (`host:port`), when configured. */
  readonly clusterNodes?: readonly string[];
  /** Redis Sentinel (the sentinels and the master group name), when configured. */
  readonly sentinel?: SentinelTarget;
  /** The private `redis-server` memq started (stopped with memq), if any. */
  readonly embedded?: { stop(): Promise<void> };
}

/**
 * The URL and cluster nodes, or sentinels, to connect to when `env` names them; undefined when it
 * names none. With sentinels and no `REDIS_URL`, the URL is `redis://127.0.0.1:6379` (only its
 * credentials and database would be used: none).
 */
export function configuredRedis(env: EnvConfig): RedisTarget | undefined {
  if (env.redisClusterNodes) {
    return {
      url: env.redisUrl ?? `redis://${env.redisClusterNodes[0]}`,
      clusterNodes: env.redisClusterNodes,
    };
  }
  if (env.redisSentinels && env.redisSentinelName) {
    return {
      url: env.redisUrl ?? 'redis://127.0.0.1:6379',
      sentinel: { nodes: env.redisSentinels, name: env.redisSentinelName },
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
