import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackpressureError } from '../../src/core/errors.js';
import {
  createBackpressureGate,
  RETRY_AFTER_MAX_MS,
  RETRY_AFTER_MIN_MS,
  type BackpressureGate,
  type BackpressureGateOptions,
} from '../../queues/backpressure.js';
import { queueOptions } from '../../queues/job-options.js';
import { JOBS, QUEUES } from '../../queues/names.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const HIGH_WATER_JOBS = 50;
const LOW_WATER_JOBS = 20;

describe('backpressure gate on a real BullMQ queue (high 50, low 20)', () => {
  let ns: RedisNamespace;
  let queue: Queue;
  let gate: BackpressureGate | undefined;
  let worker: Worker | undefined;

  const openGate = (options: Pick<BackpressureGateOptions, 'policy' | 'waitTimeoutMs'>) => {
    gate = createBackpressureGate({
      queueName: QUEUES.append,
      highWaterJobs: HIGH_WATER_JOBS,
      lowWaterJobs: LOW_WATER_JOBS,
      // Every call counts afresh, so each assertion sees the queue as it is now.
      cacheMs: 0,
      pollMs: 20,
      countBacklog: async () => {
        const counts = await queue.getJobCounts('waiting', 'delayed', 'prioritized');
        return (counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0);
      },
      ...options,
    });
    return gate;
  };
  const addJobs = async (count: number, options: { delay?: number; priority?: number } = {}) => {
    const jobs = await queue.addBulk(
      Array.from({ length: count }, (_, i) => ({ name: JOBS.append, data: { i }, opts: options })),
    );
    return jobs.map((job) => job.id!);
  };

  beforeEach(() => {
    ns = createRedisNamespace();
    queue = new Queue(QUEUES.append, {
      connection: ns.connect({ producer: true }),
      ...queueOptions(ns.queuePrefix),
    });
  });
  afterEach(async () => {
    gate?.close();
    gate = undefined;
    await worker?.close();
    worker = undefined;
    await queue.close();
    await ns.cleanup();
  });

  it('rejects once waiting + delayed + prioritized jobs reach the high mark and admits again only at the low mark', async () => {
    const g = openGate({ policy: 'reject' });
    const waiting = await addJobs(40);
    const delayed = await addJobs(5, { delay: 60_000 });
    await addJobs(4, { priority: 1 });
    expect(await g.backlog()).toBe(49);
    await g.admit();

    await addJobs(1, { priority: 2 });
    const error = await g.admit().then(
      () => expect.fail('admit() resolved at the high-water mark'),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BackpressureError);
    expect(error).toMatchObject({
      code: 'BACKPRESSURE',
      details: { queue: 'memory-append', backlogJobs: 50, highWaterJobs: 50, lowWaterJobs: 20 },
    });
    const { message, retryAfterMs } = error as BackpressureError;
    expect(message).toMatch(
      /^memory-append backlog 50 jobs is at or above the high-water mark 50; retry after \d+ ms$/,
    );
    expect(retryAfterMs).toBeGreaterThanOrEqual(RETRY_AFTER_MIN_MS);
    expect(retryAfterMs).toBeLessThanOrEqual(RETRY_AFTER_MAX_MS);

    // Down to 21 jobs: below the high mark but not yet at the low mark, so still closed.
    for (const id of [...delayed, ...waiting.slice(0, 24)]) await queue.remove(id);
    expect(await g.backlog()).toBe(21);
    await expect(g.admit()).rejects.toThrow(
      'memory-append backlog 21 jobs has not drained to the low-water mark 20 since reaching the high-water mark 50',
    );

    await queue.remove(waiting[24]!);
    await g.admit();
    // Open again: up to the high mark, producers go through.
    await addJobs(29);
    expect(await g.backlog()).toBe(49);
    await g.admit();
  });

  it('under policy wait, admits once a worker drains the backlog to the low mark', async () => {
    const g = openGate({ policy: 'wait', waitTimeoutMs: 30_000 });
    await addJobs(60);
    let admitted = false;
    const admit = g.admit().then(() => (admitted = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(admitted).toBe(false);

    worker = new Worker(QUEUES.append, () => Promise.resolve(), {
      connection: ns.connect(),
      prefix: ns.queuePrefix,
      concurrency: 4,
    });
    await admit;
    expect(await g.backlog()).toBeLessThanOrEqual(LOW_WATER_JOBS);
  });

  it('under policy wait, throws BackpressureError when nothing drains within waitTimeoutMs', async () => {
    const g = openGate({ policy: 'wait', waitTimeoutMs: 300 });
    await addJobs(60);
    await expect(g.admit()).rejects.toThrow(
      /^memory-append backlog 60 jobs did not drain to the low-water mark 20 within 300 ms \(high-water mark 50\); retry after \d+ ms$/,
    );
  });

  it('rethrows the connection error when Redis is unreachable instead of admitting', async () => {
    // One server's connection, also when the suite runs on a cluster: BullMQ waits for a
    // disconnected ioredis Cluster to become ready again instead of failing (MemoryClient's
    // deadline covers that case; this test is about the gate rethrowing).
    const connection = new Redis(ns.url, { maxRetriesPerRequest: 1 });
    const lost = new Queue(QUEUES.append, { connection, ...queueOptions(ns.queuePrefix) });
    gate = createBackpressureGate({
      queueName: QUEUES.append,
      highWaterJobs: HIGH_WATER_JOBS,
      lowWaterJobs: LOW_WATER_JOBS,
      policy: 'reject',
      countBacklog: async () => {
        const counts = await lost.getJobCounts('waiting', 'delayed', 'prioritized');
        return (counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0);
      },
    });
    try {
      connection.disconnect();
      await expect(gate.admit()).rejects.toThrow(/Connection is closed/);
    } finally {
      await lost.close();
    }
  });
});
