import { Cluster, Redis, type RedisOptions } from 'ioredis';

/** A connection memq works with: one Redis server, or a Redis Cluster (every memq key is single-slot). */
export type RedisConnection = Redis | Cluster;

/**
 * Connection roles (docs/architecture.md, "Lifecycle"): workers block and must never give up a command
 * (`maxRetriesPerRequest: null`, required by BullMQ workers); producers on a request path fail
 * fast instead of queueing commands while Redis is down.
 */
export type ConnectionRole = 'worker' | 'producer';

/** Options for {@link createRedis}. */
export interface CreateRedisOptions {
  /** `redis://` or `rediss://` URL (of the server, or of the cluster's first seed node). */
  readonly url: string;
  /**
   * Redis Cluster seed nodes (`REDIS_CLUSTER_NODES`), `host:port` each; when given, a Cluster
   * client is created (the URL's credentials, if any, apply to every node). Default: none.
   */
  readonly clusterNodes?: readonly string[];
  /** See {@link ConnectionRole}. */
  readonly role: ConnectionRole;
  /** Connection name shown by `CLIENT LIST`; default `memq-<role>`. */
  readonly connectionName?: string;
}

/**
 * Creates an ioredis client for `role`. RESP2 replies (`protocol: 2`) keep reply shapes stable
 * across ioredis 6's RESP3 default. The caller owns `quit()`.
 */
export function createRedis(options: CreateRedisOptions & { clusterNodes?: undefined }): Redis;
export function createRedis(options: CreateRedisOptions): RedisConnection;
export function createRedis(options: CreateRedisOptions): RedisConnection {
  const common: RedisOptions = {
    connectionName: options.connectionName ?? `memq-${options.role}`,
    protocol: 2,
    lazyConnect: false,
  };
  const roleOptions: RedisOptions =
    options.role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: true, connectTimeout: 5000 };
  if (options.clusterNodes && options.clusterNodes.length > 0) {
    const url = new URL(options.url);
    return new Cluster(
      options.clusterNodes.map((node) => {
        const [host, port] = node.split(':');
        return { host: host!, port: Number(port) };
      }),
      {
        redisOptions: {
          ...common,
          ...roleOptions,
          ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
          ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
        },
        // As for one server: producers give up after one retry (maxRetriesPerRequest above).
        enableOfflineQueue: true,
        enableReadyCheck: true,
      },
    );
  }
  return new Redis(options.url, { ...common, ...roleOptions });
}

/** Closes `client` gracefully (QUIT), falling back to a hard disconnect. Idempotent. */
export async function closeRedis(client: RedisConnection): Promise<void> {
  if (client.status === 'end') return;
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

/**
 * A new connection with `client`'s settings and `overrides` (e.g. `maxRetriesPerRequest: null`
 * for a blocking BullMQ reader); for a Cluster, the overrides apply to every node.
 */
export function duplicateConnection(
  client: RedisConnection,
  overrides: RedisOptions,
): RedisConnection {
  return client instanceof Cluster
    ? client.duplicate(undefined, {
        redisOptions: { ...client.options.redisOptions, ...overrides },
      })
    : client.duplicate(overrides);
}
