import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackpressureError } from '../../src/core/errors.js';
import { createBacklogLedger, type BacklogLedger } from '../../queues/backlog-ledger.js';
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

const HIGH_WATER_MESSAGES = 50;
const LOW_WATER_MESSAGES = 20;

/**
 * The gate over the backlog ledger's message count, as the producer wires it: jobs are added to
 * a real BullMQ queue and recorded with the messages they carry, as group commit makes them (one
 * job, many messages), so the marks are reached with a handful of jobs.
 */
describe('backpressure gate on a real BullMQ queue and the backlog ledger (high 50, low 20 messages)', () => {
  let ns: RedisNamespace;
  let queue: Queue;
  let ledger: BacklogLedger;
  let gate: BackpressureGate | undefined;
  let worker: Worker | undefined;

  const openGate = (options: Pick<BackpressureGateOptions, 'policy' | 'waitTimeoutMs'>) => {
    gate = createBackpressureGate({
      queueName: QUEUES.append,
      highWaterMessages: HIGH_WATER_MESSAGES,
      lowWaterMessages: LOW_WATER_MESSAGES,
      // Every call counts afresh, so each assertion sees the backlog as it is now.
      cacheMs: 0,
      pollMs: 20,
      countBacklog: async () => (await ledger.backlog()).messages,
      ...options,
    });
    return gate;
  };
  /** Adds one append job per entry of `sizes`, recorded with that many messages; returns ids. */
  const addJobs = async (
    sizes: readonly number[],
    options: { delay?: number; priority?: number } = {},
  ) => {
    const ids: string[] = [];
    for (const messages of sizes) {
      const job = await queue.add(JOBS.append, { messages }, options);
      await ledger.record(QUEUES.append, job.id!, 'acme', { messages, bytes: 100 });
      ids.push(job.id!);
    }
    return ids;
  };
  const jobCount = async () => {
    const counts = await queue.getJobCounts('waiting', 'delayed', 'prioritized');
    return (counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0);
  };

  beforeEach(() => {
    ns = createRedisNamespace();
    const producer = ns.connect({ producer: true });
    queue = new Queue(QUEUES.append, { connection: producer, ...queueOptions(ns.queuePrefix) });
    ledger = createBacklogLedger(producer, ns.queuePrefix);
  });
  afterEach(async () => {
    gate?.close();
    gate = undefined;
    await worker?.close();
    worker = undefined;
    await queue.close();
    await ns.cleanup();
  });

  it('rejects once the messages of waiting + delayed + prioritized jobs reach the high mark, and admits again only at the low mark', async () => {
    const g = openGate({ policy: 'reject' });
    await addJobs([20]);
    const [delayed] = await addJobs([20], { delay: 60_000 });
    const [prioritized] = await addJobs([9], { priority: 1 });
    expect(await g.backlog()).toBe(49);
    await g.admit();

    const [last] = await addJobs([1], { priority: 2 });
    // Four jobs: counted in jobs, this backlog would be far below the mark.
    expect(await jobCount()).toBe(4);
    const error = await g.admit().then(
      () => expect.fail('admit() resolved at the high-water mark'),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BackpressureError);
    expect(error).toMatchObject({
      code: 'BACKPRESSURE',
      details: { queue: 'memory-append', bound: 'messages', usage: 50, limit: 50, low_water: 20 },
    });
    const { message, retryAfterMs } = error as BackpressureError;
    expect(message).toMatch(
      /^memory-append: backlog 50 messages is at or above the high-water mark 50 \(MEMQ_BACKPRESSURE_HIGH_WATER\); retry after \d+ ms$/,
    );
    expect(retryAfterMs).toBeGreaterThanOrEqual(RETRY_AFTER_MIN_MS);
    expect(retryAfterMs).toBeLessThanOrEqual(RETRY_AFTER_MAX_MS);

    // Down to 21 messages: below the high mark but not yet at the low mark, so still closed.
    await queue.remove(delayed!);
    await queue.remove(prioritized!);
    expect(await g.backlog()).toBe(21);
    await expect(g.admit()).rejects.toThrow(
      'memory-append: backlog 21 messages has not drained to the low-water mark 20 (MEMQ_BACKPRESSURE_LOW_WATER) since reaching the high-water mark 50',
    );

    await queue.remove(last!);
    await g.admit();
    // Open again: up to the high mark, producers go through.
    await addJobs([29]);
    expect(await g.backlog()).toBe(49);
    await g.admit();
  });

  it('under policy wait, admits once a worker drains the backlog to the low mark', async () => {
    const g = openGate({ policy: 'wait', waitTimeoutMs: 30_000 });
    await addJobs([20, 20, 20]);
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
    expect(await g.backlog()).toBeLessThanOrEqual(LOW_WATER_MESSAGES);
  });

  it('under policy wait, throws BackpressureError when nothing drains within waitTimeoutMs', async () => {
    const g = openGate({ policy: 'wait', waitTimeoutMs: 300 });
    await addJobs([20, 20, 20]);
    await expect(g.admit()).rejects.toThrow(
      /^memory-append: backlog 60 messages did not drain to the low-water mark 20 within 300 ms \(high-water mark 50\); retry after \d+ ms$/,
    );
  });

  it('rethrows the connection error when Redis is unreachable instead of admitting', async () => {
    // One server's connection, also when the suite runs on a cluster (this test is about the
    // gate rethrowing, not about MemoryClient's deadline).
    const connection = new Redis(ns.url, { maxRetriesPerRequest: 1 });
    const lost = createBacklogLedger(connection, ns.queuePrefix);
    gate = createBackpressureGate({
      queueName: QUEUES.append,
      highWaterMessages: HIGH_WATER_MESSAGES,
      lowWaterMessages: LOW_WATER_MESSAGES,
      policy: 'reject',
      countBacklog: async () => (await lost.backlog()).messages,
    });
    try {
      connection.disconnect();
      await expect(gate.admit()).rejects.toThrow(/Connection is closed/);
    } finally {
      connection.disconnect();
    }
  });
});
