/**
 * Classifies errors from Redis clients (ioredis, and BullMQ through it) as "Redis was unreachable
 * or not serving" versus "the request was wrong" (docs/architecture.md, "Errors"). Producers turn
 * the first kind into `RedisUnavailableError` (retry shortly), the HTTP surface into 503. Knows
 * nothing of queues: it reads only the error.
 */

/**
 * Socket and name-resolution error codes that mean the connection to Redis dropped or never came
 * up (Node's `net` and `dns` errors, carried as `error.code`): refused, reset, broken pipe, timed
 * out, host or network unreachable, and a host name that does not resolve (`ENOTFOUND`) or could
 * not be resolved right now (`EAI_AGAIN`).
 */
const CONNECTION_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * Redis error replies that mean the server is not serving right now, whatever the command:
 * `LOADING` (restarting, reading its AOF or RDB), `CLUSTERDOWN`, `TRYAGAIN` (resharding) and
 * `MASTERDOWN` (Redis documentation, "Redis errors" and the cluster specification). Matched at the
 * start of the message, where Redis puts the error prefix.
 */
const NOT_SERVING_REPLY = /^(LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN)\b/;

/**
 * ioredis's own messages for a connection it cannot use: the connection was closed
 * (`Connection is closed.`), it is not connected and its offline queue is off
 * (`Stream isn't writeable and enableOfflineQueue options is false`), or no sentinel answered
 * with a primary (`All sentinels are unreachable. Retrying from scratch after <n>ms.`, and
 * `... and retry is disabled.`; ioredis 6, src/connectors/SentinelConnector; no error code).
 */
const IOREDIS_NOT_CONNECTED =
  /^(Connection is closed\.|Stream isn't writeable|All sentinels are unreachable\b)/;

/**
 * True when `error` says Redis was unreachable or not serving, not that the request was wrong:
 * ioredis's closed-connection or not-writeable errors and its retry-limit error
 * (`MaxRetriesPerRequestError`, the connection was lost mid-command), its "All sentinels are
 * unreachable" error, a socket or name-resolution error code (`ECONNREFUSED`, `ECONNRESET`,
 * `EPIPE`, `ETIMEDOUT`, `EHOSTUNREACH`, `ENETUNREACH`, `ENOTFOUND`, `EAI_AGAIN`), or a Redis
 * reply of `LOADING`,
 * `CLUSTERDOWN`, `TRYAGAIN` or `MASTERDOWN`. False for anything that is not an `Error`.
 */
export function isConnectionFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    IOREDIS_NOT_CONNECTED.test(error.message) ||
    (code !== undefined && CONNECTION_ERROR_CODES.has(code)) ||
    NOT_SERVING_REPLY.test(error.message)
  );
}
