import pino from 'pino';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/memory-store.js';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { startWorkers, type Workers } from '../../processors/workers.js';
import type { ReplayDeps } from '../../src/replay/replay.js';
import { createMetrics, type MemqMetrics } from '../../src/metrics/metrics.js';
import { afterEach, beforeEach } from 'vitest';
import { shippedMemories } from './memories.js';
import { createRedisNamespace, type RedisNamespace } from './redis-namespace.js';

/** Producer client + workers on a test namespace, as `memq start` wires them. */
export interface TestPipeline {
  readonly client: MemoryClient;
  readonly store: MemoryStore;
  readonly workers: Workers;
  /** The instruments client and workers record to (one registry per pipeline). */
  readonly metrics: MemqMetrics;
  close(): Promise<void>;
}

/** Silent logger for tests (logs are asserted where they matter, not printed). */
export const quietLog = pino({ level: process.env.MEMQ_TEST_LOG_LEVEL ?? 'silent' });

/** Starts client and workers on `ns` for `registry`, project `test`. */
export async function startPipeline(
  ns: RedisNamespace,
  registry: MemoryRegistry,
  project = 'test',
  options: { lockDurationMs?: number; env?: NodeJS.ProcessEnv; log?: pino.Logger } = {},
): Promise<TestPipeline> {
  const producer = ns.connect({ producer: true });
  const store = createMemoryStore({ redis: producer, keyPrefix: ns.keyPrefix });
  const metrics = createMetrics();
  const client = createMemoryClient({
    metrics,
    connection: producer,
    queuePrefix: ns.queuePrefix,
    registry,
    project,
    store,
  });
  const workers = startWorkers({
    connection: ns.connect(),
    queuePrefix: ns.queuePrefix,
    keyPrefix: ns.keyPrefix,
    concurrency: { append: 8, tokenCount: 2 },
    store: createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix }),
    registry,
    log: quietLog,
    metrics,
    ...options,
  });
  await workers.ready;
  return {
    client,
    store,
    workers,
    metrics,
    async close() {
      await workers.close();
      await client.close();
    },
  };
}

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes (then throws `what`). */
export async function eventually(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What {@link usePipelinePerTest} gives each test. */
export interface PipelineContext {
  readonly ns: RedisNamespace;
  readonly registry: MemoryRegistry;
  readonly pipeline: TestPipeline;
}

/**
 * Registers `beforeEach`/`afterEach` hooks giving every test of the calling `describe` its own
 * namespace, the shipped memories and a running pipeline, closed and cleaned after the test.
 * @returns A getter for the current test's context.
 */
export function usePipelinePerTest(): () => PipelineContext {
  let context: PipelineContext | undefined;
  beforeEach(async () => {
    const ns = createRedisNamespace();
    const registry = await shippedMemories();
    context = { ns, registry, pipeline: await startPipeline(ns, registry) };
  });
  afterEach(async () => {
    await context?.pipeline.close();
    await context?.ns.cleanup();
    context = undefined;
  });
  return () => {
    if (!context) throw new Error('usePipelinePerTest: only available inside a test');
    return context;
  };
}

/** What `runReplay` needs to replay through `pipeline` on `ns` (project `test`, quiet log). */
export function replayDepsFor(ns: RedisNamespace, pipeline: TestPipeline): ReplayDeps {
  return {
    client: pipeline.client,
    store: pipeline.store,
    connection: ns.connect({ producer: true }),
    queuePrefix: ns.queuePrefix,
    project: 'test',
    log: quietLog,
    metrics: pipeline.metrics,
  };
}
