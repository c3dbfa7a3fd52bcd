import { DelayedError, UnrecoverableError, type Job, type Processor } from 'bullmq';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { AppError, LockBusyError } from '../src/core/errors.js';
import type { JobOutcome, MemqMetrics } from '../src/metrics/metrics.js';
import { formatIssues } from '../queues/job-contracts.js';
import type { QueueName } from '../queues/names.js';
import { memoryId, type MemoryRef } from '../src/redis/keys.js';

/** What a wrapped handler receives besides the parsed payload. */
export interface JobContext {
  /** The BullMQ job (id, attemptsMade, ...). */
  readonly job: Job;
  /** Fires when the worker cancels the job (shutdown or `cancelJob`). */
  readonly signal: AbortSignal | undefined;
  /** Child logger bound to queue and job id. Never log message content. */
  readonly log: Logger;
}

/** Options of {@link wrapProcessor}. */
export interface WrapOptions<S extends z.ZodType, R> {
  /** Queue the processor consumes (for messages and logs). */
  readonly queue: QueueName;
  /** Payload contract; a payload that fails it fails the job without retries. */
  readonly schema: S;
  /** Base logger. */
  readonly log: Logger;
  /** Instruments: `memq_jobs_total`, `memq_job_duration_seconds`, `memq_job_wait_seconds`. */
  readonly metrics: MemqMetrics;
  /** The job's work, on a trusted payload. */
  readonly run: (data: z.output<S>, context: JobContext) => Promise<R>;
}

/**
 * How long a job that found its memory's instance lock held by another holder waits before it
 * tries again, ms, jittered to 50-150 %. Such a job is moved back to delayed without spending an
 * attempt: the holder releases when done, or (if its worker died) the lock expires after its TTL
 * (`locking.*_ttl`), so waiting always ends, and contention never dead-letters a job.
 */
export const LOCK_BUSY_RECHECK_MS = 2_000;

/**
 * The one wrapper every processor goes through: parse the payload (invalid -> BullMQ
 * `UnrecoverableError`, nothing touched), run, and classify errors: a non-retryable
 * {@link AppError} becomes `UnrecoverableError` (no further attempts, kept as a dead letter);
 * {@link LockBusyError} moves the job back to delayed for {@link LOCK_BUSY_RECHECK_MS} without
 * spending an attempt; anything else is rethrown for BullMQ's retry with backoff. Records every attempt's outcome
 * ({@link JobOutcome}) and run time in `options.metrics`, and the queue wait of first attempts
 * (`processedOn - (timestamp + delay)`; a retry's wait is mostly its backoff, so it is not
 * recorded).
 */
export function wrapProcessor<S extends z.ZodType, R>(options: WrapOptions<S, R>): Processor {
  const { metrics, queue } = options;
  return async (job: Job, token?: string, signal?: AbortSignal) => {
    const started = performance.now();
    if (job.attemptsStarted <= 1) {
      const readyAt = job.timestamp + (job.delay ?? 0);
      metrics.jobWait.observe(
        { queue },
        Math.max(0, (job.processedOn ?? Date.now()) - readyAt) / 1000,
      );
    }
    const record = (outcome: JobOutcome) => {
      metrics.jobs.inc({ queue, outcome });
      metrics.jobDuration.observe({ queue, outcome }, (performance.now() - started) / 1000);
    };
    const log = options.log.child({
      queue: options.queue,
      jobId: job.id,
      attempt: job.attemptsMade + 1,
    });
    const parsed = options.schema.safeParse(job.data);
    if (!parsed.success) {
      record('invalid');
      const reason = formatIssues(
        `${options.queue} job ${job.id ?? '?'}: invalid payload`,
        parsed.error,
      );
      log.warn(
        { paths: parsed.error.issues.map((i) => i.path.join('.')) },
        'invalid job payload; failing without retry',
      );
      throw new UnrecoverableError(reason);
    }
    const ref = (parsed.data as { ref?: MemoryRef } | undefined)?.ref;
    const jobLog = ref ? log.child({ memory: memoryId(ref) }) : log;
    try {
      const result = await options.run(parsed.data, { job, signal, log: jobLog });
      record('completed');
      return result;
    } catch (error) {
      if (error instanceof LockBusyError && token !== undefined) {
        record('retry');
        jobLog.info('instance lock held by another holder; trying again later');
        const delayMs = Math.round(LOCK_BUSY_RECHECK_MS * (0.5 + Math.random()));
        await job.moveToDelayed(Date.now() + delayMs, token);
        throw new DelayedError();
      }
      if (error instanceof AppError && !error.retryable) {
        record('failed');
        jobLog.warn({ code: error.code }, 'job failed permanently');
        throw new UnrecoverableError(`${error.code}: ${error.message}`);
      }
      record(job.attemptsMade + 1 < (job.opts.attempts ?? 1) ? 'retry' : 'failed');
      jobLog.warn(
        {
          err:
            error instanceof Error ? { name: error.name, message: error.message } : String(error),
        },
        'job failed; will retry if attempts remain',
      );
      throw error;
    }
  };
}
