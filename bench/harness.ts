/**
 * What every benchmark needs: a private redis-server on a free loopback port (AOF everysec, as
 * `npm start` would), a producer client and memq's workers on it, and a teardown that stops all
 * of it and removes the data directory.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { loadEnvConfig } from '../src/config/env.js';
import { freePort, resolveDefaultRedis } from '../src/runtime/embedded-redis.js';
import { createMetrics, type MemqMetrics } from '../src/metrics/metrics.js';
import { NO_PROVIDER_API_KEYS } from '../src/providers/api-keys.js';
import { composeWorkers, type WorkerEnv } from '../src/runtime/compose.js';
import { createMemoryStore } from '../src/store/memory-store.js';
import { createMemoryClient, type MemoryClient } from '../queues/memory-client.js';
import { createMemoryQueues } from '../queues/memory-queues.js';
import type { Workers } from '../processors/workers.js';

/** A private Redis for one benchmark run. */
export interface BenchRedis {
  /** Its URL. */
  readonly url: string;
  /** A new connection (producer: fail fast; else worker: retry forever), closed by `stop`. */
  connect(producer?: boolean): Redis;
  /** Closes every connection, stops the server, removes its data directory. */
  stop(): Promise<void>;
}

/** Starts a private redis-server (named `memq-bench-<name>-*` on disk). */
export async function startBenchRedis(name: string): Promise<BenchRedis> {
  const dataDir = mkdtempSync(join(tmpdir(), `memq-bench-${name}-`));
  const { url, embedded } = await resolveDefaultRedis(() => {}, {
    dataDir,
    defaultPort: await freePort(),
  });
  const connections: Redis[] = [];
  return {
    url,
    connect(producer = false) {
      const c = new Redis(url, { protocol: 2, maxRetriesPerRequest: producer ? 1 : null });
      connections.push(c);
      return c;
    },
    async stop() {
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
      await embedded?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A producer client and workers on `redis`, as `memq start` wires them. */
export interface BenchPipeline {
  readonly client: MemoryClient;
  readonly workers: Workers;
  /** The instruments client and workers record to. */
  readonly metrics: MemqMetrics;
  /** Closes the workers and what they hold (counters, locks); the client stays usable. Idempotent. */
  readonly stopWorkers: () => Promise<void>;
  /** Closes the workers, then the client and the queues. */
  readonly close: () => Promise<void>;
}

/**
 * Starts a client (project `bench`, no backpressure) and workers on one set of queues, through
 * the composition root's worker graph (src/runtime/compose.ts), under BullMQ prefix `{prefix}`
 * and key prefix `prefix:`: append concurrency 16, the rest of {@link WorkerEnv} at memq's
 * defaults unless `extra` says otherwise (e.g. `tokenCacheBytes`, `tokenCountDelayMs`). Resolves
 * once the workers are ready (tokenizers loaded).
 */
export async function startBenchPipeline(
  redis: BenchRedis,
  prefix: string,
  registry: MemoryRegistry,
  extra: Partial<WorkerEnv & { tokenCountDelayMs: number }> = {},
): Promise<BenchPipeline> {
  const producer = redis.connect(true);
  const workerConnection = redis.connect();
  const env = {
    ...loadEnvConfig({ MEMQ_KEY_PREFIX: `${prefix}:`, MEMQ_QUEUE_PREFIX: `{${prefix}}` }),
    appendConcurrency: 16,
    ...extra,
  };
  const metrics = createMetrics();
  const queues = createMemoryQueues(
    producer,
    env.queuePrefix,
    extra.tokenCountDelayMs !== undefined ? { tokenCountDelayMs: extra.tokenCountDelayMs } : {},
  );
  const client = createMemoryClient({
    connection: producer,
    queuePrefix: env.queuePrefix,
    queues,
    registry,
    project: 'bench',
    store: createMemoryStore({ redis: producer, keyPrefix: env.keyPrefix }),
    metrics,
  });
  const graph = await composeWorkers({
    connection: workerConnection,
    queues,
    store: createMemoryStore({ redis: workerConnection, keyPrefix: env.keyPrefix }),
    registry,
    env,
    providerKeys: NO_PROVIDER_API_KEYS,
    metrics,
    log: pino({ level: 'silent' }),
  });
  return {
    client,
    workers: graph.workers,
    metrics,
    stopWorkers: () => graph.close(),
    close: async () => {
      await graph.close();
      await client.close();
      await queues.close();
    },
  };
}

/** Resident set size of process `pid`, bytes (`VmRSS` in /proc/<pid>/status; Linux). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/**
 * Resolves once `queue` has no job waiting, active, delayed or prioritized (polled every 10 ms;
 * completed jobs are trimmed by retention, so what is left is what counts).
 * @throws Error when jobs are still left after `timeoutMs` (default 300 000).
 */
export async function untilDrained(queue: Queue, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    if (Object.values(left).every((n) => n === 0)) return;
    if (Date.now() > deadline)
      throw new Error(`${queue.name}: jobs still pending after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
