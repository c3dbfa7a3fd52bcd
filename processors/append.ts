import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import { applyPrivacy } from '../src/core/privacy.js';
import { PolicyError } from '../src/core/errors.js';
import {
  AppendJobDataSchema,
  type AppendJobResult,
  type ErasedJob,
} from '../queues/job-contracts.js';
import { QUEUES } from '../queues/names.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import { wrapProcessor } from './job-wrapper.js';

/** Dependencies of {@link createAppendProcessor}. */
export interface AppendProcessorDeps {
  /** Where messages are committed. */
  readonly store: MemoryStore;
  /** Declared resources (TTL, privacy policy). */
  readonly registry: MemoryRegistry;
  /** Enqueues the (deduplicated) token-count job for an instance. */
  readonly enqueueTokenCount: (ref: MemoryRef) => Promise<void>;
  /** Base logger (job ids and memory ids only). */
  readonly log: Logger;
  /** Instruments (job outcomes and durations via the wrapper, plus this processor's own). */
  readonly metrics: MemqMetrics;
  /** Clock, ms since epoch; default `Date.now`. */
  readonly now?: () => number;
}

/**
 * `memory-append` processor: re-validates the payload, applies the resource's privacy policy
 * again (hash pseudonyms scoped by `privacy_scope` to the job's instance), commits it with one
 * `append.lua` call under the resource's TTL and `expiration` (idempotent by message id, so a
 * retry stores nothing twice) and, once per burst, touches the
 * maintenance index and enqueues a token-count job. It also enqueues one whenever the job is
 * a redelivery (a retry, or a stalled job whose worker died) or met duplicates: the attempt that
 * opened the burst may have committed and then died before enqueueing, and an extra
 * token-count job is deduplicated per instance and finds nothing left to count.
 *
 * Erasure: the commit passes the job's enqueue time (`job.timestamp`), so `append.lua` refuses a
 * job enqueued at or before a delete or clear that has committed; the processor then replaces
 * the job's data with the message ids (`ErasedJobSchema`), so the job hash keeps no copy, and
 * completes with `erased`. A job whose data was already replaced (by the delete or clear, or by
 * an earlier attempt) completes with `erased` without touching the store.
 */
export function createAppendProcessor(deps: AppendProcessorDeps) {
  const now = deps.now ?? Date.now;
  return wrapProcessor({
    queue: QUEUES.append,
    schema: AppendJobDataSchema,
    log: deps.log,
    metrics: deps.metrics,
    async run(data, { job }): Promise<AppendJobResult> {
      if ('erased_ids' in data) return { added: 0, duplicates: 0, erased: data.erased_ids.length };
      const { ref, messages } = data;
      const resource = deps.registry.get(ref.resource);
      // Defence in depth: the producer already applied the policy; applying it again is a no-op
      // unless a producer skipped it. `ref` scopes hash pseudonyms (privacy_scope: session).
      let kept: typeof messages;
      try {
        ({ kept } = applyPrivacy(resource.privacyPolicy, messages, ref));
      } catch (error) {
        // Fail closed: nothing is stored; PolicyError is not retryable, so the job fails now.
        if (error instanceof PolicyError) {
          deps.metrics.privacyFailures.inc({ resource: ref.resource }, messages.length);
        }
        throw error;
      }
      if (kept.length === 0) return { added: 0, duplicates: 0 };
      const result = await deps.store.append(ref, kept, resource.persistence.ttlSeconds, {
        enqueuedAtMs: job.timestamp,
        expirationSeconds: resource.expirationSeconds ?? 0,
      });
      if (result.erased > 0) {
        const erased: ErasedJob = { ref, erased_ids: messages.map((m) => m.id) };
        await job.updateData(erased);
        return { added: 0, duplicates: 0, erased: result.erased };
      }
      deps.metrics.messagesAppended.inc({ resource: ref.resource }, result.added);
      deps.metrics.messagesDuplicate.inc({ resource: ref.resource }, result.duplicates);
      if (result.needsTokenCount || result.duplicates > 0 || job.attemptsStarted > 1) {
        await deps.store.touchIndex(ref, now());
        await deps.enqueueTokenCount(ref);
      }
      return { added: result.added, duplicates: result.duplicates };
    },
  });
}
