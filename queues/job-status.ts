import type { Queue } from 'bullmq';
import { JobFailedError, JobTimeoutError, PayloadError } from '../src/core/errors.js';
import type { MemoryRef } from '../src/core/memory-key.js';
import type { AppendEntryResult, AppendJobResult } from './job-contracts.js';
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
  /**
   * Append jobs: the append's index in the job's entries (see {@link AppendEntryRef}); `waitFor`
   * then answers with that entry's result.
   */
  readonly entry?: number;
}

/** An append's place in its job: what `AppendReceipt` carries. */
export interface AppendEntryRef {
  /** The append job's id; undefined when nothing was enqueued. */
  readonly jobId: string | undefined;
  /** The append's index in the job's entries; undefined when nothing was enqueued. */
  readonly entry: number | undefined;
}

/** The result of entry `entry` of a finished append job, or undefined when it has none. */
function entryResult(value: unknown, entry: number): AppendEntryResult | undefined {
  const result = value as AppendJobResult | undefined;
  if (!result || typeof result !== 'object') return undefined;
  if (Array.isArray(result.entries)) {
    const entries: readonly AppendEntryResult[] = result.entries;
    return entries[entry];
  }
  if (entry !== 0) return undefined;
  return {
    added: result.added,
    duplicates: result.duplicates,
    ...(result.erased !== undefined ? { erased: result.erased } : {}),
  };
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

/**
 * The project a job's data belongs to: `ref.project`, or for an append job (`{ entries }`) the
 * project every entry's `ref` names; undefined when the data names none, or when its entries
 * name different projects (a job the producer never makes: shown to no project).
 */
function projectOf(data: unknown): unknown {
  const job = data as { ref?: { project?: unknown }; entries?: unknown } | undefined;
  if (Array.isArray(job?.entries)) {
    const projects = new Set(
      (job.entries as unknown[]).map(
        (entry) => (entry as { ref?: { project?: unknown } } | null)?.ref?.project,
      ),
    );
    return projects.size === 1 ? [...projects][0] : undefined;
  }
  return job?.ref?.project;
}

/** Default bound of {@link JobStatus.waitFor}, ms. */
export const DEFAULT_WAIT_TIMEOUT_MS = 30_000;

/** Job lookups of the producer side: waiting for a job, and reading one. */
export interface JobStatus {
  /**
   * Waits until a job has finished and returns its result. A bare job id means an append job
   * (its whole result); an {@link AppendEntryRef} (an append's receipt) means that append's own
   * entry of the job: `entries[entry]` of a job of several entries, else the job's result; for a
   * job that failed, an entry it had committed still resolves (from the job's progress,
   * `AppendJobProgress`). Polls the job's state, 5 ms doubling to 100 ms.
   * @param options `timeoutMs`: longest wait, ms; default {@link DEFAULT_WAIT_TIMEOUT_MS}.
   * @throws JobFailedError when the job failed (the message carries its failed reason).
   * @throws JobTimeoutError when it did not finish within `timeoutMs` (the job goes on).
   * @throws PayloadError when no such job exists (unknown id, or already removed by retention),
   *   when an append receipt enqueued nothing (`jobId` undefined), or when the job completed
   *   without the receipt's entry (an index that is not one of the job's).
   * @throws RedisUnavailableError when Redis does not answer (see `RedisGuard`).
   */
  waitFor<R = AppendJobResult>(
    job: string | JobReceipt | AppendEntryRef,
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
    async waitFor<R>(
      job: string | JobReceipt | AppendEntryRef,
      options: { timeoutMs?: number } = {},
    ): Promise<R> {
      const queueName = typeof job === 'string' || !('queue' in job) ? QUEUES.append : job.queue;
      const jobId = typeof job === 'string' ? job : job.jobId;
      const entry = typeof job === 'object' && 'entry' in job ? job.entry : undefined;
      if (jobId === undefined) {
        throw new PayloadError(
          'waitFor: this append enqueued nothing (every message was dropped by the privacy policy or marked do_not_persist): there is no job to wait for',
        );
      }
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
          if (state === 'completed' && found) {
            if (entry === undefined) return found.returnvalue as R;
            const own = entryResult(found.returnvalue, entry);
            if (own) return own as R;
            throw new PayloadError(
              `waitFor: ${queueName} job ${jobId} completed without an entry ${entry} (the receipt's entry index is not one of this job's)`,
              { details: { queue: queueName, job_id: jobId, entry } },
            );
          }
          // A failed job may have committed this entry before another entry failed.
          const progress = found?.progress as { entries?: unknown } | undefined;
          const committed =
            entry !== undefined && Array.isArray(progress?.entries)
              ? (progress.entries[entry] as AppendEntryResult | null | undefined)
              : undefined;
          if (committed) return committed as R;
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
      if (!found || projectOf(found.data) !== project) return undefined;
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
