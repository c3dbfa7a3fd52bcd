/**
 * The processors as BullMQ workers: one `Worker` per queue with its concurrency, limiter, lock
 * and stall settings, error events and close. Every dependency comes in ready-made from the
 * composition root (src/runtime/compose.ts), which also closes them (docs/architecture.md,
 * "Lifecycle").
 */
import { Worker, type Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import type { MemoryResource } from '../src/core/memory-resource.js';
import type { Summarizer } from '../src/flush/summary.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import type { RedisConnection } from '../src/redis/connection.js';
import { isConnectionFailure } from '../src/redis/connection-failures.js';
import {
  checkReplicaConfirmation,
  confirmReplicas,
  connectionSession,
  type ReplicaConfirmation,
} from '../src/redis/replicas.js';
import type { LockService } from '../src/redis/lock-service.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { MaintenanceStore } from '../src/store/maintenance-store.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import type { TokenCounters } from '../src/tokens/resource-counters.js';
import type { MemoryQueues } from '../queues/memory-queues.js';
import { QUEUES } from '../queues/names.js';
import { createAppendProcessor, type AppendProcessorDeps } from './append.js';
import { createCleanupProcessor } from './cleanup.js';
import { createFlushProcessor } from './flush.js';
import { createMaintenanceProcessor } from './maintenance.js';
import { createTokenCountProcessor } from './token-count.js';

/** Jobs run at once per queue in one process. */
export interface WorkerConcurrency {
  /** `memory-append` (`MEMQ_APPEND_CONCURRENCY`, default 16). */
  readonly append: number;
  /** `memory-token-count` (`MEMQ_TOKEN_COUNT_CONCURRENCY`, default 4). */
  readonly tokenCount: number;
  /** `memory-flush`; default 2. */
  readonly flush?: number;
  /** `memory-cleanup`; default 4. */
  readonly cleanup?: number;
}

/** What the workers run on, built and owned by the caller (src/runtime/compose.ts). */
export interface WorkerDeps {
  /**
   * Worker-role connection (`maxRetriesPerRequest: null`); BullMQ duplicates it for each
   * worker's blocking reads.
   */
  readonly connection: RedisConnection;
  /** BullMQ prefix, e.g. `{memq}`; the same as {@link queues}'. */
  readonly queuePrefix: string;
  /** The process's queues: follow-up enqueues (token counts, flushes) and `queue.clean`. */
  readonly queues: MemoryQueues;
  /** Store the processors commit to. */
  readonly store: MemoryStore;
  /** Index scans, reconcile, `seen` pruning of the maintenance sweep. */
  readonly maintenance: MaintenanceStore;
  /** Declared resources. */
  readonly registry: MemoryRegistry;
  /** The instance locks the flush and cleanup processors take. */
  readonly locks: LockService;
  /** Per-resource token counters (their readiness is the caller's to await). */
  readonly counters: Pick<TokenCounters, 'counterFor' | 'localCounterFor' | 'usesProviders'>;
  /** Per-resource summarizers of the flush processor. */
  readonly summarizers: {
    /** The summarizer of `resource` (LLM, or rule-based). */
    summarizerFor(resource: MemoryResource): Summarizer;
    /** True when some resource's flushes call an LLM. */
    readonly usesLlm: boolean;
  };
  /**
   * Rewrites the queued jobs of an erased instance (the cleanup processor's `scrubJobs`);
   * resolves with the number of job hashes rewritten.
   */
  readonly scrubJobs: (ref: MemoryRef, erasedAtMs: number) => Promise<number>;
  /** Instruments the processors record to. */
  readonly metrics: MemqMetrics;
  /** Base logger (job ids and memory ids only, never message content). */
  readonly log: Logger;
}

/** How the workers run (from `EnvConfig`, read by the composition root). */
export interface WorkerSettings {
  /** Jobs run at once per queue in this process. */
  readonly concurrency: WorkerConcurrency;
  /**
   * Replica confirmation (`MEMQ_WAIT_REPLICAS`): appends, writes, clears and deletes complete
   * only once `WAIT` on {@link WorkerDeps.connection} (where the store commits) confirms this many
   * replicas; too few fail the attempt with RedisUnavailableError (retried). Absent = off. Not
   * on a Redis Cluster connection.
   */
  readonly waitReplicas?: ReplicaConfirmation;
  /**
   * BullMQ job lock duration, ms (also the stalled-job check interval; `MEMQ_JOB_LOCK_MS`): a
   * job whose worker stops renewing its lock for this long is taken back and retried. Default
   * 30 000 (BullMQ's).
   */
  readonly lockDurationMs?: number;
  /**
   * How long accepted message ids are remembered for duplicate detection, ms
   * (`MEMQ_IDEMPOTENCY_WINDOW_MS`): the maintenance sweep prunes older ones. Default 86 400 000
   * (24 h).
   */
  readonly idempotencyWindowMs?: number;
  /**
   * BullMQ limiter of the token-count worker when some resource counts through a provider API
   * (Anthropic, Google): at most this many token-count jobs start per second on the queue, across
   * all worker processes (BullMQ keeps the limit in Redis). Default 10. Each job makes at most
   * 4 API calls at once.
   */
  readonly providerJobsPerSecond?: number;
  /**
   * BullMQ limiter of the flush worker when some resource has an LLM summarizer
   * (`flushing.summarizer`): at most this many flush jobs start per second on the queue, across
   * all worker processes. Default 5 (each makes at most one summary call).
   */
  readonly summarizerJobsPerSecond?: number;
}

/**
 * How many times a job may be taken back from a dead worker (its lock expired) before BullMQ
 * fails it as "stalled more than allowable limit". BullMQ's default is 1; memq's jobs are
 * idempotent (appends by message id, counts and flushes by fenced commits), so a job caught in
 * two worker crashes in a row is safe to run again; 5 matches the retry budget (attempts 5) and
 * still stops a job that kills every worker that takes it (docs/decisions.md, "Jobs and
 * pipeline").
 */
export const MAX_STALLED_COUNT = 5;

/** Running workers. */
export interface Workers {
  /** The BullMQ workers, one per queue (`append`, `token-count`, `flush`, `cleanup`). */
  readonly workers: readonly Worker[];
  /** The queues the workers were given ({@link WorkerDeps.queues}; not owned by them). */
  readonly queues: MemoryQueues;
  /**
   * Stops taking jobs and waits for active ones to finish (so every lock they hold is released
   * in their `finally`). `force` does not wait (BullMQ moves abandoned jobs back to wait once
   * their locks expire); it only takes effect on the first call. Closes the workers only, none
   * of {@link WorkerDeps}. Idempotent: later calls return the first call's promise.
   */
  close(force?: boolean): Promise<void>;
}

/**
 * The append processor's erasure dependencies: `scrubJob` is `MaintenanceStore.scrubJobKeys` on
 * the one job hash, `jobKey` the hash's key in `appendQueue` (`<prefix>:memory-append:<id>`).
 */
export function appendErasureDeps(
  maintenance: MaintenanceStore,
  appendQueue: Queue,
): Pick<AppendProcessorDeps, 'scrubJob' | 'jobKey'> {
  return {
    scrubJob: (ref, erasedAtMs, jobKey) => maintenance.scrubJobKeys(ref, erasedAtMs, [jobKey]),
    jobKey: (jobId) => appendQueue.toKey(jobId),
  };
}

/** Starts one BullMQ worker per queue over `deps`' processors. Nothing else is created. */
export function startWorkers(deps: WorkerDeps, settings: WorkerSettings): Workers {
  const { connection, queues, store, registry, locks, counters, log, metrics } = deps;
  const waitReplicas = settings.waitReplicas;
  checkReplicaConfirmation(connection, waitReplicas);
  const replicas = waitReplicas
    ? {
        startReplicaConfirmation: () => {
          const session = connectionSession(connection);
          return async (what: string) =>
            void (await confirmReplicas(connection, waitReplicas, what, session));
        },
      }
    : {};
  const enqueueTokenCount = (ref: MemoryRef) => queues.enqueueTokenCount(ref);
  const lockDuration = settings.lockDurationMs ?? 30_000;
  const common = {
    connection,
    prefix: deps.queuePrefix,
    lockDuration,
    stalledInterval: lockDuration,
    maxStalledCount: MAX_STALLED_COUNT,
  };
  const workers = [
    new Worker(
      QUEUES.append,
      createAppendProcessor({
        store,
        registry,
        enqueueTokenCount,
        ...appendErasureDeps(deps.maintenance, queues.append),
        ...replicas,
        log,
        metrics,
      }),
      { ...common, concurrency: settings.concurrency.append },
    ),
    new Worker(
      QUEUES.tokenCount,
      createTokenCountProcessor({
        store,
        registry,
        counterFor: (resource) => counters.counterFor(resource),
        enqueueFlush: (ref) => queues.enqueueFlush(ref, { trigger: true }),
        log,
        metrics,
      }),
      {
        ...common,
        concurrency: settings.concurrency.tokenCount,
        // Paid or rate-limited counting calls: bound the jobs that can make them.
        ...(counters.usesProviders
          ? { limiter: { max: settings.providerJobsPerSecond ?? 10, duration: 1000 } }
          : {}),
      },
    ),
    new Worker(
      QUEUES.flush,
      createFlushProcessor({
        store,
        registry,
        locks,
        log,
        metrics,
        counterFor: (resource) => counters.localCounterFor(resource),
        summarizerFor: (resource) => deps.summarizers.summarizerFor(resource),
      }),
      {
        ...common,
        concurrency: settings.concurrency.flush ?? 2,
        // Paid summary calls: bound the flushes that can make them (per queue, all processes).
        ...(deps.summarizers.usesLlm
          ? { limiter: { max: settings.summarizerJobsPerSecond ?? 5, duration: 1000 } }
          : {}),
      },
    ),
    new Worker(
      QUEUES.cleanup,
      createCleanupProcessor({
        store,
        registry,
        locks,
        enqueueTokenCount,
        scrubJobs: deps.scrubJobs,
        ...replicas,
        log,
        metrics,
        maintenance: createMaintenanceProcessor({
          maintenance: deps.maintenance,
          store,
          registry,
          queues,
          idempotencyWindowMs: settings.idempotencyWindowMs ?? 86_400_000,
          log,
          metrics,
        }),
      }),
      { ...common, concurrency: settings.concurrency.cleanup ?? 4 },
    ),
  ];
  for (const worker of workers) {
    worker.on('error', (err) => {
      // Redis being away is reported once per outage by the connections themselves
      // (src/redis/redis-outage.ts), not once per worker, connection and reconnect attempt.
      if (isConnectionFailure(err)) return;
      log.error(
        { queue: worker.name, err: { name: err.name, message: err.message } },
        'worker error',
      );
    });
  }

  let closing: Promise<void> | undefined;
  return {
    workers,
    queues,
    close(force = false) {
      closing ??= Promise.allSettled(workers.map((w) => w.close(force))).then(() => undefined);
      return closing;
    },
  };
}
