import type { Express } from 'express';
import type { RedisConnection } from '../../src/redis/connection.js';
import { createMemoryClient } from '../../queues/memory-client.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import type { ApiKeyGrant } from '../../src/config/env.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createHttpApp, type HttpAppOptions } from '../../src/http/app.js';
import { quietLog, startPipeline, type TestPipeline } from './pipeline.js';
import type { RedisNamespace } from './redis-namespace.js';

/** API keys of the HTTP tests: two projects, and a read-only key of the first. */
export const KEYS = {
  acme: 'test-key-acme-0123456789',
  beta: 'test-key-beta-0123456789',
  acmeRead: 'test-key-acme-readonly-01',
} as const;

/** The grants of {@link KEYS}. */
export const TEST_GRANTS: ReadonlyMap<string, ApiKeyGrant> = new Map([
  [KEYS.acme, { project: 'acme', readOnly: false }],
  [KEYS.beta, { project: 'beta', readOnly: false }],
  [KEYS.acmeRead, { project: 'acme', readOnly: true }],
]);

/** Bull Board credentials of the HTTP tests. */
export const BOARD = { user: 'admin', password: 'board-test-password' } as const;

/** A pipeline and the HTTP app over it, as `memq start` wires them. */
export interface TestHttp {
  readonly app: Express;
  readonly pipeline: TestPipeline;
  close(): Promise<void>;
}

/** Starts a pipeline on `ns` and the HTTP app over its client, queues and metrics. */
export async function startHttp(
  ns: RedisNamespace,
  registry: MemoryRegistry,
  overrides: Partial<HttpAppOptions> = {},
): Promise<TestHttp> {
  const pipeline = await startPipeline(ns, registry);
  const app = createHttpApp({
    client: pipeline.client,
    queues: pipeline.workers.queues,
    registry,
    redis: ns.connect({ producer: true }),
    metrics: pipeline.metrics,
    log: quietLog,
    apiKeys: TEST_GRANTS,
    board: { ...BOARD, readOnly: false },
    maxBodyBytes: 64 * 1024,
    maxMessageBytes: 8 * 1024,
    readyTimeoutMs: 2_000,
    ...overrides,
  });
  return { app, pipeline, close: () => pipeline.close() };
}

/**
 * A second app over `http`'s queues with its own producer client on `connection` (e.g. one with
 * backpressure, or a connection to a dead Redis), read-only board, fresh metrics.
 */
export function appOver(
  http: TestHttp,
  ns: RedisNamespace,
  registry: MemoryRegistry,
  connection: RedisConnection,
  options: {
    backpressure?: Parameters<typeof createMemoryClient>[0]['backpressure'];
    readyTimeoutMs?: number;
    log?: HttpAppOptions['log'];
  } = {},
): { app: Express; close: () => Promise<void> } {
  const client = createMemoryClient({
    connection,
    queuePrefix: ns.queuePrefix,
    registry,
    project: 'acme',
    store: createMemoryStore({ redis: connection, keyPrefix: ns.keyPrefix }),
    ...(options.backpressure ? { backpressure: options.backpressure } : {}),
  });
  const app = createHttpApp({
    client,
    queues: http.pipeline.workers.queues,
    registry,
    redis: connection,
    metrics: createMetrics(),
    log: options.log ?? quietLog,
    apiKeys: TEST_GRANTS,
    board: { ...BOARD, readOnly: true },
    maxBodyBytes: 64 * 1024,
    maxMessageBytes: 8 * 1024,
    ...(options.readyTimeoutMs !== undefined ? { readyTimeoutMs: options.readyTimeoutMs } : {}),
  });
  return { app, close: () => client.close() };
}
