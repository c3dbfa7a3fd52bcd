import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import { applyPrivacy } from '../src/core/privacy.js';
import { AppError, PolicyError } from '../src/core/errors.js';
import { memoryId } from '../src/redis/keys.js';
import {
  AppendJobDataSchema,
  type AppendEntryData,
  type AppendEntryResult,
  type AppendJobResult,
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
  /**
   * Replaces `ref`'s entries in the job hash `jobKey` with their message ids
   * (`MaintenanceStore.scrubJobKeys`): run when the erasure tombstone refused an entry, so the
   * hash keeps no copy of an erased instance's messages. Resolves with the hashes rewritten.
   */
  readonly scrubJob: (ref: MemoryRef, erasedAtMs: number, jobKey: string) => Promise<number>;
  /** The BullMQ key of an append job's hash, from its id (`<prefix>:memory-append:<id>`). */
  readonly jobKey: (jobId: string) => string;
  /** Base logger (job ids and memory ids only). */
  readonly log: Logger;
  /** Instruments (job outcomes and durations via the wrapper, plus this processor's own). */
  readonly metrics: MemqMetrics;
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
  /** Clock, ms since epoch; default `Date.now`. */
  readonly now?: () => number;
}

/**
 * What an append job records in its `progress` when an entry could not be committed: each
 * entry's result, `null` for one not committed yet. The next attempt skips the committed
 * entries, and `MemoryClient.waitFor` answers a committed entry's receipt from it even when the
 * job ends failed.
 */
export interface AppendJobProgress {
  /** Per entry, in the job's order: its result, or null while it is not committed. */
  readonly entries: ReadonlyArray<AppendEntryResult | null>;
}

/** True when `progress` is an {@link AppendJobProgress} of `length` entries. */
export function isAppendJobProgress(
  progress: unknown,
  length: number,
): progress is AppendJobProgress {
  return (
    typeof progress === 'object' &&
    progress !== null &&
    Array.isArray((progress as { entries?: unknown }).entries) &&
    (progress as { entries: unknown[] }).entries.length === length
  );
}

/**
 * `memory-append` processor. A job carries the entries of one or more append calls of one
 * project (group commit, queues/append-batcher.ts); each entry is committed on its own, all of
 * them at once (their `append.lua` calls go out together, pipelined on one connection; on a
 * Redis Cluster each to its own slot's node):
 *
 * - re-validates the payload and applies the resource's privacy policy again (hash pseudonyms
 *   scoped by `privacy_scope` to the entry's instance), then one `append.lua` call under the
 *   resource's TTL and `expiration`, idempotent by message id, so a retry stores nothing twice;
 * - once per burst of an instance it touches the maintenance index and enqueues a token-count
 *   job; also whenever the job is a redelivery (a retry, or a stalled job whose worker died) or
 *   met duplicates: the attempt that opened the burst may have committed and then died before
 *   enqueueing, and an extra token-count job is deduplicated per instance and finds nothing left
 *   to count;
 * - an entry that fails (an undeclared resource, a policy that cannot be applied, Redis failing
 *   for one slot) does not hold back the others: they commit, the job records every entry's
 *   result in its progress ({@link AppendJobProgress}) and then fails with the first failed
 *   entry's error whose failure is retryable, else the first failed entry's (retried when it is
 *   retryable; the next attempt commits only what is left, so one non-retryable entry never
 *   keeps a retryable one from its retry), so the failed entries' messages stay in the job, a
 *   dead letter once attempts are spent.
 *
 * With `startReplicaConfirmation` (`MEMQ_WAIT_REPLICAS`), the job completes only once the replicas
 * confirm the commits; too few confirmations fail the attempt (retryable), and the retry finds
 * the messages as duplicates and confirms again.
 *
 * Erasure: each commit passes the job's enqueue time (`job.timestamp`), so `append.lua` refuses
 * an entry enqueued at or before a delete or clear of its instance that has committed; the
 * processor then replaces that entry's messages in the job hash with their ids
 * (`ErasedJobSchema`, through `scrubJob`, in Redis, so the other entries stay as they are) and
 * reports it `erased`. An entry already replaced (by the delete or clear, or by an earlier
 * attempt) is reported `erased` without touching the store; one an earlier attempt found erased
 * but could not scrub (the scrub failed, and so did that attempt) is scrubbed again.
 */
export function createAppendProcessor(deps: AppendProcessorDeps) {
  const now = deps.now ?? Date.now;
  return wrapProcessor({
    queue: QUEUES.append,
    schema: AppendJobDataSchema,
    log: deps.log,
    metrics: deps.metrics,
    async run(data, { job, log }): Promise<AppendJobResult> {
      const confirmReplicas = deps.startReplicaConfirmation?.();
      const { entries } = data;
      const earlier = isAppendJobProgress(job.progress, entries.length)
        ? job.progress.entries
        : undefined;
      const redelivered = job.attemptsStarted > 1;
      const counted = new Map<string, MemoryRef>();
      const erasedRefs = new Map<string, MemoryRef>();
      const commit = async (entry: AppendEntryData, index: number): Promise<AppendEntryResult> => {
        const done = earlier?.[index];
        if (done) {
          if (!('erased_ids' in entry)) {
            if (done.erased) {
              // Refused by the tombstone in an earlier attempt whose scrub of the job hash did not
              // complete: the hash still carries the messages, so scrub again.
              erasedRefs.set(memoryId(entry.ref), entry.ref);
            } else {
              // Committed by an earlier attempt, which may have died before its token-count job.
              counted.set(memoryId(entry.ref), entry.ref);
            }
          }
          return done;
        }
        if ('erased_ids' in entry)
          return { added: 0, duplicates: 0, erased: entry.erased_ids.length };
        const { ref, messages } = entry;
        const resource = deps.registry.get(ref.resource);
        // Defence in depth: the producer already applied the policy; applying it again is a
        // no-op unless a producer skipped it. `ref` scopes hash pseudonyms (privacy_scope: session).
        let kept: typeof messages;
        try {
          ({ kept } = applyPrivacy(resource.privacyPolicy, messages, ref));
        } catch (error) {
          // Fail closed: nothing of this entry is stored; PolicyError is not retryable.
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
          erasedRefs.set(memoryId(ref), ref);
          return { added: 0, duplicates: 0, erased: result.erased };
        }
        deps.metrics.messagesAppended.inc({ resource: ref.resource }, result.added);
        deps.metrics.messagesDuplicate.inc({ resource: ref.resource }, result.duplicates);
        if (result.needsTokenCount || result.duplicates > 0 || redelivered) {
          counted.set(memoryId(ref), ref);
        }
        return { added: result.added, duplicates: result.duplicates };
      };
      const settled = await Promise.allSettled(entries.map((entry, i) => commit(entry, i)));
      // Per instance, once: the maintenance index and the token-count job (deduplicated).
      const at = now();
      const followUps = await Promise.allSettled([
        ...[...counted.values()].map(async (ref) => {
          await deps.store.touchIndex(ref, at);
          await deps.enqueueTokenCount(ref);
        }),
        ...[...erasedRefs.values()].map((ref) =>
          deps.scrubJob(ref, job.timestamp, deps.jobKey(job.id!)),
        ),
      ]);
      const results = settled.map((s) => (s.status === 'fulfilled' ? s.value : null));
      const failures = settled.flatMap((s, i) =>
        s.status === 'rejected' ? [{ i, error: s.reason as unknown }] : [],
      );
      const followUpFailure = followUps.find((f) => f.status === 'rejected');
      if (failures.length > 0 || followUpFailure) {
        // What committed is kept in the job, so the next attempt and waitFor know it.
        await job.updateProgress({ entries: results } satisfies AppendJobProgress);
      }
      if (failures.length > 0) {
        // A retryable failure decides when there is one: a non-retryable entry (e.g. of an
        // undeclared resource) must not dead-letter the job while another entry can still commit
        // on a retry (that entry is skipped then, its result being in the progress).
        const first =
          failures.find((f) => !(f.error instanceof AppError) || f.error.retryable) ?? failures[0]!;
        const ref = entries[first.i]!.ref;
        log.warn(
          { entries: failures.map((f) => f.i), memory: memoryId(ref) },
          'append entries not committed; the others are',
        );
        const where = `entries[${first.i}] (${memoryId(ref)})${failures.length > 1 ? ` and ${failures.length - 1} more` : ''}`;
        if (first.error instanceof AppError) {
          throw new AppError(
            first.error.code,
            `${where}: ${first.error.message}`,
            first.error.retryable,
            {
              ...(first.error.details ? { details: first.error.details } : {}),
              cause: first.error,
            },
          );
        }
        throw first.error;
      }
      if (followUpFailure?.status === 'rejected') throw followUpFailure.reason;
      // Completed only once the commits are on enough replicas (a failover keeps them).
      await confirmReplicas?.('append');
      const done = results as AppendEntryResult[];
      const sum = (field: 'added' | 'duplicates' | 'erased') =>
        done.reduce((total, r) => total + (r[field] ?? 0), 0);
      const erased = sum('erased');
      return {
        added: sum('added'),
        duplicates: sum('duplicates'),
        ...(erased > 0 ? { erased } : {}),
        ...(done.length > 1 ? { entries: done } : {}),
      };
    },
  });
}
