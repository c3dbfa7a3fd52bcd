import { Worker } from 'bullmq';
import type { RedisConnection } from '../src/redis/connection.js';
import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import type { ProviderBreakerOptions } from '../src/tokens/remote-providers.js';
import { createLockService, type LockService } from '../src/redis/lock-service.js';
import { createMetrics, type MemqMetrics } from '../src/metrics/metrics.js';
import { createMaintenanceStore } from '../src/store/maintenance-store.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import { createMemoryQueues, type MemoryQueues } from '../queues/memory-queues.js';
import { QUEUES } from '../queues/names.js';
import type { MemoryRef } from '../src/redis/keys.js';
import { createAppendProcessor } from './append.js';
import { createCleanupProcessor, queueJobKeys } from './cleanup.js';
import { createFlushProcessor } from './flush.js';
import { createMaintenanceProcessor } from './maintenance.js';
import { createTokenCountProcessor } from './token-count.js';
import { createTokenCounters } from '../src/tokens/resource-counters.js';
import { RULE_BASED_SUMMARIZER } from '../src/flush/summary.js';
import { isRemoteTokenProvider } from '../src/tokens/counter.js';
import { createLlmSummarizer } from '../src/providers/llm-summarizer.js';
import { providerApiKey } from '../src/tokens/remote-providers.js';

/** Jobs run at once per queue in one process. */
export interface WorkerConcurrency {
  /** `memory-append` (default 16 via MEMQ_APPEND_CONCURRENCY). */
  readonly append: number;
  /** `memory-token-count` (default 4 via MEMQ_TOKEN_COUNT_CONCURRENCY). */
  readonly tokenCount: number;
  /** `memory-flush`; default 2. */
  readonly flush?: number;
  /** `memory-cleanup`; default 4. */
  readonly cleanup?: number;
}

/** Options of {@link startWorkers}. */
export interface WorkersOptions {
  /** Worker connection (`maxRetriesPerRequest: null`); owned by the caller. */
  readonly connection: RedisConnection;
  /** BullMQ prefix, e.g. `{memq}`. */
  readonly queuePrefix: string;
  /** Memory key prefix (for the instance locks), e.g. `memq:`. */
  readonly keyPrefix: string;
  /** Jobs run at once per queue in this process. */
  readonly concurrency: WorkerConcurrency;
  /** Store the processors commit to (on a worker connection). */
  readonly store: MemoryStore;
  /** Declared resources. */
  readonly registry: MemoryRegistry;
  /** Base logger (job ids and memory ids only, never message content). */
  readonly log: Logger;
  /**
   * How long accepted message ids are remembered for duplicate detection, ms: the maintenance
   * sweep prunes older ones. Default 86 400 000 (24 h).
   */
  readonly idempotencyWindowMs?: number;
  /**
   * BullMQ job lock duration, ms (also the stalled-job check interval): a job whose worker stops
   * renewing its lock for this long is taken back and retried. Default 30 000 (BullMQ's).
   */
  readonly lockDurationMs?: number;
  /**
   * Delay of the token-count jobs these workers enqueue, ms (a burst of appends to one memory is
   * counted by one job). Default `DEFAULT_TOKEN_COUNT_DELAY_MS` (250).
   */
  readonly tokenCountDelayMs?: number;
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
   * all worker processes (BullMQ keeps the limit in Redis). Default 5 (each makes at most one
   * summary call).
   */
  readonly summarizerJobsPerSecond?: number;
  /** Breaker settings of the provider APIs (defaults in `ProviderBreakerOptions`). */
  readonly providerBreaker?: ProviderBreakerOptions;
  /** Where provider API keys are read (`token_provider.api_key_env`); default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Bound of the token-count cache, bytes; default `DEFAULT_TOKEN_CACHE_BYTES` (16 MiB). */
  readonly tokenCacheBytes?: number;
  /** Instruments the processors and locks record to; default a fresh set on its own registry. */
  readonly metrics?: MemqMetrics;
}

/**
 * How many times a job may be taken back from a dead worker (its lock expired) before BullMQ
 * fails it as "stalled more than allowable limit". BullMQ's default is 1; memq's jobs are
 * idempotent (appends by message id, counts and flushes by fenced commits), so a job caught in
 * two worker crashes in a row is safe to run again; 5 matches the retry budget (attempts 5) and
 * still stops a job that kills every worker that takes it (docs/decisions.md, "Scale-out and
 * faults").
 */
export const MAX_STALLED_COUNT = 5;

/**
 * The `scrubJobs` of the cleanup processor: `MaintenanceStore.scrubJobs` over the two queues
 * whose jobs carry messages, `memory-append` (append) and `memory-cleanup` (write).
 * @param connection Connection the scrub runs on (any role).
 * @param keyPrefix Memory key prefix, e.g. `memq:`.
 * @param queues The queues (their prefix and names give the job keys).
 */
export function jobScrubber(
  connection: RedisConnection,
  keyPrefix: string,
  queues: Pick<MemoryQueues, 'append' | 'cleanup'>,
): (ref: MemoryRef, erasedAtMs: number) => Promise<number> {
  const maintenance = createMaintenanceStore({ redis: connection, keyPrefix });
  const keys = [queueJobKeys(queues.append), queueJobKeys(queues.cleanup)];
  return (ref, erasedAtMs) => maintenance.scrubJobs(ref, erasedAtMs, keys);
}

/** Running workers. */
export interface Workers {
  /** The BullMQ workers, one per queue. */
  readonly workers: readonly Worker[];
  /** The instance locks the flush and cleanup processors take. */
  readonly locks: LockService;
  /** The queues the workers consume and enqueue follow-ups to. */
  readonly queues: MemoryQueues;
  /** The instruments in use ({@link WorkersOptions.metrics} or the default set). */
  readonly metrics: MemqMetrics;
  /**
   * Resolves once the tokenizer of every declared resource's model is loaded (about 1 s for
   * o200k), so the first jobs do not stall the event loop.
   */
  readonly ready: Promise<void>;
  /**
   * Stops taking jobs and waits for active ones to finish (so every lock they hold is released
   * in their `finally`). `force` does not wait (BullMQ moves abandoned jobs back to wait once
   * their locks expire); it only takes effect on the first call. Idempotent: later calls return
   * the first call's promise.
   */
  close(force?: boolean): Promise<void>;
}

/**
 * Wires the processors to BullMQ workers: the one module that knows both the processors and
 * their concrete dependencies.
 */
export function startWorkers(options: WorkersOptions): Workers {
  const { connection, queuePrefix, log, store, registry } = options;
  checkApiKeys(registry, options.env ?? process.env); // before anything is started
  const queues = createMemoryQueues(connection, queuePrefix, {
    ...(options.tokenCountDelayMs !== undefined
      ? { tokenCountDelayMs: options.tokenCountDelayMs }
      : {}),
  });
  const metrics = options.metrics ?? createMetrics();
  const locks = createLockService({
    redis: connection,
    keyPrefix: options.keyPrefix,
    onEvent(event) {
      metrics.lockEvents.inc({ operation: event.operation, event: event.type });
      if (event.waitedMs !== undefined) {
        metrics.lockWait.observe({ operation: event.operation }, event.waitedMs / 1000);
      }
    },
  });
  const counters = createTokenCounters({
    registry,
    metrics,
    log,
    ...(options.tokenCacheBytes !== undefined ? { cacheBytes: options.tokenCacheBytes } : {}),
    ...(options.env !== undefined ? { env: options.env } : {}),
    ...(options.providerBreaker !== undefined ? { breaker: options.providerBreaker } : {}),
  });
  const summarizers = createSummarizers(registry, metrics, log, options.env ?? process.env);
  const enqueueTokenCount = queues.enqueueTokenCount.bind(queues);
  metrics.setQueueDepthSource(() => queues.depths());

  const lockDuration = options.lockDurationMs ?? 30_000;
  const common = {
    connection,
    prefix: queuePrefix,
    lockDuration,
    stalledInterval: lockDuration,
    maxStalledCount: MAX_STALLED_COUNT,
  };
  const workers = [
    new Worker(
      QUEUES.append,
      createAppendProcessor({ store, registry, enqueueTokenCount, log, metrics }),
      {
        ...common,
        concurrency: options.concurrency.append,
      },
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
        concurrency: options.concurrency.tokenCount,
        ...(counters.usesProviders
          ? { limiter: { max: options.providerJobsPerSecond ?? 10, duration: 1000 } }
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
        summarizerFor: (resource) => summarizers.get(resource.id) ?? RULE_BASED_SUMMARIZER,
      }),
      {
        ...common,
        concurrency: options.concurrency.flush ?? 2,
        // Paid summary calls: bound the flushes that can make them (per queue, all processes).
        ...(summarizers.size > 0
          ? { limiter: { max: options.summarizerJobsPerSecond ?? 5, duration: 1000 } }
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
        scrubJobs: jobScrubber(connection, options.keyPrefix, queues),
        log,
        metrics,
        maintenance: createMaintenanceProcessor({
          maintenance: createMaintenanceStore({ redis: connection, keyPrefix: options.keyPrefix }),
          store,
          registry,
          queues,
          idempotencyWindowMs: options.idempotencyWindowMs ?? 86_400_000,
          log,
          metrics,
        }),
      }),
      { ...common, concurrency: options.concurrency.cleanup ?? 4 },
    ),
  ];
  for (const worker of workers) {
    worker.on('error', (err) =>
      log.error(
        { queue: worker.name, err: { name: err.name, message: err.message } },
        'worker error',
      ),
    );
  }

  const ready = counters.ready;

  let closing: Promise<void> | undefined;
  return {
    workers,
    locks,
    queues,
    metrics,
    ready,
    close(force = false) {
      closing ??= (async () => {
        await Promise.allSettled(workers.map((w) => w.close(force)));
        await counters.close();
        for (const summarizer of summarizers.values()) summarizer.close();
        await locks.close();
        await queues.close();
      })();
      return closing;
    },
  };
}

/**
 * Every API key the declared resources need (token providers, LLM summarizers) is set.
 * @throws ConfigError naming the resource, the field and the variable (never a value).
 */
function checkApiKeys(registry: MemoryRegistry, env: NodeJS.ProcessEnv): void {
  for (const resource of registry.list()) {
    const { provider, apiKeyEnv } = resource.tokenProvider;
    if (isRemoteTokenProvider(provider)) providerApiKey(resource.id, provider, apiKeyEnv, env);
    const summarizer = resource.flushing.summarizer;
    if (summarizer?.apiKeyEnv !== undefined) {
      providerApiKey(
        resource.id,
        'summarizer',
        summarizer.apiKeyEnv,
        env,
        'flushing.summarizer.api_key_env',
      );
    }
  }
}

/**
 * One LLM summarizer (with its breaker) per resource that configures `flushing.summarizer`.
 * @throws ConfigError when a summarizer names an `api_key_env` that is unset.
 */
function createSummarizers(
  registry: MemoryRegistry,
  metrics: MemqMetrics,
  log: Logger,
  env: NodeJS.ProcessEnv,
): Map<string, ReturnType<typeof createLlmSummarizer>> {
  const summarizers = new Map<string, ReturnType<typeof createLlmSummarizer>>();
  for (const resource of registry.list()) {
    const config = resource.flushing.summarizer;
    if (!config) continue;
    const apiKey =
      config.apiKeyEnv === undefined
        ? undefined
        : providerApiKey(
            resource.id,
            'summarizer',
            config.apiKeyEnv,
            env,
            'flushing.summarizer.api_key_env',
          );
    summarizers.set(
      resource.id,
      createLlmSummarizer({
        endpoint: config.endpoint,
        model: config.model,
        ...(apiKey !== undefined ? { apiKey } : {}),
        timeoutMs: config.timeoutMs,
        metrics,
        log,
      }),
    );
  }
  return summarizers;
}
