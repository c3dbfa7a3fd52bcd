/**
 * Replica confirmation (`MEMQ_WAIT_REPLICAS`, docs/reliability.md, "Failover"): Redis replicates
 * asynchronously, so a write the primary acknowledged is lost if the primary dies before a
 * replica copied it and that replica is promoted. `WAIT <replicas> <timeout>` blocks the calling
 * connection until that many replicas confirm every earlier write of the connection, or the
 * timeout passes, and answers how many did.
 */
import { Cluster } from 'ioredis';
import { ConfigError, RedisUnavailableError } from '../core/errors.js';
import type { RedisConnection } from './connection.js';

/** How many replicas must confirm, and how long one `WAIT` may take. */
export interface ReplicaConfirmation {
  /** Replicas that must confirm, an integer 1-16 (`MEMQ_WAIT_REPLICAS`). */
  readonly replicas: number;
  /** Longest one `WAIT` blocks, ms, an integer 1-4000 (`MEMQ_WAIT_REPLICAS_TIMEOUT_MS`). */
  readonly timeoutMs: number;
}

/** Default of `MEMQ_WAIT_REPLICAS_TIMEOUT_MS`, ms (src/config/env.ts). */
export const DEFAULT_WAIT_REPLICAS_TIMEOUT_MS = 1000;

/**
 * The {@link ReplicaConfirmation} of the environment's `MEMQ_WAIT_REPLICAS` and
 * `MEMQ_WAIT_REPLICAS_TIMEOUT_MS` (default {@link DEFAULT_WAIT_REPLICAS_TIMEOUT_MS}), or
 * undefined when `waitReplicas` is 0 or absent (off).
 */
export function replicaConfirmation(env: {
  readonly waitReplicas?: number;
  readonly waitReplicasTimeoutMs?: number;
}): ReplicaConfirmation | undefined {
  return env.waitReplicas
    ? {
        replicas: env.waitReplicas,
        timeoutMs: env.waitReplicasTimeoutMs ?? DEFAULT_WAIT_REPLICAS_TIMEOUT_MS,
      }
    : undefined;
}

/**
 * Throws when replica confirmation cannot work on `connection`: a Redis Cluster client sends a
 * keyless command such as `WAIT` to any node, not to the node that took the writes, so memq
 * refuses `MEMQ_WAIT_REPLICAS` with `REDIS_CLUSTER_NODES`.
 * @throws ConfigError naming `MEMQ_WAIT_REPLICAS` for a Cluster connection.
 */
export function checkReplicaConfirmation(
  connection: RedisConnection,
  confirmation: ReplicaConfirmation | undefined,
): void {
  if (confirmation && connection instanceof Cluster) {
    throw new ConfigError(
      `MEMQ_WAIT_REPLICAS: expected 0 on a Redis Cluster (WAIT has no key to route it to the node that took the writes), got ${confirmation.replicas}`,
    );
  }
}

/** Per connection, how many times it became ready since {@link connectionSession} first saw it. */
const readyCounts = new WeakMap<RedisConnection, { count: number }>();

/**
 * The current session of `connection`: a number that changes each time the connection becomes
 * ready again (a reconnect, after a failover possibly to another primary). Take it before the
 * writes {@link confirmReplicas} is to confirm, or when the last one's reply is in with no I/O
 * awaited in between (a reply arrives on the connection that ran the command, so the session
 * then is the one the write was made in): ioredis re-sends commands in flight after a
 * reconnect (`autoResendUnfulfilledCommands`), and a WAIT answered on a new connection says
 * nothing of writes made on the old one. A connection not ready now (connecting,
 * reconnecting) is given the session it enters when it becomes ready, where commands queued
 * meanwhile run. The first call for a connection starts counting (a `ready` listener); never
 * throws.
 */
export function connectionSession(connection: RedisConnection): number {
  let counter = readyCounts.get(connection);
  if (!counter) {
    const created = { count: 0 };
    connection.on('ready', () => (created.count += 1));
    readyCounts.set(connection, created);
    counter = created;
  }
  return connection.status === 'ready' ? counter.count : counter.count + 1;
}

/**
 * Sends `WAIT replicas timeoutMs` on `connection` (the connection that made the writes to
 * confirm: WAIT covers every earlier write of that connection) and resolves with the replicas
 * that confirmed, when at least `replicas` did and `connection` is still in `session`.
 * @param what Names the operation in the error, e.g. `append`.
 * @param session {@link connectionSession} of `connection` taken before the writes; when the
 *   connection reconnected since (before WAIT or while it waited), the writes are not confirmed.
 * @throws RedisUnavailableError (retryable) when fewer than `replicas` confirmed within
 *   `timeoutMs`, or the connection reconnected after `session`: the writes may be on a primary
 *   that a failover loses. ConfigError for a Cluster connection
 *   ({@link checkReplicaConfirmation}). What the command itself throws (connection failures).
 */
export async function confirmReplicas(
  connection: RedisConnection,
  confirmation: ReplicaConfirmation,
  what: string,
  session: number,
): Promise<number> {
  checkReplicaConfirmation(connection, confirmation);
  const reconnected = () =>
    new RedisUnavailableError(
      `${what}: the connection to Redis was re-established between the write and its replica confirmation (MEMQ_WAIT_REPLICAS); a failover could lose the write, retry shortly`,
    );
  if (connectionSession(connection) !== session) throw reconnected();
  const confirmed = Number(
    await (connection as Exclude<RedisConnection, Cluster>).wait(
      confirmation.replicas,
      confirmation.timeoutMs,
    ),
  );
  if (connectionSession(connection) !== session) throw reconnected();
  if (confirmed < confirmation.replicas) {
    throw new RedisUnavailableError(
      `${what}: ${confirmed} of ${confirmation.replicas} replicas confirmed the write within ${confirmation.timeoutMs} ms (MEMQ_WAIT_REPLICAS); a failover could lose it, retry shortly`,
      { details: { replicas_confirmed: confirmed, replicas_required: confirmation.replicas } },
    );
  }
  return confirmed;
}
