import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { ConfigError } from '../core/errors.js';
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
  /**
   * Redis Sentinel (`REDIS_SENTINELS`, `REDIS_SENTINEL_NAME`): when given, the client asks the
   * sentinels for the primary of `name` and follows a failover (ioredis's Sentinel support); the
   * URL's host and port are then unused, its credentials, database and TLS (`rediss:`) apply to
   * the data nodes. Not with {@link clusterNodes}. Default: none.
   */
  readonly sentinel?: SentinelTarget;
  /** See {@link ConnectionRole}. */
  readonly role: ConnectionRole;
  /** Connection name shown by `CLIENT LIST`; default `memq-<role>`. */
  readonly connectionName?: string;
  /**
   * The process's outage reporter (src/redis/redis-outage.ts): this connection and every
   * duplicate of it -- the ones {@link duplicateConnection} makes, and BullMQ's own worker and
   * blocking connections, which BullMQ makes with the connection's `duplicate()` -- report their
   * errors, readiness and end to it. Every connection has an `error` listener either way (without
   * one, ioredis prints "Unhandled error event" for each attempt); commands still reject with
   * their own errors. Default: none (errors are listened to, and dropped).
   */
  readonly outages?: RedisOutageReporter;
}

/** A Redis Sentinel deployment: the sentinels to ask, and the master group they watch. */
export interface SentinelTarget {
  /** Sentinel nodes, `host:port` each (an IPv6 host in brackets, `[::1]:26379`); at least one. */
  readonly nodes: readonly string[];
  /** The master group name (`sentinel monitor <name> ...`). */
  readonly name: string;
}

/** `host:port` (an IPv6 host in brackets, which ioredis does not take) as ioredis's `{ host, port }`. */
function hostPort(node: string): { host: string; port: number } {
  const at = node.lastIndexOf(':');
  return { host: node.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(node.slice(at + 1)) };
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
      /**
       * A primary found through Redis Sentinel: `new Redis(url, options)`, `options` holding
       * `sentinels` and `name` (ioredis's Sentinel support).
       */
      readonly kind: 'sentinel';
      /** The URL as given: credentials, database and `rediss:` of the data nodes. */
      readonly url: string;
      /** ioredis options: as for one server, plus the sentinels, the group name and failover detection. */
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
 * every node. With a {@link SentinelTarget}, the URL's credentials and database apply to the
 * primary (and, after a failover, to the replica promoted), a `rediss:` URL sets TLS for the
 * data nodes and the sentinels alike, and the sentinels are asked without credentials. A
 * failover is followed when the old primary's connection breaks (it died, or Sentinel's
 * `CLIENT KILL TYPE normal` when it demotes it): the client reconnects to the primary the
 * sentinels name then. ioredis's `failoverDetector` is left off: its sentinel subscriptions
 * outlive `QUIT` in ioredis 6.0.0 and would keep a stopping process alive.
 * @throws TypeError for a URL that does not parse; ConfigError for cluster nodes and a sentinel
 *   together, or a sentinel without nodes.
 */
export function redisClientOptions(options: CreateRedisOptions): RedisClientOptions {
  const url = new URL(options.url);
  if (options.sentinel && (options.clusterNodes?.length ?? 0) > 0) {
    throw new ConfigError('redis: expected either Sentinel nodes or Cluster nodes, not both');
  }
  if (options.sentinel && options.sentinel.nodes.length === 0) {
    throw new ConfigError('redis: sentinel.nodes: expected at least one host:port, got none');
  }
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
      nodes: options.clusterNodes.map(hostPort),
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
  if (options.sentinel) {
    const tls = url.protocol === 'rediss:';
    return {
      kind: 'sentinel',
      url: options.url,
      options: {
        ...common,
        ...roleOptions,
        sentinels: options.sentinel.nodes.map(hostPort),
        name: options.sentinel.name,
        ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
      },
    };
  }
  return { kind: 'server', url: options.url, options: { ...common, ...roleOptions } };
}

/**
 * Creates an ioredis client for `role` with {@link redisClientOptions} and an `error` listener;
 * it and its duplicates report to {@link CreateRedisOptions.outages} (see
 * {@link watchConnection}). The caller closes it with {@link closeRedis}.
 */
export function createRedis(options: CreateRedisOptions & { clusterNodes?: undefined }): Redis;
export function createRedis(options: CreateRedisOptions): RedisConnection;
export function createRedis(options: CreateRedisOptions): RedisConnection {
  const built = redisClientOptions(options);
  const client: RedisConnection =
    built.kind === 'cluster'
      ? new Cluster([...built.nodes], built.options)
      : new Redis(built.url, built.options);
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
