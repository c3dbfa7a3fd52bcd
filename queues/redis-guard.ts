import { RedisUnavailableError } from '../src/core/errors.js';
import type { RedisConnection } from '../src/redis/connection.js';
import { isConnectionFailure } from '../src/redis/connection-failures.js';

/**
 * Runs one BullMQ operation (`op`) for the producer with a deadline; `what` names it in errors,
 * e.g. `append`, `waitFor`.
 * @throws RedisUnavailableError at once while the connection is known to be down (`reconnecting`,
 *   `close`, `end`); after the guard's timeout; or when `op` fails with a connection failure
 *   (`isConnectionFailure`). Any other error of `op` is rethrown as is.
 */
export type RedisGuard = <T>(what: string, op: () => Promise<T>) => Promise<T>;

/** Default bound of one guarded operation, ms (`MemoryClientDeps.redisTimeoutMs`). */
export const DEFAULT_REDIS_TIMEOUT_MS = 5_000;

/**
 * A {@link RedisGuard} on `connection`. BullMQ waits for a lost connection indefinitely; a
 * producer on a request path must not (docs/architecture.md, "Producer path").
 * @param timeoutMs Longest a guarded operation may wait for Redis, ms; default
 *   {@link DEFAULT_REDIS_TIMEOUT_MS}.
 */
export function createRedisGuard(
  connection: RedisConnection,
  timeoutMs = DEFAULT_REDIS_TIMEOUT_MS,
): RedisGuard {
  return async <T>(what: string, op: () => Promise<T>): Promise<T> => {
    const status = connection.status;
    if (status === 'reconnecting' || status === 'close' || status === 'end') {
      throw new RedisUnavailableError(
        `${what}: Redis is not reachable (connection ${status}); nothing was changed, retry shortly`,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new RedisUnavailableError(
              `${what}: RedisConnection did not answer within ${timeoutMs} ms; retry shortly (the operation may or may not have happened)`,
            ),
          ),
        timeoutMs,
      );
      timer.unref();
    });
    try {
      return await Promise.race([op(), deadline]);
    } catch (error) {
      if (isConnectionFailure(error)) {
        throw new RedisUnavailableError(
          `${what}: Redis failed mid-operation (${(error as Error).message.slice(0, 80)}); retry shortly (the operation may or may not have happened)`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  };
}
