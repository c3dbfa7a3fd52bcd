import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { applyPrivacy } from '../src/core/privacy.js';
import type { LockService } from '../src/redis/lock-service.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import { CanaryJobSchema, ClearJobSchema, WriteJobSchema } from '../queues/job-contracts.js';
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
  /** Runs a maintenance sweep (job `maintenance`); absent = maintenance jobs fail clearly. */
  readonly maintenance?: (job: Job, token?: string, signal?: AbortSignal) => Promise<unknown>;
  /** Base logger (job ids and memory ids only). */
  readonly log: Logger;
  /** Instruments (job outcomes and durations via the wrapper, plus this processor's own). */
  readonly metrics: MemqMetrics;
}

/**
 * `memory-cleanup` processor, one queue for the operations that take the instance lock with
 * `clear_ttl` (and the readiness `canary`, which touches nothing): `clear` (messages and summary go, the idempotency window stays), `delete` (every
 * key family and the index entry), `write` (atomic replace; the privacy policy is applied again,
 * then a token count is enqueued), and `maintenance` (the scheduler's sweep).
 */
export function createCleanupProcessor(deps: CleanupProcessorDeps) {
  const clearOrDelete = (operation: 'clear' | 'delete') =>
    wrapProcessor({
      queue: QUEUES.cleanup,
      schema: ClearJobSchema,
      log: deps.log,
      metrics: deps.metrics,
      async run({ ref }) {
        const resource = deps.registry.get(ref.resource);
        return deps.locks.withLock(ref, resource.locking, 'clear', async () =>
          operation === 'clear' ? deps.store.clear(ref) : { removed: await deps.store.delete(ref) },
        );
      },
    });
  const write = wrapProcessor({
    queue: QUEUES.cleanup,
    schema: WriteJobSchema,
    log: deps.log,
    metrics: deps.metrics,
    async run({ ref, messages }) {
      const resource = deps.registry.get(ref.resource);
      const { kept } = applyPrivacy(resource.privacyPolicy, messages);
      const result = await deps.locks.withLock(ref, resource.locking, 'clear', () =>
        deps.store.write(ref, kept, resource.persistence.ttlSeconds),
      );
      if (kept.length > 0) await deps.enqueueTokenCount(ref);
      return result;
    },
  });
  const canary = wrapProcessor({
    queue: QUEUES.cleanup,
    schema: CanaryJobSchema,
    log: deps.log,
    metrics: deps.metrics,
    run: ({ sent_at }) => Promise.resolve({ sent_at, processed_at: Date.now() }),
  });
  const processors = {
    [JOBS.canary]: canary,
    [JOBS.clear]: clearOrDelete('clear'),
    [JOBS.delete]: clearOrDelete('delete'),
    [JOBS.write]: write,
  } as const;
  return (job: Job, token?: string, signal?: AbortSignal): Promise<unknown> => {
    if (job.name === JOBS.maintenance && deps.maintenance)
      return deps.maintenance(job, token, signal);
    const processor = processors[job.name as keyof typeof processors] as
      ((job: Job, token?: string, signal?: AbortSignal) => Promise<unknown>) | undefined;
    if (!processor) {
      throw new UnrecoverableError(
        `${QUEUES.cleanup} job ${job.id ?? '?'}: unknown job name ${JSON.stringify(job.name)}; expected one of ${Object.keys(processors).join(', ')}${deps.maintenance ? ', maintenance' : ''}`,
      );
    }
    return processor(job, token, signal);
  };
}
