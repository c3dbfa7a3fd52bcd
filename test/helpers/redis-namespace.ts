import { randomBytes } from 'node:crypto';
import { Cluster, type Redis } from 'ioredis';
import { inject } from 'vitest';
import { createRedis, type RedisConnection } from '../../src/redis/connection.js';

/** A per-test slice of the shared Redis: its own key prefix and BullMQ prefix. */
export interface RedisNamespace {
  /** Redis URL (on a cluster: its first node). */
  readonly url: string;
  /**
   * The suite's Redis Cluster seed nodes (`host:port`) when it runs on a cluster
   * (`npm run test:cluster`); undefined on one server.
   */
  readonly clusterNodes: readonly string[] | undefined;
  /** Key prefix for memory keys, e.g. `memqt-ab12cd:`. */
  readonly keyPrefix: string;
  /** BullMQ prefix (a hash tag), e.g. `{memqt-ab12cd}`. */
  readonly queuePrefix: string;
  /** A worker-role connection (closed by {@link RedisNamespace.cleanup}). */
  readonly redis: RedisConnection;
  /** Opens another connection (worker role, or producer role: fail fast), closed by cleanup. */
  connect(options?: { producer?: boolean }): RedisConnection;
  /** Every key of this namespace (memory keys and BullMQ keys). */
  keys(): Promise<string[]>;
  /**
   * Every key name and value of this namespace as plain text (read by type: GET, HGETALL,
   * ZRANGE, LRANGE, SMEMBERS, XRANGE), for scanning what Redis holds. DUMP is not usable for
   * that: its payload is LZF-compressed.
   */
  allText(): Promise<string>;
  /** Deletes only this namespace's keys and closes its connections. */
  cleanup(): Promise<void>;
}

/** Creates a fresh namespace on the suite's Redis or cluster (never FLUSHALL). */
export function createRedisNamespace(): RedisNamespace {
  const url = inject('redisUrl');
  const nodes = inject('redisClusterNodes');
  const clusterNodes = nodes ? nodes.split(',') : undefined;
  const id = randomBytes(5).toString('hex');
  const keyPrefix = `memqt-${id}:`;
  const queuePrefix = `{memqt-${id}}`;
  const connections: RedisConnection[] = [];
  const connect = (options: { producer?: boolean } = {}): RedisConnection => {
    const client = createRedis({
      url,
      ...(clusterNodes ? { clusterNodes } : {}),
      role: options.producer ? 'producer' : 'worker',
    });
    connections.push(client);
    return client;
  };
  const redis = connect();
  /** SCAN covers one node: on a cluster every master is scanned. */
  const scan = async (pattern: string): Promise<string[]> => {
    const found: string[] = [];
    const nodes: Redis[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        found.push(...batch);
      } while (cursor !== '0');
    }
    return found;
  };
  const escapeGlob = (s: string) => s.replace(/[*?[\]\\{}]/g, (c) => '\\' + c);
  const keys = async () => [
    ...(await scan(`${escapeGlob(keyPrefix)}*`)),
    ...(await scan(`${escapeGlob(queuePrefix)}*`)),
  ];
  const valueText = async (key: string): Promise<string> => {
    switch (await redis.type(key)) {
      case 'string':
        return (await redis.get(key)) ?? '';
      case 'hash':
        return JSON.stringify(await redis.hgetall(key));
      case 'zset':
        return JSON.stringify(await redis.zrange(key, '0', '-1', 'WITHSCORES'));
      case 'list':
        return JSON.stringify(await redis.lrange(key, '0', '-1'));
      case 'set':
        return JSON.stringify(await redis.smembers(key));
      case 'stream':
        return JSON.stringify(await redis.xrange(key, '-', '+'));
      default:
        return '';
    }
  };
  return {
    url,
    clusterNodes,
    keyPrefix,
    queuePrefix,
    redis,
    connect,
    keys,
    async allText() {
      const parts: string[] = [];
      for (const key of await keys()) parts.push(key, await valueText(key));
      return parts.join('\n');
    },
    async cleanup() {
      const all = await keys();
      // One key per UNLINK on a cluster: a multi-key UNLINK (or a pipeline) spanning slots is
      // refused there.
      for (let i = 0; i < all.length; i += 500) {
        const batch = all.slice(i, i + 500);
        if (redis instanceof Cluster) await Promise.all(batch.map((key) => redis.unlink(key)));
        else await redis.unlink(...batch);
      }
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}
