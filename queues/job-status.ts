import type { Queue } from 'bullmq';
import { JobFailedError, JobTimeoutError, PayloadError } from '../src/core/errors.js';
import type { MemoryRef } from '../src/core/memory-key.js';
import type { AppendJobResult } from './job-contracts.js';
import type { MemoryQueues } from './memory-queues.js';
import { QUEUES, type QueueName } from './names.js';
import type { RedisGuard } from './redis-guard.js';

/** Where an enqueued job can be found: pass it to {@link JobStatus.waitFor}. */
export interface JobReceipt {
  /** The queue the job is in. */
  readonly queue: QueueName;
  /** The BullMQ job id. */
  readonly jobId: string;
  /** The instance the job acts on. */
  readonly ref: MemoryRef;
}

/** A job as {@link JobStatus.job} reports it (what `GET /v1/jobs/:queue/:id` returns). */
export interface JobInfo {
  /** Queue name. */
  readonly queue: QueueName;
  /** BullMQ job id. */
  readonly id: string;
  /** Job name, e.g. `append`, `flush`, `clear`. */
  readonly name: string;
  /** BullMQ state: `waiting`, `active`, `delayed`, `prioritized`, `completed`, `failed`, ... */
  readonly state: string;
  /** Attempts made so far (retries included). */
  readonly attemptsMade: number;
  /** Progress the processor reported (number or object), BullMQ's `job.progress`. */
  readonly progress: unknown;
  /** When the job was added, ms since epoch. */
  readonly createdAt: number;
  /** When the last attempt started, ms since epoch. */
  readonly processedAt?: number;
  /** When the job finished, ms since epoch. */
  readonly finishedAt?: number;
  /** The processor's result, for completed jobs (e.g. `{ added, duplicates }` for an append). */
  readonly result?: unknown;
  /** Why the job failed, for failed jobs (never message content). */
  readonly failedReason?: string;
}

/** Default bound of {@link JobStatus.waitFor}, ms. */
export const DEFAULT_WAIT_TIMEOUT_MS = 30_000;

/** Job lookups of the producer side: waiting for a job, and reading one. */
export interface JobStatus {
  /**
   * Waits until a job has finished and returns its result. A bare job id means an append job.
   * Polls the job's state, 5 ms doubling to 100 ms.
   * @param options `timeoutMs`: longest wait, ms; default {@link DEFAULT_WAIT_TIMEOUT_MS}.
   * @throws JobFailedError when the job failed (the message carries its failed reason).
   * @throws JobTimeoutError when it did not finish within `timeoutMs` (the job goes on).
   * @throws PayloadError when no such job exists (unknown id, or already removed by retention).
   * @throws RedisUnavailableError when Redis does not answer (see `RedisGuard`).
   */
  waitFor<R = AppendJobResult>(
    job: string | JobReceipt,
    options?: { timeoutMs?: number },
  ): Promise<R>;
  /**
   * The job `jobId` of `queue` if it belongs to `project`, else undefined (also when there is no
   * such job), so callers cannot probe other tenants' job ids.
   * @throws RedisUnavailableError when Redis does not answer.
   */
  job(project: string, queue: QueueName, jobId: string): Promise<JobInfo | undefined>;
}

/** Creates {@link JobStatus} on `queues`, every Redis call through `guard`. */
export function createJobStatus(queues: MemoryQueues, guard: RedisGuard): JobStatus {
  return {
    async waitFor<R>(job: string | JobReceipt, options: { timeoutMs?: number } = {}): Promise<R> {
      const queueName = typeof job === 'string' ? QUEUES.append : job.queue;
      const jobId = typeof job === 'string' ? job : job.jobId;
      const queue: Queue = queues.byName(queueName);
      const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS;
      const deadline = Date.now() + timeoutMs;
      // Polls the job's state rather than listening to QueueEvents: a listener that starts
      // reading the event stream after the job finished misses the event.
      for (let delayMs = 5; ; delayMs = Math.min(100, delayMs * 2)) {
        const state = await guard('waitFor', () => queue.getJobState(jobId));
        if (state === 'unknown') {
          throw new PayloadError(
            `waitFor: no ${queueName} job with id ${JSON.stringify(jobId)} (unknown id, or removed after completion by removeOnComplete)`,
          );
        }
        if (state === 'completed' || state === 'failed') {
          const found = await guard('waitFor', () => queue.getJob(jobId));
          if (state === 'completed' && found) return found.returnvalue as R;
          const reason = found?.failedReason ?? 'removed after failing';
          throw new JobFailedError(`${queueName} job ${jobId} failed: ${reason}`, {
            details: { queue: queueName, job_id: jobId, failed_reason: reason },
          });
        }
        if (Date.now() >= deadline) {
          throw new JobTimeoutError(
            `waitFor: ${queueName} job ${jobId} did not finish within ${timeoutMs} ms (state: ${state})`,
            { details: { queue: queueName, job_id: jobId, timeout_ms: timeoutMs, state } },
          );
        }
        await new Promise((resolve) =>
          setTimeout(resolve, Math.min(delayMs, deadline - Date.now())),
        );
      }
    },

    async job(project, queueName, jobId) {
      const found = await guard('job', () => queues.byName(queueName).getJob(jobId));
      const data = found?.data as { ref?: { project?: unknown } } | undefined;
      if (!found || data?.ref?.project !== project) return undefined;
      const state = await found.getState();
      return {
        queue: queueName,
        id: jobId,
        name: found.name,
        state,
        attemptsMade: found.attemptsMade,
        progress: found.progress,
        createdAt: found.timestamp,
        ...(found.processedOn !== undefined ? { processedAt: found.processedOn } : {}),
        ...(found.finishedOn !== undefined ? { finishedAt: found.finishedOn } : {}),
        ...(state === 'completed' ? { result: found.returnvalue as unknown } : {}),
        ...(state === 'failed' ? { failedReason: found.failedReason } : {}),
      };
    },
  };
}
