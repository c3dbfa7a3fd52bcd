import type { DefaultJobOptions, QueueOptions } from 'bullmq';

/**
 * Default job options for every memq queue (docs/architecture.md, "Jobs"):
 * - 5 attempts with exponential backoff from 1 s with 50% jitter (1, 2, 4, 8 s nominal);
 * - completed jobs kept 1 h / at most 1,000 (enough for `waitFor` and the dashboard);
 * - failed jobs kept 7 days / at most 10,000: the dead-letter set, retryable from Bull Board.
 *   The erasure tombstone (`ERASURE_TOMBSTONE_TTL_SECONDS` in `src/store/memory-store.ts`, 8 days)
 *   outlives them, so a dead letter retried after a delete or clear of its memory is refused.
 */
export const DEFAULT_JOB_OPTIONS: DefaultJobOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 1000, jitter: 0.5 },
  removeOnComplete: { age: 3600, count: 1000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
};

/**
 * Bound on each queue's event stream: about 5 events per job, so 10,000 (BullMQ's own default)
 * lets an event listener (the replay, Bull Board) lag ~2,000 jobs before events are trimmed.
 */
export const EVENTS_MAX_LEN = 10_000;

/** Queue options shared by producers: prefix, default job options, bounded event stream. */
export function queueOptions(prefix: string): Omit<QueueOptions, 'connection'> {
  return {
    prefix,
    defaultJobOptions: DEFAULT_JOB_OPTIONS,
    streams: { events: { maxLen: EVENTS_MAX_LEN } },
  };
}
