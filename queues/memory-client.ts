/**
 * The producer-side library services import (docs/architecture.md, "Surfaces and processes"): a
 * facade over the producer (queues/producer.ts), job lookups (queues/job-status.ts), the
 * readiness canary (queues/readiness.ts) and the store's reads, bound to one project.
 */
import { PayloadError } from '../src/core/errors.js';
import { NAME_PATTERN } from '../src/core/memory-key.js';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import type { RedisConnection } from '../src/redis/connection.js';
import type { MemoryStats, MemoryStore, MemoryWindow } from '../src/store/memory-store.js';
import type { AppendJobResult } from './job-contracts.js';
import { createJobStatus, type JobInfo, type JobReceipt } from './job-status.js';
import { createMemoryQueues, type MemoryQueues } from './memory-queues.js';
import { resolveTarget, type MemoryTarget } from './memory-target.js';
import type { QueueName } from './names.js';
import { createProducer, type ProducerBackpressure, type ProjectProducer } from './producer.js';
import { runCanary } from './readiness.js';
import { createRedisGuard, DEFAULT_REDIS_TIMEOUT_MS } from './redis-guard.js';

export type { JobInfo, JobReceipt } from './job-status.js';
export type { MemoryTarget } from './memory-target.js';
export {
  appendJobId,
  type AppendReceipt,
  type EnqueueOptions,
  type ProducerBackpressure,
} from './producer.js';
export { isConnectionFailure } from '../src/redis/connection-failures.js';

/**
 * The producer-side library: the enqueueing operations of {@link ProjectProducer} (append,
 * prepareAppend, write, flush, clear, delete), reads, job lookups and the readiness canary, all
 * acting for {@link MemoryClient.project}.
 */
export interface MemoryClient extends ProjectProducer {
  /**
   * Reads one page of an instance (see `MemoryStore.read`); with `flushing.track_access` the read
   * of every returned message is recorded for lru/lfu.
   */
  read(target: MemoryTarget, page?: { offset?: number; limit?: number }): Promise<MemoryWindow>;
  /** Counters, accounting and health of an instance (see `MemoryStore.stats`). */
  stats(target: MemoryTarget, options?: { deep?: boolean }): Promise<MemoryStats>;
  /** Health of an instance (see `MemoryStore.health`). */
  health(target: MemoryTarget): Promise<MemoryStats & { healthy: boolean }>;
  /**
   * Waits until a job has finished and returns its result. A bare job id means an append job.
   * @throws JobFailedError when the job failed (its reason).
   * @throws JobTimeoutError when it did not finish within `timeoutMs` (default 30 000); the job
   *   goes on.
   * @throws PayloadError when no such job exists (unknown id, or already removed by retention).
   * @throws RedisUnavailableError when Redis does not answer (see `redisTimeoutMs`).
   */
  waitFor<R = AppendJobResult>(
    job: string | JobReceipt,
    options?: { timeoutMs?: number },
  ): Promise<R>;
  /** Backlog of the append queue: waiting + delayed + prioritized jobs (cached <= 250 ms with backpressure on). */
  backlog(): Promise<number>;
  /**
   * Readiness probe: enqueues a `canary` job on `memory-cleanup` and waits until a worker has
   * run it (`runCanary`, queues/readiness.ts). Resolves with the round trip in milliseconds; the
   * canary leaves nothing behind.
   * @throws JobFailedError when it failed.
   * @throws JobTimeoutError when no worker completed it within `timeoutMs` (default 2 000).
   * @throws RedisUnavailableError when Redis does not answer (see `redisTimeoutMs`).
   */
  canary(options?: { timeoutMs?: number }): Promise<number>;
  /** The project (tenant) every call of this client acts for. */
  readonly project: string;
  /**
   * The same client acting for another project (the HTTP API binds each request to the project
   * of its API key): same queues, backpressure and metrics; views are cached per project and
   * their `close()` does nothing (the client that created them owns the queues).
   * @throws PayloadError when `project` is not 1-100 of `[A-Za-z0-9_-]`.
   */
  forProject(project: string): MemoryClient;
  /**
   * A job of this client's project, or undefined when there is no such job or it belongs to
   * another project (so callers cannot probe other tenants' job ids).
   */
  job(queue: QueueName, jobId: string): Promise<JobInfo | undefined>;
  /**
   * Stops the backpressure gate and closes the queues the client created (not injected ones
   * (`MemoryClientDeps.queues`), not the Redis connection). Idempotent.
   */
  close(): Promise<void>;
}

/** Dependencies of {@link createMemoryClient}. */
export interface MemoryClientDeps {
  /** Producer connection (fail-fast); owned by the caller. */
  readonly connection: RedisConnection;
  /** BullMQ prefix, e.g. `{memq}`. */
  readonly queuePrefix: string;
  /**
   * Queues to enqueue on, owned by the caller (the runtime shares one set between the client and
   * the workers); they must use `queuePrefix`. Absent = the client creates its own on
   * `connection` and closes them in `close()`; injected queues are never closed by the client.
   */
  readonly queues?: MemoryQueues;
  /** Declared memory resources. */
  readonly registry: MemoryRegistry;
  /** Tenant all calls of this client act for. */
  readonly project: string;
  /** Store used by `read`, `stats` and `health`. */
  readonly store: MemoryStore;
  /**
   * Longest a queue operation (enqueue, backlog count, job lookup) may wait for Redis before it
   * fails with `RedisUnavailableError`, ms. BullMQ waits for a lost connection indefinitely;
   * producers must not. Default 5 000.
   */
  readonly redisTimeoutMs?: number;
  /** Clock for `created_at`, ms since epoch; default `Date.now`. */
  readonly now?: () => number;
  /** Records `memq_redactions_total` and `memq_backpressure_rejections_total`; absent = not recorded. */
  readonly metrics?: MemqMetrics;
  /** Producer backpressure (see {@link ProducerBackpressure}); absent = none. */
  readonly backpressure?: ProducerBackpressure;
}

/** Creates a {@link MemoryClient} acting for `deps.project`. */
export function createMemoryClient(deps: MemoryClientDeps): MemoryClient {
  const ownsQueues = deps.queues === undefined;
  const queues = deps.queues ?? createMemoryQueues(deps.connection, deps.queuePrefix);
  const guard = createRedisGuard(deps.connection, deps.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS);
  const producer = createProducer({
    connection: deps.connection,
    queuePrefix: deps.queuePrefix,
    registry: deps.registry,
    queues,
    guard,
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
    ...(deps.backpressure ? { backpressure: deps.backpressure } : {}),
  });
  const jobs = createJobStatus(queues, guard);
  const views = new Map<string, MemoryClient>();

  const bind = (project: string, owner: boolean): MemoryClient => {
    const refOf = (target: MemoryTarget) => resolveTarget(deps.registry, project, target);
    const client: MemoryClient = {
      ...producer.forProject(project),
      project,
      read(target, page) {
        const resource = deps.registry.get(target.resource);
        return deps.store.read(refOf(target), {
          ...page,
          recordAccess: resource.flushing.trackAccess === true,
        });
      },
      stats: (target, options) => deps.store.stats(refOf(target), options),
      health: (target) => deps.store.health(refOf(target)),
      waitFor: (job, options) => jobs.waitFor(job, options),
      job: (queue, jobId) => jobs.job(project, queue, jobId),
      backlog: () => producer.backlog(),
      canary: (options) => runCanary(queues, guard, options),
      forProject(other) {
        if (!NAME_PATTERN.test(other)) {
          throw new PayloadError(
            `project: expected 1-100 characters of letters, digits, _ or -, got ${JSON.stringify(other)}`,
          );
        }
        let scoped = views.get(other);
        if (!scoped) {
          scoped = bind(other, false);
          views.set(other, scoped);
        }
        return scoped;
      },
      close() {
        if (!owner) return Promise.resolve(); // the root client owns the queues
        producer.close();
        return ownsQueues ? queues.close() : Promise.resolve();
      },
    };
    return client;
  };
  const root = bind(deps.project, true);
  views.set(deps.project, root);
  return root;
}
