import { Redis, type RedisOptions } from 'ioredis';

/**
 * Connection roles (STYLE.md "Lifecycle"): workers block and must never give up a command
 * (`maxRetriesPerRequest: null`, required by BullMQ workers); producers on a request path fail
 * fast instead of queueing commands while Redis is down.
 */
export type ConnectionRole = 'worker' | 'producer';

/** Options for {@link createRedis}. */
export interface CreateRedisOptions {
  /** `redis://` or `rediss://` URL. */
  readonly url: string;
  /** See {@link ConnectionRole}. */
  readonly role: ConnectionRole;
  /** Connection name shown by `CLIENT LIST`; default `memq-<role>`. */
  readonly connectionName?: string;
}

/**
 * Creates an ioredis client for `role`. RESP2 replies (`protocol: 2`) keep reply shapes stable
 * across ioredis 6's RESP3 default (ecosystem.md section 9). The caller owns `quit()`.
 */
export function createRedis(options: CreateRedisOptions): Redis {
  const common: RedisOptions = {
    connectionName: options.connectionName ?? `memq-${options.role}`,
    protocol: 2,
    lazyConnect: false,
  };
  const roleOptions: RedisOptions =
    options.role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: true, connectTimeout: 5000 };
  return new Redis(options.url, { ...common, ...roleOptions });
}

/** Closes `client` gracefully (QUIT), falling back to a hard disconnect. Idempotent. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}
