import { JobFailedError, JobTimeoutError } from '../src/core/errors.js';
import type { CanaryJob } from './job-contracts.js';
import type { MemoryQueues } from './memory-queues.js';
import { JOBS, QUEUES } from './names.js';
import type { RedisGuard } from './redis-guard.js';

/** Default bound of {@link runCanary}, ms (`/readyz`'s `readyTimeoutMs` default). */
export const DEFAULT_CANARY_TIMEOUT_MS = 2_000;

/**
 * The readiness canary (docs/architecture.md, "Observability"): enqueues a `canary` job on
 * `memory-cleanup` and polls (5 ms doubling to 100 ms) until a worker has run it, which proves a
 * worker consumes the queues end to end. The canary leaves nothing behind: a completed one is
 * removed on completion, and one that failed or that no worker took within `timeoutMs` is
 * removed before this rejects.
 * @param options `timeoutMs`: longest wait, ms; default {@link DEFAULT_CANARY_TIMEOUT_MS}.
 * @returns The round trip, ms.
 * @throws JobFailedError when the canary failed.
 * @throws JobTimeoutError when no worker completed it within `timeoutMs`.
 * @throws RedisUnavailableError when Redis does not answer (see `RedisGuard`).
 */
export async function runCanary(
  queues: MemoryQueues,
  guard: RedisGuard,
  options: { timeoutMs?: number } = {},
): Promise<number> {
  const started = Date.now();
  const timeoutMs = options.timeoutMs ?? DEFAULT_CANARY_TIMEOUT_MS;
  const data: CanaryJob = { sent_at: started };
  // removeOnComplete: true removes only this job (a bound such as { age: 60 } would trim every
  // completed memory-cleanup job older than that when a canary completes). A failed canary keeps
  // the queue's default retention until the removal below.
  const job = await guard('canary', () =>
    queues.cleanup.add(JOBS.canary, data, { attempts: 1, removeOnComplete: true }),
  );
  const jobId = job.id!;
  const details = { queue: QUEUES.cleanup, job_id: jobId };
  let completed = false;
  try {
    for (let delayMs = 5; ; delayMs = Math.min(100, delayMs * 2)) {
      const state = await guard('canary', () => queues.cleanup.getJobState(jobId));
      // Completed canaries are removed at once, so `unknown` means a worker completed it.
      if (state === 'completed' || state === 'unknown') {
        completed = true;
        return Date.now() - started;
      }
      if (state === 'failed') {
        const found = await guard('canary', () => queues.cleanup.getJob(jobId));
        const reason = found?.failedReason ?? 'unknown reason';
        throw new JobFailedError(`canary: ${QUEUES.cleanup} job ${jobId} failed: ${reason}`, {
          details: { ...details, failed_reason: reason },
        });
      }
      const left = started + timeoutMs - Date.now();
      if (left <= 0) {
        throw new JobTimeoutError(
          `canary: no worker ran ${QUEUES.cleanup} job ${jobId} within ${timeoutMs} ms (state: ${state}); is a worker (memq start or memq work) running?`,
          { details: { ...details, timeout_ms: timeoutMs, state } },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(delayMs, left)));
    }
  } finally {
    // A canary no worker took must not wait for one forever (memq serve alone), nor a failed one
    // stay. BullMQ refuses to remove a job a worker holds (returns 0): that one completes within
    // the processor's run and removeOnComplete takes it.
    if (!completed) {
      await guard('canary', () => queues.cleanup.remove(jobId)).catch(() => undefined);
    }
  }
}
