import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { inject } from 'vitest';

/** A per-test slice of the shared Redis: its own key prefix and BullMQ prefix. */
export interface RedisNamespace {
  /** Redis URL. */
  readonly url: string;
  /** Key prefix for memory keys, e.g. `memqt-ab12cd:`. */
  readonly keyPrefix: string;
  /** BullMQ prefix (a hash tag), e.g. `{memqt-ab12cd}`. */
  readonly queuePrefix: string;
  /** A worker-role connection (closed by {@link RedisNamespace.cleanup}). */
  readonly redis: Redis;
  /** Opens another connection, closed by cleanup. */
  connect(options?: { producer?: boolean }): Redis;
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

/** Creates a fresh namespace on the suite's Redis (never FLUSHALL). */
export function createRedisNamespace(): RedisNamespace {
  const url = inject('redisUrl');
  const id = randomBytes(5).toString('hex');
  const keyPrefix = `memqt-${id}:`;
  const queuePrefix = `{memqt-${id}}`;
  const connections: Redis[] = [];
  const connect = (options: { producer?: boolean } = {}): Redis => {
    const client = new Redis(url, {
      protocol: 2,
      maxRetriesPerRequest: options.producer ? 1 : null,
    });
    connections.push(client);
    return client;
  };
  const redis = connect();
  const scan = async (pattern: string): Promise<string[]> => {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
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
      for (let i = 0; i < all.length; i += 500) await redis.unlink(...all.slice(i, i + 500));
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}
