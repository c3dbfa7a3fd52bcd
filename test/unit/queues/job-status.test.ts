import type { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { JobFailedError, JobTimeoutError, PayloadError } from '../../../src/core/errors.js';
import type { RedisConnection } from '../../../src/redis/connection.js';
import { createJobStatus } from '../../../queues/job-status.js';
import type { MemoryQueues } from '../../../queues/memory-queues.js';
import { runCanary } from '../../../queues/readiness.js';
import { createRedisGuard } from '../../../queues/redis-guard.js';

/**
 * One fake queue (served for every queue name) whose jobs are in the states given; no Redis.
 * `removed` lists the ids `remove` was called with.
 */
function queuesWith(jobs: Record<string, { state: string; failedReason?: string }>) {
  const removed: string[] = [];
  const queue = {
    getJobState: (id: string) => Promise.resolve(jobs[id]?.state ?? 'unknown'),
    getJob: (id: string) =>
      Promise.resolve(jobs[id] ? { failedReason: jobs[id].failedReason } : undefined),
    add: (name: string) => {
      jobs[`${name}-1`] ??= { state: 'waiting' };
      return Promise.resolve({ id: `${name}-1` });
    },
    remove: (id: string) => {
      removed.push(id);
      return Promise.resolve(1);
    },
  } as unknown as Queue;
  const queues = {
    append: queue,
    cleanup: queue,
    flush: queue,
    tokenCount: queue,
    byName: () => queue,
  } as unknown as MemoryQueues;
  return { queues, removed };
}

const guard = createRedisGuard({ status: 'ready' } as unknown as RedisConnection, 5_000);

describe('waitFor', () => {
  it('rejects with JobTimeoutError naming the job when it does not finish in time', async () => {
    const { queues } = queuesWith({ j1: { state: 'active' } });
    const error = await createJobStatus(queues, guard)
      .waitFor(
        { queue: 'memory-flush', jobId: 'j1', ref: { project: 'p', resource: 'r', key: 'k' } },
        { timeoutMs: 30 },
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobTimeoutError);
    expect(error).toMatchObject({
      code: 'WAIT_TIMEOUT',
      details: { queue: 'memory-flush', job_id: 'j1', timeout_ms: 30, state: 'active' },
    });
  });

  it('rejects with JobFailedError carrying the failed reason', async () => {
    const { queues } = queuesWith({ j2: { state: 'failed', failedReason: 'PAYLOAD_INVALID: x' } });
    const error = await createJobStatus(queues, guard)
      .waitFor('j2')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobFailedError);
    expect(error).not.toBeInstanceOf(JobTimeoutError);
    expect((error as Error).message).toBe('memory-append job j2 failed: PAYLOAD_INVALID: x');
  });

  it('rejects with PayloadError for an unknown job', async () => {
    const { queues } = queuesWith({});
    await expect(createJobStatus(queues, guard).waitFor('nope')).rejects.toBeInstanceOf(
      PayloadError,
    );
  });
});

describe('runCanary', () => {
  it('rejects with JobTimeoutError when no worker takes the canary, and removes it', async () => {
    const { queues, removed } = queuesWith({});
    const error = await runCanary(queues, guard, { timeoutMs: 30 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobTimeoutError);
    expect(error).toMatchObject({ details: { queue: 'memory-cleanup', job_id: 'canary-1' } });
    expect(removed).toEqual(['canary-1']);
  });

  it('rejects with JobFailedError when the canary failed, and removes it', async () => {
    const { queues, removed } = queuesWith({
      'canary-1': { state: 'failed', failedReason: 'boom' },
    });
    const error = await runCanary(queues, guard).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobFailedError);
    expect((error as Error).message).toContain('failed: boom');
    expect(removed).toEqual(['canary-1']);
  });
});
