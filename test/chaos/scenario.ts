/**
 * What the chaos scenarios share (test/chaos/*.test.ts): the shipped customer-support resource
 * with a short flush lock, the environment of `memq work` processes, and a scenario -- its worker
 * processes and an in-process producer (MemoryClient + replay of real e-mail threads), as a
 * service would run one -- on a Redis the test owns (one server, or a primary Sentinel names).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, expect } from 'vitest';
import { QUEUES } from '../../queues/names.js';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { loadMemoryResources, type MemoryRegistry } from '../../src/config/load-memories.js';
import { closeRedis, createRedis, type SentinelTarget } from '../../src/redis/connection.js';
import type { ReplicaConfirmation } from '../../src/redis/replicas.js';
import { runAudit, type AuditReport } from '../../src/replay/replay-audit.js';
import { runReplay, type ReplayReport } from '../../src/replay/replay.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { startMemqProcess, type MemqProcess } from '../helpers/cli.js';
import { quietLog } from '../helpers/pipeline.js';

/** Key prefix of every chaos scenario (each has its own Redis). */
export const KEY_PREFIX = 'memqx:';
/** BullMQ prefix of every chaos scenario. */
export const QUEUE_PREFIX = '{memqx}';
/** The project the replays append for. */
export const PROJECT = 'chaos';
/** The resource the replays append to. */
export const MEMORY = 'customer-support';
/** The longest a producer call may take: the client's Redis deadline (5 s) plus scheduling slack. */
export const PRODUCER_CALL_BOUND_MS = 6_500;

/**
 * The shipped customer-support resource with `flush_ttl: 20s` instead of 5m: a worker killed
 * while it holds an instance lock blocks that memory's flushes until the lock's TTL passes (the
 * next flush waits, spending no attempt), and 5 minutes would outlast the replay's wait.
 * Removed after the importing test file's tests.
 */
export const memoriesDir = mkdtempSync(join(tmpdir(), 'memq-chaos-memories-'));
writeFileSync(
  join(memoriesDir, 'customer-support.yaml'),
  readFileSync('memories/customer-support.yaml', 'utf8').replace(/flush_ttl: 5m/, 'flush_ttl: 20s'),
);
afterAll(() => rmSync(memoriesDir, { recursive: true, force: true }));

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** A uniformly random number in [low, high). */
export const between = (low: number, high: number) => low + Math.random() * (high - low);

/**
 * Where a scenario's Redis is: a URL (one server), or with `sentinel` the primary the sentinels
 * name (the URL then only carries credentials: none in tests).
 */
export interface ChaosRedis {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Sentinel nodes and master group name, for a Sentinel deployment. */
  readonly sentinel?: SentinelTarget;
}

/** Environment of the scenario's `memq work` / `memq serve` processes on `redis`, plus `extra`. */
export function workerEnv(redis: ChaosRedis, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_URL: redis.url,
    ...(redis.sentinel
      ? {
          REDIS_SENTINELS: redis.sentinel.nodes.join(','),
          REDIS_SENTINEL_NAME: redis.sentinel.name,
        }
      : {}),
    MEMQ_KEY_PREFIX: KEY_PREFIX,
    MEMQ_QUEUE_PREFIX: QUEUE_PREFIX,
    MEMQ_LOG_LEVEL: 'error',
    // A killed worker's jobs return to waiting within about 2 x 5 s instead of 2 x 30 s.
    MEMQ_JOB_LOCK_MS: '5000',
    MEMQ_SHUTDOWN_GRACE_MS: '5000',
    MEMQ_APPEND_CONCURRENCY: '8',
    // The sweep re-enqueues the token count of a memory left uncounted (a token-count job lost to
    // a SIGKILL): every 20 s here, well inside the replay's 90 s without counting progress.
    MEMQ_MAINTENANCE_INTERVAL_MS: '20000',
    MEMQ_MEMORIES_DIR: memoriesDir,
    ...extra,
  };
}

/** One scenario's worker processes and in-process producer. */
export interface ReplayScenario {
  readonly registry: MemoryRegistry;
  readonly client: MemoryClient;
  readonly workers: MemqProcess[];
  /**
   * Replays `limit` messages at `rate` per second (producer retries Redis-unavailable errors).
   * `started` resolves once the corpus is parsed and the first message is handed to the client:
   * faults are injected from then on (parsing takes 3-20 s, depending on the machine's day).
   * `countVanishedJobsAsLost`: see `ReplayOptions` (for failovers, which may lose jobs).
   */
  replay(
    limit: number,
    rate: number,
    options?: { countVanishedJobsAsLost?: boolean },
  ): { started: Promise<void>; done: Promise<ReplayReport> };
  /** The independent audit of the same slice. */
  audit(limit: number): Promise<AuditReport>;
  /** Failed (dead-letter) jobs of every memq queue. */
  failedJobs(): Promise<number>;
  /** Kills the workers, closes the producer (not the Redis). */
  close(): Promise<void>;
}

/** Options of {@link startReplayScenario}. */
export interface ReplayScenarioOptions {
  /** `memq work` processes to start. */
  readonly workers: number;
  /** Extra environment of the workers (e.g. `MEMQ_WAIT_REPLICAS`). Default none. */
  readonly workerEnv?: NodeJS.ProcessEnv;
  /** The producer's replica confirmation (`MEMQ_WAIT_REPLICAS`); default off. */
  readonly waitReplicas?: ReplicaConfirmation;
}

/**
 * Starts `options.workers` `memq work` processes on `redis` and an in-process producer
 * (MemoryClient, backpressure reject at 2,000 / 1,000 messages) through a producer connection
 * to it.
 */
export async function startReplayScenario(
  redis: ChaosRedis,
  options: ReplayScenarioOptions,
): Promise<ReplayScenario> {
  const registry = await loadMemoryResources(memoriesDir, process.env);
  const producer = createRedis({
    url: redis.url,
    ...(redis.sentinel ? { sentinel: redis.sentinel } : {}),
    role: 'producer',
  });
  producer.on('error', () => undefined); // outages are the point; the client reports them
  const store = createMemoryStore({ redis: producer, keyPrefix: KEY_PREFIX });
  const client = createMemoryClient({
    connection: producer,
    queuePrefix: QUEUE_PREFIX,
    registry,
    project: PROJECT,
    store,
    backpressure: { highWaterMessages: 2_000, lowWaterMessages: 1_000, policy: 'reject' },
    ...(options.waitReplicas ? { waitReplicas: options.waitReplicas } : {}),
  });
  const workers = await Promise.all(
    Array.from({ length: options.workers }, () =>
      startMemqProcess('work', workerEnv(redis, options.workerEnv)),
    ),
  );
  return {
    registry,
    client,
    workers,
    replay: (limit, rate, replayOptions = {}) => {
      let onStarted = () => {};
      const started = new Promise<void>((resolve) => (onStarted = resolve));
      const done = runReplay(
        {
          client,
          store,
          connection: producer,
          queuePrefix: QUEUE_PREFIX,
          project: PROJECT,
          log: quietLog,
        },
        {
          memory: MEMORY,
          limit,
          ratePerSecond: rate,
          retryUnavailableMs: 250,
          stallTimeoutMs: 90_000,
          ...replayOptions,
          onProgress: (progress) => {
            if (progress.enqueued > 0) onStarted();
          },
        },
      );
      // A replay that fails before its first append must not leave the chaos loop waiting.
      void done.finally(onStarted).catch(() => undefined);
      return { started, done };
    },
    audit: (limit) =>
      runAudit(
        { redis: producer, keyPrefix: KEY_PREFIX, queuePrefix: QUEUE_PREFIX, registry, env: {} },
        { memory: MEMORY, project: PROJECT, limit },
      ),
    async failedJobs() {
      let failed = 0;
      for (const name of Object.values(QUEUES)) {
        const queue = new Queue(name, { connection: producer, prefix: QUEUE_PREFIX });
        const jobs = await queue.getFailed(0, -1);
        failed += jobs.length;
        // A failure says which job failed and why (reasons carry ids, never content).
        for (const job of jobs) {
          console.info(`failed ${name} ${job.name} ${job.id}: ${job.failedReason}`);
        }
        await queue.close();
      }
      return failed;
    },
    async close() {
      await Promise.all(workers.filter((w) => w.alive()).map((w) => w.kill()));
      await client.close();
      await closeRedis(producer);
    },
  };
}

/**
 * Every message the producer was told was accepted is stored as the audit expects. Prints the
 * scenario's figures (docs/reliability.md quotes them).
 */
export function expectNothingLost(
  scenario: string,
  report: ReplayReport,
  audit: AuditReport,
  limit: number,
): void {
  console.info(
    `chaos ${scenario}: ${report.messagesEnqueued} messages in ${report.elapsedSeconds.toFixed(1)} s, ` +
      `${report.unavailableRetries} Redis-unavailable retries, longest append call ${report.appendCallMaxMs} ms, ` +
      `p99 enqueue->committed ${report.latencyMs.p99} ms (per append), ` +
      `${report.failedJobs} failed jobs (${report.failedAppends} appends not committed), ` +
      `audit ${audit.messages} messages / ${audit.violations.length} violations`,
  );
  expect(report.enqueueErrors).toBe(0); // every message was eventually accepted
  expect(report.failedJobs).toBe(0);
  expect(report.failedAppends).toBe(0); // appends sharing a job are accounted one by one
  expect(report.lostAppends).toBe(0);
  // Each append answered once, per append even when appends share a job (an append retried
  // after Redis was unavailable may find its first attempt stored: a duplicate).
  expect(report.messagesAccepted + report.duplicates).toBe(limit);
  expect(report.messagesStored + report.messagesFolded).toBe(limit);
  expect(audit.messages).toBe(limit);
  expect(audit.violations).toEqual([]);
  expect(report.appendCallMaxMs).toBeLessThan(PRODUCER_CALL_BOUND_MS); // an error, never a hang
}
