import type { Express } from 'express';
import type { Logger } from 'pino';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { createMemoryQueues, type MemoryQueues } from '../../queues/memory-queues.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createHttpApp } from '../../src/http/app.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { BOARD, TEST_GRANTS } from '../helpers/http.js';
import { quietLog } from '../helpers/pipeline.js';
import type { RedisNamespace } from '../helpers/redis-namespace.js';

/** The HTTP app with no worker anywhere (as `memq serve` alone): nothing in Redis moves by itself. */
export interface BareHttp {
  readonly app: Express;
  readonly client: MemoryClient;
  /** Queues on the namespace (for counting jobs). */
  readonly queues: MemoryQueues;
  close(): Promise<void>;
}

/** Starts {@link BareHttp} on `ns`: the same limits as `test/helpers/http.ts` (64 KiB bodies, 8 KiB messages). */
export function startBareHttp(
  ns: RedisNamespace,
  registry: MemoryRegistry,
  options: { log?: Logger; readyTimeoutMs?: number; readyCacheMs?: number } = {},
): BareHttp {
  const connection = ns.connect({ producer: true });
  const client = createMemoryClient({
    connection,
    queuePrefix: ns.queuePrefix,
    registry,
    project: 'test',
    store: createMemoryStore({ redis: connection, keyPrefix: ns.keyPrefix }),
  });
  const queues = createMemoryQueues(connection, ns.queuePrefix);
  const app = createHttpApp({
    client,
    queues,
    registry,
    redis: connection,
    metrics: createMetrics(),
    log: options.log ?? quietLog,
    apiKeys: TEST_GRANTS,
    board: { ...BOARD, readOnly: false },
    maxBodyBytes: 64 * 1024,
    maxMessageBytes: 8 * 1024,
    ...(options.readyTimeoutMs !== undefined ? { readyTimeoutMs: options.readyTimeoutMs } : {}),
    ...(options.readyCacheMs !== undefined ? { readyCacheMs: options.readyCacheMs } : {}),
  });
  return {
    app,
    client,
    queues,
    async close() {
      await queues.close();
      await client.close();
    },
  };
}
