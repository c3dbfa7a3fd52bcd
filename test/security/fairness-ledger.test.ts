/**
 * The backlog ledger behind producer backpressure (queues/backlog-ledger.ts) counts the messages
 * and bytes of each job, and cannot drift for long: an entry leaves once its job left the backlog
 * (removed, or taken by a worker), each check settles the oldest entries, and the maintenance
 * sweep settles every entry and recomputes the totals from them.
 */
import { Queue, Worker } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  backlogLedgerKeys,
  CHECK_SETTLE_ENTRIES,
  createBacklogLedger,
  type BacklogLedger,
} from '../../queues/backlog-ledger.js';
import { queueOptions } from '../../queues/job-options.js';
import { JOBS, QUEUES } from '../../queues/names.js';
import type { MaintenanceResult } from '../../processors/maintenance.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually, startPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

describe('backlog ledger', () => {
  let ns: RedisNamespace;
  let queue: Queue;
  let ledger: BacklogLedger;
  const closers: Array<() => Promise<unknown>> = [];

  beforeEach(() => {
    ns = createRedisNamespace();
    const producer = ns.connect({ producer: true });
    queue = new Queue(QUEUES.append, { connection: producer, ...queueOptions(ns.queuePrefix) });
    ledger = createBacklogLedger(producer, ns.queuePrefix);
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await queue.close();
    await ns.cleanup();
  });

  /**
   * Adds `count` jobs for `project` and records each with `messages` and `bytes`, as the client
   * does; returns their ids.
   */
  const addRecorded = async (
    project: string,
    count: number,
    { messages = 1, bytes = 100 }: { messages?: number; bytes?: number } = {},
  ): Promise<string[]> => {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const job = await queue.add(JOBS.append, { i });
      await ledger.record(QUEUES.append, job.id!, project, { messages, bytes });
      ids.push(job.id!);
    }
    return ids;
  };

  it('counts the messages and bytes of a job once, per project, and forgets them once it is removed or a worker took it', async () => {
    const [first, second] = await addRecorded('acme', 2, { messages: 40, bytes: 300 });
    await addRecorded('beta', 1, { messages: 7, bytes: 50 });
    // A repeated record counts nothing.
    await ledger.record(QUEUES.append, first!, 'acme', { messages: 40, bytes: 300 });
    expect(await ledger.check('acme')).toEqual({
      messages: 87,
      bytes: 650,
      projectMessages: 80,
      projectBytes: 600,
    });
    expect(await ledger.check('beta')).toEqual({
      messages: 87,
      bytes: 650,
      projectMessages: 7,
      projectBytes: 50,
    });
    expect(await ledger.backlog()).toEqual({ messages: 87, bytes: 650 });
    expect(await ledger.totals()).toEqual({
      messages: 87,
      'messages:acme': 80,
      'messages:beta': 7,
      bytes: 650,
      'bytes:acme': 600,
      'bytes:beta': 50,
    });

    await queue.remove(first!);
    expect(await ledger.check('acme')).toEqual({
      messages: 47,
      bytes: 350,
      projectMessages: 40,
      projectBytes: 300,
    });

    const worker = new Worker(QUEUES.append, () => Promise.resolve(), {
      connection: ns.connect(),
      prefix: ns.queuePrefix,
    });
    closers.push(() => worker.close());
    await eventually(
      async () => (await queue.getJobState(second!)) === 'completed',
      'the worker to run the job',
    );
    // The worker took beta's job too.
    expect(await ledger.check('acme')).toEqual({
      messages: 0,
      bytes: 0,
      projectMessages: 0,
      projectBytes: 0,
    });
    expect(await ledger.totals()).toEqual({});
  });

  it("settles, for the gate's backlog read, what drained past the check's reach", async () => {
    const ids = await addRecorded('acme', CHECK_SETTLE_ENTRIES + 8, { messages: 3 });
    for (const id of ids.slice(0, CHECK_SETTLE_ENTRIES + 4)) await queue.remove(id);
    expect((await ledger.backlog()).messages).toBe(4 * 3);
    expect(await ledger.totals()).toEqual({
      messages: 12,
      'messages:acme': 12,
      bytes: 400,
      'bytes:acme': 400,
    });
  });

  it('repairs on reconcile what a check does not reach: entries past the oldest ones, and tampered totals', async () => {
    const ids = await addRecorded('acme', CHECK_SETTLE_ENTRIES + 8, { messages: 2 });
    for (const id of ids.slice(CHECK_SETTLE_ENTRIES)) await queue.remove(id);
    // A check settles from the oldest entry and stops at a run of waiting ones.
    expect((await ledger.check('acme')).projectMessages).toBe((CHECK_SETTLE_ENTRIES + 8) * 2);

    expect(await ledger.reconcile()).toEqual({ settled: 8, entries: CHECK_SETTLE_ENTRIES });
    const settled = {
      messages: CHECK_SETTLE_ENTRIES * 2,
      bytes: CHECK_SETTLE_ENTRIES * 100,
    };
    expect(await ledger.check('acme')).toEqual({
      ...settled,
      projectMessages: settled.messages,
      projectBytes: settled.bytes,
    });

    const { totals } = backlogLedgerKeys(ns.queuePrefix);
    await ns.redis.hset(totals, 'bytes:acme', '1', 'messages', '5', 'messages:ghost', '7');
    await ledger.reconcile();
    expect(await ledger.totals()).toEqual({
      messages: settled.messages,
      'messages:acme': settled.messages,
      bytes: settled.bytes,
      'bytes:acme': settled.bytes,
    });
  });

  it('settles and recounts an entry recorded without a message count as 0 messages', async () => {
    const job = await queue.add(JOBS.append, { i: 0 });
    const { totals, ledgers } = backlogLedgerKeys(ns.queuePrefix);
    const jobKey = queue.toKey(job.id!);
    await ns.redis.zadd(ledgers[QUEUES.append], 1, `100|acme|${jobKey}`);
    await ns.redis.hset(totals, 'bytes', '100', 'bytes:acme', '100');
    await addRecorded('acme', 1, { messages: 4, bytes: 10 });
    await ledger.reconcile();
    expect(await ledger.totals()).toEqual({
      messages: 4,
      'messages:acme': 4,
      bytes: 110,
      'bytes:acme': 110,
    });
    await queue.remove(job.id!);
    expect(await ledger.check('acme')).toEqual({
      messages: 4,
      bytes: 10,
      projectMessages: 4,
      projectBytes: 10,
    });
  });

  it('does not count a job added but never recorded (a producer that died in between)', async () => {
    await queue.add(JOBS.append, { unrecorded: true });
    expect(await ledger.check('acme')).toEqual({
      messages: 0,
      bytes: 0,
      projectMessages: 0,
      projectBytes: 0,
    });
  });

  it('is reconciled by the maintenance sweep', async () => {
    const registry = await shippedMemories();
    const pipeline = await startPipeline(ns, registry, 'mt');
    closers.push(() => pipeline.close());
    // An entry whose job no longer exists, behind the oldest ones: only a reconcile reaches it.
    await queue.pause(); // keep the recorded jobs waiting
    await addRecorded('acme', CHECK_SETTLE_ENTRIES, { messages: 5 });
    await ledger.record(QUEUES.append, 'gone-job', 'acme', { messages: 5, bytes: 100 });
    const job = await pipeline.workers.queues.cleanup.add(JOBS.maintenance, {});
    const result = await pipeline.client.waitFor<MaintenanceResult>({
      queue: QUEUES.cleanup,
      jobId: job.id!,
      ref: { project: 'mt', resource: 'agent-memory', key: 'none' },
    });
    expect(result.backlogSettled).toBe(1);
    expect((await ledger.totals())['messages:acme']).toBe(CHECK_SETTLE_ENTRIES * 5);
  });
});
