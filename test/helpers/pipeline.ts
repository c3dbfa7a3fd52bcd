import pino from 'pino';
import { loadEnvConfig } from '../../src/config/env.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import type { MemoryStore } from '../../src/store/memory-store.js';
import type { MemoryClient } from '../../queues/memory-client.js';
import type { MemoryQueues } from '../../queues/memory-queues.js';
import type { Workers } from '../../processors/workers.js';
import type { LockService } from '../../src/redis/lock-service.js';
import type { ReplayDeps } from '../../src/replay/replay.js';
import { createMetrics, type MemqMetrics } from '../../src/metrics/metrics.js';
import { resolveProviderApiKeys } from '../../src/providers/api-keys.js';
import { compose } from '../../src/runtime/compose.js';
import { afterEach, beforeEach } from 'vitest';
import { shippedMemories } from './memories.js';
import { createRedisNamespace, type RedisNamespace } from './redis-namespace.js';

/** Producer client + workers on a test namespace, as `memq start` wires them (src/runtime/compose.ts). */
export interface TestPipeline {
  readonly client: MemoryClient;
  readonly store: MemoryStore;
  readonly workers: Workers;
  /** The pipeline's one set of queues (the client's and the workers'). */
  readonly queues: MemoryQueues;
  /** The instance locks the workers take. */
  readonly locks: LockService;
  /** The instruments client and workers record to (one registry per pipeline). */
  readonly metrics: MemqMetrics;
  close(): Promise<void>;
}

/** Silent logger for tests (logs are asserted where they matter, not printed). */
export const quietLog = pino({ level: process.env.MEMQ_TEST_LOG_LEVEL ?? 'silent' });

/**
 * Composes client and workers on `ns` for `registry`, project `project`, through the composition
 * root (append concurrency 8, token-count concurrency 2, no maintenance schedule, the rest of the
 * environment at its defaults). `env` is where provider API keys are read (default none);
 * `lockDurationMs` overrides `MEMQ_JOB_LOCK_MS` below its lower bound (short locks for stall tests).
 */
export async function startPipeline(
  ns: RedisNamespace,
  registry: MemoryRegistry,
  project = 'test',
  options: { lockDurationMs?: number; env?: NodeJS.ProcessEnv; log?: pino.Logger } = {},
): Promise<TestPipeline> {
  const providerKeys = resolveProviderApiKeys(registry, options.env ?? {});
  const env = {
    ...loadEnvConfig({
      MEMQ_KEY_PREFIX: ns.keyPrefix,
      MEMQ_QUEUE_PREFIX: ns.queuePrefix,
      MEMQ_PROJECT: project,
      MEMQ_APPEND_CONCURRENCY: '8',
      MEMQ_TOKEN_COUNT_CONCURRENCY: '2',
    }),
    ...(options.lockDurationMs !== undefined ? { jobLockMs: options.lockDurationMs } : {}),
  };
  const graph = await compose({
    env,
    redis: { producer: ns.connect({ producer: true }), worker: ns.connect() },
    registry,
    log: options.log ?? quietLog,
    workers: true,
    maintenanceSchedule: false,
    providerKeys,
    metrics: createMetrics(),
  });
  const workerGraph = graph.workerGraph!;
  return {
    client: graph.client,
    store: graph.store,
    workers: workerGraph.workers,
    queues: graph.queues,
    locks: workerGraph.locks,
    metrics: graph.metrics,
    async close() {
      for (const closable of graph.closables) await closable.close();
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
