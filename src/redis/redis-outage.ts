/**
 * One process-wide account of Redis outages for the logs (docs/operations.md, "Logs while Redis
 * is down"). Every connection memq makes -- the ones `createRedis` opens and every duplicate of
 * them, BullMQ's worker and blocking connections included (src/redis/connection.ts) -- reports
 * its `error`, `ready` and `end` events here, so an outage is one line when it starts, a reminder
 * at most every {@link OUTAGE_REMINDER_MS} while it lasts, and one line when it is over, instead
 * of one line per connection and reconnect attempt.
 */
import { Cluster, type Redis } from 'ioredis';
import type { Logger } from 'pino';

/**
 * Least time between two "Redis still unreachable" reminders, ms: 30 000. A reminder needs a
 * connection error to come with it; no timer runs for it. ioredis 6's default `retryStrategy`
 * waits min(2^(n-1) x 50, 5000) ms plus up to 200 ms of jitter before reconnect attempt n (at most
 * 5.2 s), and a Sentinel connection asks the sentinels again after min(n x 10, 1000) ms
 * (`sentinelRetryStrategy`), so an error always comes while Redis stays away. 30 s keeps a long
 * outage visible in a log window without one line per reconnect attempt.
 */
export const OUTAGE_REMINDER_MS = 30_000;

/**
 * Where a connection goes, for logs: `host:port` (or a Unix socket path) for one server,
 * `sentinel <name> (<host:port>,...)` for a primary found through Redis Sentinel (the master
 * group and the sentinels asked), `cluster <host:port>,...` for a Redis Cluster (its seed
 * nodes); never credentials.
 */
export type RedisTargetName = string;

/** The sink every connection reports its state changes to. */
export interface RedisOutageReporter {
  /**
   * A connection-level error of `connection` (refused, reset, timed out, TLS, auth): the first
   * one while Redis was reachable logs "Redis unreachable" (target, error code and message);
   * later ones log "Redis still unreachable" at most every {@link OUTAGE_REMINDER_MS}.
   */
  error(connection: object, target: RedisTargetName, error: Error): void;
  /**
   * `connection` is ready (connected, and past ioredis's ready check). When it was the last one
   * failing during an outage, logs "Redis reachable again" with the outage's length.
   */
  ready(connection: object): void;
  /** `connection` was closed: it no longer holds an outage open. Logs nothing. */
  end(connection: object): void;
  /** True from an outage's first connection error until its "reachable again" line. */
  readonly down: boolean;
}

/** Options of {@link createRedisOutageReporter}. */
export interface RedisOutageReporterOptions {
  /** Where the three lines go (all at `warn`, so a `warn` log level shows an outage's end too). */
  readonly log: Pick<Logger, 'warn'>;
  /** Least time between reminders, ms; default {@link OUTAGE_REMINDER_MS}. */
  readonly reminderMs?: number;
  /** Clock, ms since the epoch; default `Date.now`. */
  readonly now?: () => number;
}

/** The error's code (`ECONNREFUSED`, `ETIMEDOUT`, ...) or, without one, its name. */
function codeOf(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return typeof code === 'string' ? code : error.name;
}

/**
 * A reporter logging an outage as three kinds of `warn` lines (field names as in the log):
 * - `Redis unreachable; reconnecting` `{ target, code, err }` once, at the first connection error;
 * - `Redis still unreachable; reconnecting` `{ target, code, err, down_ms, errors }` at most every
 *   `reminderMs` while connection errors go on (`errors`: connection errors since the start);
 * - `Redis reachable again` `{ target, down_ms, errors }` once every connection that failed is
 *   ready again or closed, and one became ready after the latest connection error.
 * Error messages are ioredis's and Node's (`connect ECONNREFUSED 127.0.0.1:6379`,
 * `WRONGPASS invalid username-password pair`): host and port, never a password.
 */
export function createRedisOutageReporter(
  options: RedisOutageReporterOptions,
): RedisOutageReporter {
  const { log } = options;
  const reminderMs = options.reminderMs ?? OUTAGE_REMINDER_MS;
  const now = options.now ?? Date.now;
  /** Connections whose last event was an error. */
  const failing = new Set<object>();
  let outage:
    { since: number; target: RedisTargetName; errors: number; lastLineAt: number } | undefined;
  /** Whether a connection became ready since the outage's latest connection error. */
  let readySince = false;

  const over = () => {
    if (!outage || failing.size > 0 || !readySince) return;
    log.warn(
      { target: outage.target, down_ms: now() - outage.since, errors: outage.errors },
      'Redis reachable again',
    );
    outage = undefined;
  };

  return {
    get down() {
      return outage !== undefined;
    },
    error(connection, target, error) {
      failing.add(connection);
      readySince = false;
      const at = now();
      const fields = { target, code: codeOf(error), err: error.message };
      if (!outage) {
        outage = { since: at, target, errors: 1, lastLineAt: at };
        log.warn(fields, 'Redis unreachable; reconnecting');
        return;
      }
      outage.errors += 1;
      if (at - outage.lastLineAt >= reminderMs) {
        outage.lastLineAt = at;
        log.warn(
          { ...fields, down_ms: at - outage.since, errors: outage.errors },
          'Redis still unreachable; reconnecting',
        );
      }
    },
    ready(connection) {
      failing.delete(connection);
      readySince = true;
      over();
    },
    end(connection) {
      failing.delete(connection);
      over();
    },
  };
}

/** A connection {@link watchConnection} watches: one server or a Redis Cluster. */
type Watched = Redis | Cluster;

/** `host`, in brackets when it is an IPv6 address (it holds a colon). */
const hostName = (host: string) => (host.includes(':') ? `[${host}]` : host);

/**
 * `host:port` of each `{ host, port }` entry of `nodes` (ioredis's node shape), an IPv6 host in
 * brackets, comma-separated; other entries are skipped.
 */
function hostPorts(nodes: unknown): string {
  const named = Array.isArray(nodes)
    ? nodes.flatMap((node: unknown) =>
        typeof node === 'object' && node !== null && 'host' in node && 'port' in node
          ? [`${hostName(String(node.host))}:${String(node.port)}`]
          : [],
      )
    : [];
  return named.join(',');
}

/**
 * Where `client` connects, for logs ({@link RedisTargetName}): `host:port`, the sentinels and
 * group of a Sentinel connection (its own `host` and `port` are then unused), or a cluster's
 * seed nodes; never credentials. Exported for tests and diagnostics.
 */
export function targetOf(client: Watched): RedisTargetName {
  if (client instanceof Cluster) {
    // ioredis keeps the seed nodes in a private field; its shape is checked here.
    const nodes = (client as unknown as { startupNodes?: unknown }).startupNodes;
    return `cluster ${hostPorts(nodes)}`.trim();
  }
  const { sentinels, name } = client.options;
  if (sentinels && sentinels.length > 0) {
    return `sentinel ${name ?? ''} (${hostPorts(sentinels)})`;
  }
  return client.options.path ?? `${client.options.host}:${client.options.port}`;
}

/**
 * The duplicates made of every watched connection and not ended yet, for
 * {@link abandonConnection}; a duplicate leaves its set on its `end` event.
 */
const duplicatesOf = new WeakMap<Watched, Set<Watched>>();

/**
 * Gives `client` an `error` listener (so ioredis never prints "Unhandled error event"), reports
 * its connection errors, `ready` and `end` to `outages` when given, and watches every duplicate
 * of it the same way for as long as it lives: its `duplicate()` is wrapped, and that is what
 * `duplicateConnection` (src/redis/connection.ts), BullMQ's Workers (their main and blocking
 * connections) and BullMQ's QueueEvents call for their own connections. Idempotent: a connection
 * already watched keeps its first reporter.
 */
export function watchConnection(client: Watched, outages?: RedisOutageReporter): void {
  if (duplicatesOf.has(client)) return;
  const copies = new Set<Watched>();
  duplicatesOf.set(client, copies);
  const target = targetOf(client);
  client.on('error', (error: Error) => outages?.error(client, target, error));
  if (outages) {
    client.on('ready', () => outages.ready(client));
    client.on('end', () => outages.end(client));
  }
  const adopt = <T extends Watched>(copy: T): T => {
    watchConnection(copy, outages);
    copies.add(copy);
    // Tracked while it may be open: an ended duplicate is let go, one connected again is back.
    copy.on('end', () => copies.delete(copy));
    copy.on('connecting', () => copies.add(copy));
    return copy;
  };
  if (client instanceof Cluster) {
    const duplicate = client.duplicate.bind(client);
    client.duplicate = (...args: Parameters<Cluster['duplicate']>) => adopt(duplicate(...args));
  } else {
    const duplicate = client.duplicate.bind(client);
    client.duplicate = (...args: Parameters<Redis['duplicate']>) => adopt(duplicate(...args));
  }
}

/**
 * For a shutdown past its deadline: disconnects `client` and every duplicate made of it since
 * {@link watchConnection} (BullMQ's worker and blocking connections among them), at once, without
 * QUIT and without waiting: reconnecting stops, pending commands reject with "Connection is
 * closed.", `end` is emitted, and no socket or retry timer of theirs keeps the process alive.
 * Never throws.
 */
export function abandonConnection(client: Watched): void {
  abandonDuplicates(client);
  disconnectNow(client);
}

/**
 * Disconnects `client` at once (ioredis `disconnect()`: no QUIT, reconnecting stops), and makes
 * sure it ends: its pending commands reject with "Connection is closed." and `end` is emitted,
 * whatever state it was in. Never throws.
 */
export function disconnectNow(client: Watched): void {
  try {
    client.disconnect();
    if (client instanceof Cluster || client.status !== 'reconnecting') return;
    // ioredis 6 leaves a connection disconnected while it waits to reconnect in `reconnecting`:
    // no `end`, its queued commands pending for good (redis/ioredis#1247, #2169), and BullMQ's
    // Worker.close waits for that `end`. One more connect attempt, cancelled at once, takes the
    // regular path: the attempt fails "Connection is closed.", the queues are flushed with that
    // error and the status becomes `end`.
    client.connect().catch(() => undefined);
    client.disconnect();
  } catch {
    // Already closed: nothing to stop.
  }
}

/**
 * How many duplicates made of `client` since {@link watchConnection} are still tracked (not
 * ended); 0 for a connection not watched. For tests and diagnostics only.
 */
export function trackedDuplicates(client: Watched): number {
  return duplicatesOf.get(client)?.size ?? 0;
}

/**
 * As {@link abandonConnection} for the duplicates made of `client` only (and theirs): `client`
 * itself stays as it is, for a later step to close. Never throws.
 */
export function abandonDuplicates(client: Watched): void {
  for (const copy of duplicatesOf.get(client) ?? []) abandonConnection(copy);
}
