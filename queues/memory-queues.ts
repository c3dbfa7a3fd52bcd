import { Queue } from 'bullmq';
import type { RedisConnection } from '../src/redis/connection.js';
import type { FlushStrategy } from '../src/core/memory-resource.js';
import { memoryId, type MemoryRef } from '../src/redis/keys.js';
import type { FlushJob, TokenCountJob } from './job-contracts.js';
import { queueOptions } from './job-options.js';
import { JOBS, QUEUES, type QueueName } from './names.js';

/** Handles on memq's four queues plus the deduplicated follow-up enqueues. */
export interface MemoryQueues {
  /** `memory-append`. */
  readonly append: Queue;
  /** `memory-token-count`. */
  readonly tokenCount: Queue;
  /** `memory-flush`. */
  readonly flush: Queue;
  /** `memory-cleanup` (clear, delete, write, maintenance). */
  readonly cleanup: Queue;
  /** The queue called `name`. */
  byName(name: QueueName): Queue;
  /**
   * Enqueues a token-count job for `ref`, deduplicated per instance with `keepLastIfActive`: at
   * most one pending job per instance, never two running at once (BullMQ deduplication guide).
   * The job is delayed by `tokenCountDelayMs` ({@link DEFAULT_TOKEN_COUNT_DELAY_MS}) so a burst of
   * appends to one memory is counted by one job.
   */
  enqueueTokenCount(ref: MemoryRef): Promise<void>;
  /**
   * Enqueues a flush of `ref`. Real flushes are deduplicated per instance (while one is waiting
   * or running, another add returns that job's id); dry runs are never deduplicated. `trigger`
   * marks a flush the trigger enqueued (see `FlushJobSchema`).
   * @returns The job id to wait for.
   */
  enqueueFlush(
    ref: MemoryRef,
    options?: { strategy?: FlushStrategy; dryRun?: boolean; trigger?: boolean },
  ): Promise<string>;
  /**
   * Jobs per queue and state (`waiting`, `active`, `delayed`, `prioritized`, `failed`): the
   * source of the `memq_queue_jobs` gauge, read at scrape time.
   */
  depths(): Promise<Array<{ queue: QueueName; state: string; jobs: number }>>;
  /** Closes every queue (not the connection). Idempotent. */
  close(): Promise<void>;
}

/**
 * Default delay of token-count jobs, ms: appends that arrive while a memory's count is pending
 * join it instead of costing a job each. Measured with `npm run bench -- --quick` (memq
 * single-message appends, 50 memories, ~40 appends per memory per second): Node CPU per append
 * 764-871 us with no delay, 682 us at 50 ms, 554-567 us at 100 ms, 494-529 us at 250 ms
 * (docs/decisions.md, "Jobs and pipeline"). Exact counts, and the flush trigger they feed, come
 * this much later; until then the append-time estimates stand in.
 */
export const DEFAULT_TOKEN_COUNT_DELAY_MS = 250;

/**
 * Deduplication id of the flushes of `ref`: `<mid>` for automatic (trigger) flushes,
 * `<mid>#requested` for requested ones, so a pending automatic flush never swallows a user's
 * flush (its strategy, and its "always plan" semantics). `#` is outside every memory id: keys are
 * `[A-Za-z0-9_:\-@.]` (`MEMORY_KEY_PATTERN`) and `memoryId` joins its parts with `/` and
 * percent-encodes `%{}/`, so no key can end in the suffix (a `:` suffix could: key `x:requested`).
 */
export function flushDeduplicationId(ref: MemoryRef, requested: boolean): string {
  return requested ? `${memoryId(ref)}#requested` : memoryId(ref);
}

/** Options of {@link createMemoryQueues}. */
export interface MemoryQueuesOptions {
  /**
   * Delay of token-count jobs, ms, >= 0; default {@link DEFAULT_TOKEN_COUNT_DELAY_MS}. Not an
   * environment variable: only the token-count benchmark changes it (`npm run bench:tokens`
   * counts with no delay).
   */
  readonly tokenCountDelayMs?: number;
}

/** Creates {@link MemoryQueues} on `connection` (owned by the caller). */
export function createMemoryQueues(
  connection: RedisConnection,
  prefix: string,
  options: MemoryQueuesOptions = {},
): MemoryQueues {
  const tokenCountDelayMs = options.tokenCountDelayMs ?? DEFAULT_TOKEN_COUNT_DELAY_MS;
  const make = (name: QueueName) => {
    const queue = new Queue(name, { connection, ...queueOptions(prefix) });
    // Connection errors reach callers as failed (or, in MemoryClient, time-bounded) operations;
    // without a listener BullMQ prints each reconnect attempt's error to the console.
    queue.on('error', () => undefined);
    return queue;
  };
  const queues = {
    [QUEUES.append]: make(QUEUES.append),
    [QUEUES.tokenCount]: make(QUEUES.tokenCount),
    [QUEUES.flush]: make(QUEUES.flush),
    [QUEUES.cleanup]: make(QUEUES.cleanup),
  } satisfies Record<QueueName, Queue>;
  let closing: Promise<void> | undefined;
  return {
    append: queues[QUEUES.append],
    tokenCount: queues[QUEUES.tokenCount],
    flush: queues[QUEUES.flush],
    cleanup: queues[QUEUES.cleanup],
    byName: (name) => queues[name],
    async depths() {
      const states = ['waiting', 'active', 'delayed', 'prioritized', 'failed'] as const;
      const rows = await Promise.all(
        Object.values(QUEUES).map(async (queue) => {
          const counts = await queues[queue].getJobCounts(...states);
          return states.map((state) => ({ queue, state, jobs: counts[state] ?? 0 }));
        }),
      );
      return rows.flat();
    },
    async enqueueTokenCount(ref) {
      const data: TokenCountJob = { ref };
      await queues[QUEUES.tokenCount].add(JOBS.tokenCount, data, {
        deduplication: { id: memoryId(ref), keepLastIfActive: true },
        ...(tokenCountDelayMs > 0 ? { delay: tokenCountDelayMs } : {}),
      });
    },
    async enqueueFlush(ref, options = {}) {
      const data: FlushJob = {
        ref,
        dry_run: options.dryRun ?? false,
        trigger: options.trigger ?? false,
        ...(options.strategy ? { strategy: options.strategy } : {}),
      };
      const job = await queues[QUEUES.flush].add(
        JOBS.flush,
        data,
        data.dry_run ? {} : { deduplication: { id: flushDeduplicationId(ref, !data.trigger) } },
      );
      return job.id!;
    },
    close() {
      closing ??= Promise.all(Object.values(queues).map((q) => q.close())).then(() => undefined);
      return closing;
    },
  };
}
