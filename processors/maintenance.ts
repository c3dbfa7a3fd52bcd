import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import type { RedisConnection } from '../src/redis/connection.js';
import { needsFlush } from '../src/flush/plan.js';
import { INDEX_SHARDS } from '../src/redis/keys.js';
import type { MaintenanceStore } from '../src/store/maintenance-store.js';
import { SCAN_DONE } from '../src/store/maintenance-store.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import { createBacklogLedger } from '../queues/backlog-ledger.js';
import { DEFAULT_JOB_OPTIONS } from '../queues/job-options.js';
import type { MemoryQueues } from '../queues/memory-queues.js';
import { CLEANUP_JOB_SCHEMAS } from '../queues/job-contracts.js';
import { JOBS, QUEUES } from '../queues/names.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import { wrapProcessor } from './job-wrapper.js';

/** What one sweep did. */
export interface MaintenanceResult {
  /** Index entries visited. */
  readonly scanned: number;
  /** Index entries dropped because their instance expired or was deleted. */
  readonly staleDropped: number;
  /**
   * Entries added to a per-resource index (the instance listing's) because the instance was
   * only in the global index: indexed before the per-resource index existed, or its touch was
   * lost to a crash (`MaintenanceStore.indexInResource`, which adds nothing once a delete has
   * removed the global entry, so the sweep never lists a just-deleted instance again).
   */
  readonly resourceIndexed: number;
  /** Instances whose counters had drifted and were repaired. */
  readonly reconciled: number;
  /** Idempotency ids pruned past the window. */
  readonly seenPruned: number;
  /** Flushes enqueued for instances over their trigger. */
  readonly flushesEnqueued: number;
  /**
   * Token-count jobs enqueued for instances with messages still uncounted (deduplicated per
   * instance, so a pending one absorbs it): the safety net for a token-count job that was lost.
   */
  readonly tokenCountsEnqueued: number;
  /** Index members that are not memory ids (left in place, reported). */
  readonly malformed: number;
  /** Finished jobs removed by `queue.clean` across the four queues. */
  readonly jobsCleaned: number;
  /**
   * Backlog-ledger entries removed because their job had left the backlog (ones the settling of
   * each producer check had not reached); the ledger's totals are then recomputed from its entries
   * (queues/backlog-ledger.ts).
   */
  readonly backlogSettled: number;
}

/** Dependencies of {@link createMaintenanceProcessor}. */
export interface MaintenanceProcessorDeps {
  /** Index scans, reconcile, seen pruning. */
  readonly maintenance: MaintenanceStore;
  /** Reads usage for the flush trigger. */
  readonly store: MemoryStore;
  /** Declared resources (an instance of an undeclared resource is only reconciled). */
  readonly registry: MemoryRegistry;
  /** Flush enqueues and `queue.clean`. */
  readonly queues: MemoryQueues;
  /** How long accepted ids stay in `seen`, ms (MEMQ_IDEMPOTENCY_WINDOW_MS). */
  readonly idempotencyWindowMs: number;
  /** Base logger (job ids and memory ids only). */
  readonly log: Logger;
  /** Instruments (job outcomes and durations via the wrapper, plus this processor's own). */
  readonly metrics: MemqMetrics;
  /** Clock, ms since epoch; default `Date.now`. */
  readonly now?: () => number;
}

/** Index entries read per page. */
const PAGE = 200;

/**
 * The scheduled maintenance sweep (docs/architecture.md, "Jobs"), safe to run on any replica and at any
 * time (every step is idempotent): for every index entry, drop it if its instance expired,
 * add it to its per-resource index (the instance listing's) if missing, reconcile counters
 * against the log, prune idempotency ids older than the window (keeping ids
 * still in the log), enqueue a token count when messages are still uncounted, and enqueue a flush when the instance is over its trigger; then
 * `queue.clean` finished jobs past their retention, and reconcile the backlog ledger (the byte
 * and per-project bounds of producer backpressure). Reports progress per shard.
 */
export function createMaintenanceProcessor(deps: MaintenanceProcessorDeps) {
  const now = deps.now ?? Date.now;
  return wrapProcessor({
    queue: QUEUES.cleanup,
    schema: CLEANUP_JOB_SCHEMAS[JOBS.maintenance],
    log: deps.log,
    metrics: deps.metrics,
    async run({ shards }, { job, log, signal }): Promise<MaintenanceResult> {
      const todo = shards ?? Array.from({ length: INDEX_SHARDS }, (_, i) => i);
      const result = {
        scanned: 0,
        staleDropped: 0,
        resourceIndexed: 0,
        reconciled: 0,
        seenPruned: 0,
        flushesEnqueued: 0,
        tokenCountsEnqueued: 0,
        malformed: 0,
        jobsCleaned: 0,
        backlogSettled: 0,
      };
      const pruneBefore = now() - deps.idempotencyWindowMs;
      for (const [done, shard] of todo.entries()) {
        let cursor = SCAN_DONE;
        do {
          signal?.throwIfAborted();
          const page = await deps.maintenance.scanIndex(shard, { count: PAGE, cursor });
          cursor = page.cursor;
          result.malformed += page.malformed.length;
          for (const entry of page.refs) {
            const { ref } = entry;
            result.scanned += 1;
            if (await deps.maintenance.dropStaleIndexEntry(ref)) {
              result.staleDropped += 1;
              continue;
            }
            // False above also when a delete removed the global entry since the page was read:
            // indexInResource re-checks that entry and adds nothing without it.
            if (await deps.maintenance.indexInResource(entry)) result.resourceIndexed += 1;
            if ((await deps.maintenance.reconcile(ref)).changed) result.reconciled += 1;
            if (pruneBefore > 0)
              result.seenPruned += await deps.maintenance.pruneSeen(ref, pruneBefore);
            if (!deps.registry.has(ref.resource)) continue;
            const resource = deps.registry.get(ref.resource);
            const window = await deps.store.read(ref, { limit: 1 });
            // The chaos suite's worker SIGKILLs left a few memories with uncounted messages and no
            // token-count job; appends within the burst window do not enqueue another, so without
            // this they stayed estimated until the next append after the window.
            if (window.estimatedTokens > 0) {
              await deps.queues.enqueueTokenCount(ref);
              result.tokenCountsEnqueued += 1;
            }
            if (
              needsFlush(resource, {
                tokens: window.tokenCount + window.estimatedTokens,
                messages: window.total,
              })
            ) {
              await deps.queues.enqueueFlush(ref, { trigger: true });
              result.flushesEnqueued += 1;
            }
          }
        } while (cursor !== SCAN_DONE);
        await job.updateProgress(Math.round(((done + 1) / todo.length) * 100));
      }
      const completedAgeMs = ageMs(DEFAULT_JOB_OPTIONS.removeOnComplete, 3600);
      const failedAgeMs = ageMs(DEFAULT_JOB_OPTIONS.removeOnFail, 7 * 24 * 3600);
      for (const name of Object.values(QUEUES)) {
        const queue = deps.queues.byName(name);
        result.jobsCleaned += (await queue.clean(completedAgeMs, 10_000, 'completed')).length;
        result.jobsCleaned += (await queue.clean(failedAgeMs, 10_000, 'failed')).length;
      }
      const appendQueue = deps.queues.append;
      // BullMQ 6 types its client as its own IRedisClient; it is the ioredis connection the
      // queues were created on (createMemoryQueues), and the qualified name is `<prefix>:<queue>`.
      const ledger = createBacklogLedger(
        (await appendQueue.backend.client) as unknown as RedisConnection,
        appendQueue.qualifiedName.slice(0, -`:${QUEUES.append}`.length),
      );
      result.backlogSettled = (await ledger.reconcile()).settled;
      log.info(result, 'maintenance sweep done');
      return result;
    },
  });
}

function ageMs(option: unknown, fallbackSeconds: number): number {
  const age =
    typeof option === 'object' && option !== null && 'age' in option
      ? Number(option.age)
      : fallbackSeconds;
  return age * 1000;
}
