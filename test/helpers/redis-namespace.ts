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
  return {
    url,
    keyPrefix,
    queuePrefix,
    redis,
    connect,
    keys,
    async cleanup() {
      const all = await keys();
      for (let i = 0; i < all.length; i += 500) await redis.unlink(...all.slice(i, i + 500));
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}
