import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type CounterConfiguration,
} from 'prom-client';

/** Prefix of every memq metric (docs/architecture.md, "Observability"); the process metrics have none. */
export const METRIC_PREFIX = 'memq_';

/**
 * How a job attempt ended, as the processor wrapper classifies it:
 * - `completed`: the handler returned;
 * - `invalid`: the payload failed its contract (unrecoverable, nothing touched);
 * - `failed`: a non-retryable error (unrecoverable: the job is a dead letter now);
 * - `retry`: a retryable error (BullMQ retries with backoff while attempts remain).
 */
export type JobOutcome = 'completed' | 'invalid' | 'failed' | 'retry';

/** Job-duration buckets, seconds: 1 ms to 30 s (a flush with an LLM summary is the long tail). */
export const JOB_DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];
/** Queue-wait buckets, seconds (enqueue -> start): 1 ms to 5 min (backlogs under load). */
export const JOB_WAIT_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
];

/**
 * Longest a scrape may wait for the queue depths (`memq_queue_jobs`), ms: 1 000, well inside
 * Prometheus's default 10 s scrape timeout. The {@link QueueDepthSource} enforces it (the
 * composition root wraps the queue read in a Redis guard of this bound); when the source rejects,
 * the scrape answers without that gauge and with `memq_redis_up 0`.
 */
export const QUEUE_DEPTH_DEADLINE_MS = 1000;

/**
 * Source of queue depths for the `memq_queue_jobs` gauge, read at scrape time. It must settle
 * within {@link QUEUE_DEPTH_DEADLINE_MS}; a rejection means Redis did not answer.
 */
export type QueueDepthSource = () => Promise<
  ReadonlyArray<{ queue: string; state: string; jobs: number }>
>;

/** Source of token-count cache statistics, read at scrape time (cumulative). */
export type TokenCacheSource = () => TokenCacheStats;

/** Token-count cache figures (see `TokenCache.stats`). */
export interface TokenCacheStats {
  /** Lookups answered from the cache since start. */
  readonly hits: number;
  /** Lookups that had to count since start. */
  readonly misses: number;
  /** Entries held now. */
  readonly entries: number;
  /** Approximate bytes held now (2 per key character + 48 per entry). */
  readonly bytes: number;
}

/**
 * memq's Prometheus instruments, all on one {@link Registry}. Labels never carry message
 * content or keys (memory keys can be high-cardinality): queue names, outcomes, resource ids,
 * providers and breaker names only.
 */
/**
 * Buckets of the group-commit histograms: 1 (an append alone) doubling to 1,024 (above
 * `MAX_MESSAGES_PER_APPEND_JOB`, so every job falls in a finite bucket).
 */
export const APPEND_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export interface MemqMetrics {
  /** The registry to expose on `/metrics`. */
  readonly registry: Registry;
  /** `memq_jobs_total{queue,outcome}`: job attempts by how they ended ({@link JobOutcome}). */
  readonly jobs: Counter<'queue' | 'outcome'>;
  /** `memq_job_duration_seconds{queue,outcome}`: processor run time per attempt. */
  readonly jobDuration: Histogram<'queue' | 'outcome'>;
  /** `memq_job_wait_seconds{queue}`: enqueue (plus any requested delay) -> start of the first attempt. */
  readonly jobWait: Histogram<'queue'>;
  /** `memq_messages_appended_total{resource}`: messages committed by append jobs. */
  readonly messagesAppended: Counter<'resource'>;
  /**
   * `memq_append_job_entries`: append calls per enqueued append job (group commit; buckets
   * {@link APPEND_BATCH_BUCKETS}), recorded by the producer.
   */
  readonly appendJobEntries: Histogram;
  /** `memq_append_job_messages`: messages per enqueued append job, recorded by the producer. */
  readonly appendJobMessages: Histogram;
  /** `memq_messages_duplicate_total{resource}`: message ids an append found already stored. */
  readonly messagesDuplicate: Counter<'resource'>;
  /** `memq_tokens_counted_total{resource,source}`: exact tokens committed; `source` = tiktoken or a provider. */
  readonly tokensCounted: Counter<'resource' | 'source'>;
  /**
   * `memq_counting_thread_busy_seconds_total`: wall time the counting thread spent counting,
   * seconds. Its rate is the thread's utilisation (1 = saturated: add worker processes).
   */
  readonly countingThreadBusy: Counter<never>;
  /** `memq_token_provider_fallbacks_total{provider,reason}`: provider calls answered by the local tokenizer instead. */
  readonly tokenProviderFallbacks: Counter<'provider' | 'reason'>;
  /** `memq_summarizer_fallbacks_total{reason}`: LLM summaries replaced by the rule-based one. */
  readonly summarizerFallbacks: Counter<'reason'>;
  /** `memq_summaries_total{source}`: summaries written, by summarizer (`llm`, `rule_based`). */
  readonly summaries: Counter<'source'>;
  /** `memq_breaker_state{breaker}`: 0 closed, 0.5 half-open, 1 open; `breaker` is `provider:model@host` or `summarizer:model@host`. */
  readonly breakerState: Gauge<'breaker'>;
  /** `memq_tokens_saved_total{resource,strategy}`: tokens removed from windows by flushes. */
  readonly tokensSaved: Counter<'resource' | 'strategy'>;
  /**
   * `memq_privacy_failures_total{resource}`: messages refused because the privacy policy could not
   * be applied (fail closed: nothing stored, the job fails without retries).
   */
  readonly privacyFailures: Counter<'resource'>;
  /** `memq_redactions_total{resource}`: pattern matches redacted before enqueueing. */
  readonly redactions: Counter<'resource'>;
  /**
   * `memq_backpressure_rejections_total{queue,bound}`: producer calls refused by backpressure;
   * `bound` is `messages` (the global high-water mark), `project_messages`, `project_bytes` or
   * `bytes`.
   */
  readonly backpressureRejections: Counter<'queue' | 'bound'>;
  /**
   * `memq_rate_limited_total{limit}`: HTTP requests refused with `RATE_LIMITED`; `limit` is
   * `requests`, `messages`, `concurrent_waits` or `concurrent_dry_runs` (never a key or project).
   */
  readonly rateLimited: Counter<'limit'>;
  /**
   * `memq_lock_events_total{operation,event}`: instance-lock events (`acquired`, `contended` =
   * gave up busy, `extended`, `lost`, `released`, `release_failed`; see the lock service).
   */
  readonly lockEvents: Counter<'operation' | 'event'>;
  /** `memq_lock_wait_seconds{operation}`: wait before an instance lock was acquired or given up. */
  readonly lockWait: Histogram<'operation'>;
  /**
   * `memq_http_requests_total{method,route,status}`: HTTP requests answered; `route` is the
   * route pattern (`/v1/memories/:resource/:key/messages`), never a path with ids, and the same
   * for every answer of that route whatever its status (its own 2xx and errors, e.g. 400, 404,
   * 429 `BACKPRESSURE`, 503; and the 401, 413, 415 and 429 `RATE_LIMITED` of the middlewares
   * before it); `/admin/queues` for Bull Board, `unmatched` for any other path.
   */
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  /** `memq_http_request_duration_seconds{method,route}`: time to answer, seconds. */
  readonly httpDuration: Histogram<'method' | 'route'>;
  /** Registers the scrape-time source of `memq_queue_jobs{queue,state}`. Last call wins. */
  setQueueDepthSource(source: QueueDepthSource): void;
  /**
   * Registers the scrape-time source of `memq_token_cache_hits_total`, `_misses_total` (counters:
   * each scrape adds what the source's cumulative counts grew by), `memq_token_cache_entries` and
   * `memq_token_cache_bytes` (gauges). Last call wins; a new source's counts add to the totals.
   */
  setTokenCacheSource(source: TokenCacheSource): void;
}

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** Registry to register on; default a new one (so tests and embedders never collide). */
  readonly registry?: Registry;
  /**
   * Also collect prom-client's default process metrics (CPU, memory, file descriptors, event-loop
   * lag, heap, GC) under their standard names (`process_cpu_seconds_total`,
   * `nodejs_eventloop_lag_seconds`...), with no `memq_` prefix, so stock Node.js dashboards read
   * them. Skipped when `registry` has them already (an embedder collecting them itself). Default false.
   */
  readonly processMetrics?: boolean;
}

/**
 * A metric prom-client's default collectors register (its process CPU counter), read to tell
 * whether a registry collects them already.
 */
const DEFAULT_METRIC_PROBE = 'process_cpu_seconds_total';

/**
 * Creates memq's instruments on `options.registry` (default: a fresh {@link Registry}). Every
 * memq metric is named `memq_*`, counters end in `_total`, units are `_seconds` and `_bytes`
 * (Prometheus naming conventions); there are no ratio gauges: ratios are PromQL over the counters
 * (docs/architecture.md, "Observability").
 * @throws Error from prom-client when `options.registry` holds a metric of the same name already.
 */
export function createMetrics(options: MetricsOptions = {}): MemqMetrics {
  const registry = options.registry ?? new Registry();
  if (options.processMetrics && !registry.getSingleMetric(DEFAULT_METRIC_PROBE)) {
    collectDefaultMetrics({ register: registry });
  }
  const counter = <L extends string>(config: CounterConfiguration<L>) =>
    new Counter<L>({ ...config, name: METRIC_PREFIX + config.name, registers: [registry] });

  let queueDepth: QueueDepthSource | undefined;
  let tokenCache: TokenCacheSource | undefined;
  // One read of the queue depths per scrape, shared by the two gauges below: prom-client collects
  // every metric of a scrape at once, so both ask within the same tick.
  type DepthRead = Promise<Awaited<ReturnType<QueueDepthSource>> | undefined>;
  let depthRead: DepthRead | undefined;
  const readDepths = (source: QueueDepthSource): DepthRead => {
    // Redis away must not fail the scrape: every other series would be lost with it.
    depthRead ??= source()
      .catch(() => undefined)
      .finally(() => {
        depthRead = undefined;
      });
    return depthRead;
  };
  new Gauge({
    name: `${METRIC_PREFIX}queue_jobs`,
    help: 'Jobs per queue and state (waiting, active, delayed, prioritized, failed), read at scrape time.',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      if (!queueDepth) return;
      for (const { queue, state, jobs } of (await readDepths(queueDepth)) ?? []) {
        this.set({ queue, state }, jobs);
      }
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}redis_up`,
    help: `1 when this scrape read the queue depths from Redis, 0 when Redis failed or took over ${QUEUE_DEPTH_DEADLINE_MS} ms (memq_queue_jobs then has no series). Without a queue-depth source: 0.`,
    registers: [registry],
    async collect() {
      this.set(queueDepth && (await readDepths(queueDepth)) !== undefined ? 1 : 0);
    },
  });
  // The cache keeps its own cumulative counts; each scrape adds what they grew by since the last
  // one (prom-client's way to mirror a count kept elsewhere: a Counter has no set()). A new
  // source (a new cache) starts from its own zero and the counters keep rising.
  let seen = { hits: 0, misses: 0 };
  const cacheCounter = (name: 'hits' | 'misses', help: string) =>
    new Counter({
      name: `${METRIC_PREFIX}token_cache_${name}_total`,
      help,
      registers: [registry],
      collect() {
        if (!tokenCache) return;
        const now = tokenCache()[name];
        if (now > seen[name]) this.inc(now - seen[name]);
        seen = { ...seen, [name]: now };
      },
    });
  cacheCounter('hits', 'Token-count cache lookups answered from the cache.');
  cacheCounter('misses', 'Token-count cache lookups that had to count.');
  const cacheGauge = (name: string, help: string, read: (s: TokenCacheStats) => number) =>
    new Gauge({
      name: `${METRIC_PREFIX}token_cache_${name}`,
      help,
      registers: [registry],
      collect() {
        if (tokenCache) this.set(read(tokenCache()));
      },
    });
  cacheGauge('entries', 'Entries in the token-count cache.', (s) => s.entries);
  cacheGauge('bytes', 'Approximate bytes held by the token-count cache.', (s) => s.bytes);

  return {
    registry,
    jobs: counter({
      name: 'jobs_total',
      help: 'Job attempts by queue and outcome (completed, invalid, failed, retry).',
      labelNames: ['queue', 'outcome'],
    }),
    jobDuration: new Histogram({
      name: `${METRIC_PREFIX}job_duration_seconds`,
      help: 'Processor run time per job attempt, seconds.',
      labelNames: ['queue', 'outcome'],
      buckets: JOB_DURATION_BUCKETS,
      registers: [registry],
    }),
    jobWait: new Histogram({
      name: `${METRIC_PREFIX}job_wait_seconds`,
      help: 'Time from enqueue (plus any requested delay) to the start of the first attempt, seconds.',
      labelNames: ['queue'],
      buckets: JOB_WAIT_BUCKETS,
      registers: [registry],
    }),
    appendJobEntries: new Histogram({
      name: `${METRIC_PREFIX}append_job_entries`,
      help: 'Append calls per enqueued append job (group commit).',
      buckets: APPEND_BATCH_BUCKETS,
      registers: [registry],
    }),
    appendJobMessages: new Histogram({
      name: `${METRIC_PREFIX}append_job_messages`,
      help: 'Messages per enqueued append job (group commit).',
      buckets: APPEND_BATCH_BUCKETS,
      registers: [registry],
    }),
    messagesAppended: counter({
      name: 'messages_appended_total',
      help: 'Messages committed by append jobs.',
      labelNames: ['resource'],
    }),
    messagesDuplicate: counter({
      name: 'messages_duplicate_total',
      help: 'Message ids an append job found already stored (idempotent resubmissions and retries).',
      labelNames: ['resource'],
    }),
    tokensCounted: counter({
      name: 'tokens_counted_total',
      help: 'Exact tokens committed by token-count jobs, by counting source.',
      labelNames: ['resource', 'source'],
    }),
    countingThreadBusy: counter({
      name: 'counting_thread_busy_seconds_total',
      help: 'Wall time the token-counting thread spent counting, seconds (its rate is the thread utilisation).',
      labelNames: [],
    }),
    tokenProviderFallbacks: counter({
      name: 'token_provider_fallbacks_total',
      help: 'Provider token counts answered by the local tokenizer instead (open breaker, 429, 5xx, timeout, error).',
      labelNames: ['provider', 'reason'],
    }),
    summarizerFallbacks: counter({
      name: 'summarizer_fallbacks_total',
      help: 'LLM summaries replaced by the rule-based summary (open breaker, timeout, 429, 5xx, error).',
      labelNames: ['reason'],
    }),
    summaries: counter({
      name: 'summaries_total',
      help: 'Rolling summaries written by flushes, by summarizer.',
      labelNames: ['source'],
    }),
    httpRequests: counter({
      name: 'http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
    }),
    httpDuration: new Histogram({
      name: `${METRIC_PREFIX}http_request_duration_seconds`,
      help: 'Time to answer an HTTP request, seconds.',
      labelNames: ['method', 'route'],
      buckets: JOB_DURATION_BUCKETS,
      registers: [registry],
    }),
    breakerState: new Gauge({
      name: `${METRIC_PREFIX}breaker_state`,
      help: 'Circuit breaker state: 0 closed, 0.5 half-open, 1 open.',
      labelNames: ['breaker'],
      registers: [registry],
    }),
    tokensSaved: counter({
      name: 'tokens_saved_total',
      help: 'Tokens removed from memory windows by flushes.',
      labelNames: ['resource', 'strategy'],
    }),
    privacyFailures: counter({
      name: 'privacy_failures_total',
      help: 'Messages refused because the privacy policy could not be applied (fail closed).',
      labelNames: ['resource'],
    }),
    redactions: counter({
      name: 'redactions_total',
      help: 'Privacy-pattern matches redacted before enqueueing.',
      labelNames: ['resource'],
    }),
    backpressureRejections: counter({
      name: 'backpressure_rejections_total',
      help: 'Producer calls refused because the backlog was over a bound (messages: the global high-water mark; project_messages, project_bytes, bytes).',
      labelNames: ['queue', 'bound'],
    }),
    rateLimited: counter({
      name: 'rate_limited_total',
      help: 'HTTP requests refused with RATE_LIMITED, by limit (requests, messages, concurrent_waits, concurrent_dry_runs).',
      labelNames: ['limit'],
    }),
    lockEvents: counter({
      name: 'lock_events_total',
      help: 'Instance-lock events by operation (acquired, contended, extended, lost, released, release_failed).',
      labelNames: ['operation', 'event'],
    }),
    lockWait: new Histogram({
      name: `${METRIC_PREFIX}lock_wait_seconds`,
      help: 'Wait before an instance lock was acquired or given up as busy, seconds.',
      labelNames: ['operation'],
      buckets: [0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1],
      registers: [registry],
    }),
    setQueueDepthSource(source) {
      queueDepth = source;
    },
    setTokenCacheSource(source) {
      tokenCache = source;
      seen = { hits: 0, misses: 0 };
    },
  };
}
