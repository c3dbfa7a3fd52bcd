import { UnrecoverableError, type Job, type Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { applyPrivacy } from '../src/core/privacy.js';
import type { LockService } from '../src/redis/lock-service.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import type { QueueJobKeys } from '../src/store/maintenance-store.js';
import {
  CLEANUP_JOB_SCHEMAS,
  isCleanupJobName,
  type CleanupJobName,
  type ErasedJob,
  type ErasureJobResult,
  type WriteJobResult,
} from '../queues/job-contracts.js';
import { JOBS, QUEUES } from '../queues/names.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import { wrapProcessor } from './job-wrapper.js';

/** Dependencies of {@link createCleanupProcessor}. */
export interface CleanupProcessorDeps {
  /** Where clears, deletes and writes are committed. */
  readonly store: MemoryStore;
  /** Declared resources (TTL, privacy policy, lock TTLs). */
  readonly registry: MemoryRegistry;
  /** Instance locks (`clear_ttl`). */
  readonly locks: LockService;
  /** Enqueues the token count a write needs. */
  readonly enqueueTokenCount: (ref: MemoryRef) => Promise<void>;
  /**
   * Removes `ref`'s messages from the append and write jobs enqueued at or before `erasedAtMs`
   * (`MaintenanceStore.scrubJobs` over the append and cleanup queues, see `jobScrubber` in
   * `src/runtime/compose.ts`); resolves with the number of job hashes rewritten.
   */
  readonly scrubJobs: (ref: MemoryRef, erasedAtMs: number) => Promise<number>;
  /**
   * Runs a maintenance sweep (job `maintenance`, payload `CLEANUP_JOB_SCHEMAS.maintenance`); absent =
   * maintenance jobs fail without retries, touching nothing.
   */
  readonly maintenance?: (job: Job, token?: string, signal?: AbortSignal) => Promise<unknown>;
  /**
   * Replica confirmation (`MEMQ_WAIT_REPLICAS`), called before a job's first write: returns the
   * confirmation to await after its last one, which resolves once enough replicas confirm every
   * write of the worker connection so far (`connectionSession` and `confirmReplicas` of
   * src/redis/replicas.ts on the connection the store commits on) and throws
   * RedisUnavailableError (retryable: the job retries, and the store's commits are idempotent)
   * when too few do or the connection reconnected in between. `what` names the operation in the
   * error. Absent = a commit on the primary completes the job.
   */
  readonly startReplicaConfirmation?: () => (what: string) => Promise<void>;
  /** Base logger (job ids and memory ids only). */
  readonly log: Logger;
  /** Instruments (job outcomes and durations via the wrapper, plus this processor's own). */
  readonly metrics: MemqMetrics;
}

/**
 * The BullMQ keys of `queue` that `MaintenanceStore.scrubJobs` reads: its job hashes' prefix and
 * every list and sorted set of job ids (BullMQ's `QueueKeys`).
 */
export function queueJobKeys(queue: Queue): QueueJobKeys {
  const keys = queue.keys;
  return {
    jobPrefix: queue.toKey(''),
    lists: [keys.wait!, keys.paused!, keys.active!],
    sortedSets: [
      keys.prioritized!,
      keys.delayed!,
      keys.completed!,
      keys.failed!,
      keys['waiting-children']!,
    ],
  };
}

/**
 * `memory-cleanup` processor, one queue for the operations that take the instance lock with
 * `clear_ttl` (and the readiness `canary`, which touches nothing): `clear` (messages and summary
 * go, the idempotency window and the session data stay), `delete` (every key family and the
 * index entries; session data put after the delete was requested stays), `write` (atomic
 * replace; the privacy policy is applied again, the instance's activity is recorded in the
 * indexes, then a token count is enqueued), and
 * `maintenance` (the scheduler's sweep).
 *
 * Erasure (a delete or clear is final): a clear or delete raises the instance's erasure
 * tombstone to its own enqueue time (`job.timestamp`) in the same script that removes the
 * messages, then, outside the instance lock, removes the instance's messages from every append
 * and write job enqueued at or before the tombstone, in any state (`scrubJobs`). A retry re-runs
 * both steps (both are idempotent). A write enqueued at or before the tombstone changes nothing,
 * replaces its own job data with the message ids and completes with `erased`.
 *
 * With `startReplicaConfirmation` (`MEMQ_WAIT_REPLICAS`), a clear, delete or write completes only once
 * the replicas confirm it; too few confirmations fail the attempt (retryable; each is idempotent).
 *
 * Dispatch is by job name through `CLEANUP_JOB_SCHEMAS` (queues/job-contracts.ts): each name's
 * processor parses the data with that name's schema; a name the map does not know (or
 * `maintenance` without `deps.maintenance`) fails with BullMQ's `UnrecoverableError` (recorded
 * as `invalid`) before anything is read or written.
 */
export function createCleanupProcessor(deps: CleanupProcessorDeps) {
  const clearOrDelete = (operation: 'clear' | 'delete') =>
    wrapProcessor({
      queue: QUEUES.cleanup,
      schema: CLEANUP_JOB_SCHEMAS[operation],
      log: deps.log,
      metrics: deps.metrics,
      async run({ ref }, { job }): Promise<ErasureJobResult> {
        const resource = deps.registry.get(ref.resource);
        const request = { requestedAtMs: job.timestamp };
        const confirmReplicas = deps.startReplicaConfirmation?.();
        const erased = await deps.locks.withLock(ref, resource.locking, 'clear', () =>
          operation === 'clear' ? deps.store.clear(ref, request) : deps.store.delete(ref, request),
        );
        const jobsScrubbed = await deps.scrubJobs(ref, erased.erasedAtMs);
        await confirmReplicas?.(operation);
        return { ...erased, jobsScrubbed };
      },
    });
  const write = wrapProcessor({
    queue: QUEUES.cleanup,
    schema: CLEANUP_JOB_SCHEMAS[JOBS.write],
    log: deps.log,
    metrics: deps.metrics,
    async run(data, { job }): Promise<WriteJobResult> {
      if ('erased_ids' in data) {
        const stats = await deps.store.stats(data.ref);
        return {
          messageCount: stats.messageCount,
          epoch: stats.epoch,
          erased: data.erased_ids.length,
        };
      }
      const { ref, messages } = data;
      const confirmReplicas = deps.startReplicaConfirmation?.();
      const resource = deps.registry.get(ref.resource);
      const { kept } = applyPrivacy(resource.privacyPolicy, messages, ref);
      const result = await deps.locks.withLock(ref, resource.locking, 'clear', () =>
        deps.store.write(ref, kept, resource.persistence.ttlSeconds, {
          enqueuedAtMs: job.timestamp,
          expirationSeconds: resource.expirationSeconds ?? 0,
        }),
      );
      const { messageCount, epoch } = result;
      if (result.refused) {
        const erased: ErasedJob = { ref, erased_ids: messages.map((m) => m.id) };
        await job.updateData(erased);
        return { messageCount, epoch, erased: messages.length };
      }
      // A written instance is active: index it (the sweep and the listing read the indexes).
      await deps.store.touchIndex(ref, Date.now());
      if (kept.length > 0) await deps.enqueueTokenCount(ref);
      await confirmReplicas?.(JOBS.write);
      return { messageCount, epoch, erased: 0 };
    },
  });
  const canary = wrapProcessor({
    queue: QUEUES.cleanup,
    schema: CLEANUP_JOB_SCHEMAS[JOBS.canary],
    log: deps.log,
    metrics: deps.metrics,
    run: ({ sent_at }) => Promise.resolve({ sent_at, processed_at: Date.now() }),
  });
  type Run = (job: Job, token?: string, signal?: AbortSignal) => Promise<unknown>;
  const processors: Record<CleanupJobName, Run | undefined> = {
    [JOBS.canary]: canary,
    [JOBS.clear]: clearOrDelete('clear'),
    [JOBS.delete]: clearOrDelete('delete'),
    [JOBS.write]: write,
    [JOBS.maintenance]: deps.maintenance,
  };
  return async (job: Job, token?: string, signal?: AbortSignal): Promise<unknown> => {
    const processor = isCleanupJobName(job.name) ? processors[job.name] : undefined;
    if (!processor) {
      deps.metrics.jobs.inc({ queue: QUEUES.cleanup, outcome: 'invalid' });
      const known = (Object.keys(processors) as CleanupJobName[]).filter((n) => processors[n]);
      throw new UnrecoverableError(
        `${QUEUES.cleanup} job ${job.id ?? '?'}: unknown job name ${JSON.stringify(job.name)}; expected one of ${known.join(', ')}`,
      );
    }
    return processor(job, token, signal);
  };
}
