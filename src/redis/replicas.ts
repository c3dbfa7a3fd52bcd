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
  /** Longest one `WAIT` blocks, ms, an integer 1-60000 (`MEMQ_WAIT_REPLICAS_TIMEOUT_MS`). */
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

/**
 * Sends `WAIT replicas timeoutMs` on `connection` (the connection that made the writes to
 * confirm: WAIT covers every earlier write of that connection) and resolves with the replicas
 * that confirmed, when at least `replicas` did.
 * @param what Names the operation in the error, e.g. `append`.
 * @throws RedisUnavailableError (retryable) when fewer than `replicas` confirmed within
 *   `timeoutMs`: the writes are on the primary but may be lost by a failover. ConfigError for a
 *   Cluster connection ({@link checkReplicaConfirmation}). What the command itself throws
 *   (connection failures).
 */
export async function confirmReplicas(
  connection: RedisConnection,
  confirmation: ReplicaConfirmation,
  what: string,
): Promise<number> {
  checkReplicaConfirmation(connection, confirmation);
  const confirmed = Number(
    await (connection as Exclude<RedisConnection, Cluster>).wait(
      confirmation.replicas,
      confirmation.timeoutMs,
    ),
  );
  if (confirmed < confirmation.replicas) {
    throw new RedisUnavailableError(
      `${what}: ${confirmed} of ${confirmation.replicas} replicas confirmed the write within ${confirmation.timeoutMs} ms (MEMQ_WAIT_REPLICAS); a failover could lose it, retry shortly`,
      { details: { replicas_confirmed: confirmed, replicas_required: confirmation.replicas } },
    );
  }
  return confirmed;
}
