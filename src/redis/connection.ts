import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { disconnectNow, watchConnection, type RedisOutageReporter } from './redis-outage.js';

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
   * client is created (the URL's credentials, and TLS for a `rediss:` URL, apply to every node).
   * Default: none.
   */
  readonly clusterNodes?: readonly string[];
  /** See {@link ConnectionRole}. */
  readonly role: ConnectionRole;
  /** Connection name shown by `CLIENT LIST`; default `memq-<role>`. */
  readonly connectionName?: string;
  /**
   * Told of connection errors (refused, reset, TLS, auth): the first error after the connection
   * was created or was last ready, so an outage is reported once, not once per reconnect attempt.
   * Every connection has an `error` listener either way (without one, ioredis prints "Unhandled
   * error event" for each attempt); commands still reject with their own errors. Default: none.
   */
  readonly onError?: (error: Error) => void;
  /**
   * The process's outage reporter (src/redis/redis-outage.ts): this connection and every
   * duplicate of it -- the ones {@link duplicateConnection} makes, and BullMQ's own worker and
   * blocking connections, which BullMQ makes with the connection's `duplicate()` -- report their
   * errors, readiness and end to it. Default: none (errors are still listened to, and dropped).
   */
  readonly outages?: RedisOutageReporter;
}

/** What {@link redisClientOptions} builds: the ioredis constructor arguments of a connection. */
export type RedisClientOptions =
  | {
      /** One server: `new Redis(url, options)`. */
      readonly kind: 'server';
      /** The server URL as given. */
      readonly url: string;
      /** ioredis options (role, name, RESP2 and, for `rediss:`, `tls: {}`). */
      readonly options: RedisOptions;
    }
  | {
      /** A Redis Cluster: `new Cluster(nodes, options)`. */
      readonly kind: 'cluster';
      /** The seed nodes. */
      readonly nodes: readonly { readonly host: string; readonly port: number }[];
      /** Cluster options; `redisOptions` applies to every node connection. */
      readonly options: ClusterOptions;
    };

/**
 * The ioredis options {@link createRedis} uses for `options` (pure; exported for tests). Role
 * settings as {@link ConnectionRole}; RESP2 replies (`protocol: 2`) keep reply shapes stable
 * across ioredis 6's RESP3 default; a `rediss:` URL sets `tls: {}` (Node's default TLS settings:
 * the server certificate is verified against the system CAs), for one server and for every
 * cluster node alike. On a cluster, the URL's username and password (percent-decoded) apply to
 * every node.
 */
export function redisClientOptions(
  options: Omit<CreateRedisOptions, 'onError'>,
): RedisClientOptions {
  const url = new URL(options.url);
  const common: RedisOptions = {
    connectionName: options.connectionName ?? `memq-${options.role}`,
    protocol: 2,
    lazyConnect: false,
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  const roleOptions: RedisOptions =
    options.role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: true, connectTimeout: 5000 };
  if (options.clusterNodes && options.clusterNodes.length > 0) {
    return {
      kind: 'cluster',
      nodes: options.clusterNodes.map((node) => {
        // `host:port`; an IPv6 host comes in brackets (`[::1]:7000`), which ioredis does not take.
        const at = node.lastIndexOf(':');
        const host = node.slice(0, at).replace(/^\[(.*)\]$/, '$1');
        return { host, port: Number(node.slice(at + 1)) };
      }),
      options: {
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
    };
  }
  return { kind: 'server', url: options.url, options: { ...common, ...roleOptions } };
}

/**
 * Creates an ioredis client for `role` with {@link redisClientOptions} and an `error` listener
 * (see {@link CreateRedisOptions.onError}); it and its duplicates report to
 * {@link CreateRedisOptions.outages} (see {@link watchConnection}). The caller closes it with
 * {@link closeRedis}.
 */
export function createRedis(options: CreateRedisOptions & { clusterNodes?: undefined }): Redis;
export function createRedis(options: CreateRedisOptions): RedisConnection;
export function createRedis(options: CreateRedisOptions): RedisConnection {
  const built = redisClientOptions(options);
  const client: RedisConnection =
    built.kind === 'cluster'
      ? new Cluster([...built.nodes], built.options)
      : new Redis(built.url, built.options);
  let reported = false;
  client.on('ready', () => {
    reported = false;
  });
  client.on('error', (error: Error) => {
    if (reported) return;
    reported = true;
    options.onError?.(error);
  });
  watchConnection(client, options.outages);
  return client;
}

/**
 * Longest {@link closeRedis} waits for QUIT's answer before it disconnects, ms. QUIT on a ready
 * connection answers at once; a server that stops answering must not hold a shutdown.
 */
export const QUIT_TIMEOUT_MS = 2000;

/**
 * Closes `client`: a graceful QUIT when the connection is ready (pending replies arrive first),
 * under {@link QUIT_TIMEOUT_MS}; otherwise -- connecting, reconnecting, closed, or QUIT late or
 * failed -- a hard disconnect, which stops reconnecting and rejects queued commands with
 * "Connection is closed". Never waits for a server that is not there. Idempotent; never throws.
 */
export async function closeRedis(client: RedisConnection): Promise<void> {
  if (client.status === 'end') return;
  if (client.status === 'ready') {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), QUIT_TIMEOUT_MS);
    });
    try {
      const outcome = await Promise.race([client.quit().then(() => 'quit' as const), late]);
      if (outcome === 'quit') return;
    } catch {
      // Fall through to the hard disconnect.
    } finally {
      clearTimeout(timer);
    }
  }
  disconnectNow(client);
}

/**
 * A new connection with `client`'s settings and `overrides` (e.g. `maxRetriesPerRequest: null`
 * for a blocking BullMQ reader); for a Cluster, the overrides apply to every node. It has an
 * `error` listener whether or not `client` came from {@link createRedis}, and reports to the
 * outage reporter of `client` when it has one (see {@link watchConnection}).
 */
export function duplicateConnection(
  client: RedisConnection,
  overrides: RedisOptions,
): RedisConnection {
  const copy =
    client instanceof Cluster
      ? client.duplicate(undefined, {
          redisOptions: { ...client.options.redisOptions, ...overrides },
        })
      : client.duplicate(overrides);
  watchConnection(copy);
  return copy;
}
