/**
 * The backlog ledger behind the byte and per-project bounds (queues/backlog-ledger.ts) cannot
 * drift for long: an entry leaves once its job left the backlog (removed, or taken by a worker),
 * each check settles the oldest entries, and the maintenance sweep settles every entry and
 * recomputes the totals from them.
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

  /** Adds `count` jobs for `project` and records each, as the client does; returns their ids. */
  const addRecorded = async (project: string, count: number, bytes = 100): Promise<string[]> => {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const job = await queue.add(JOBS.append, { i });
      await ledger.record(QUEUES.append, job.id!, project, bytes);
      ids.push(job.id!);
    }
    return ids;
  };

  it('counts a job once, per project, and forgets it once it is removed or a worker took it', async () => {
    const [first, second] = await addRecorded('acme', 2, 300);
    await addRecorded('beta', 1, 50);
    await ledger.record(QUEUES.append, first!, 'acme', 300); // a repeated record counts nothing
    expect(await ledger.check('acme')).toEqual({ bytes: 650, projectBytes: 600, projectJobs: 2 });
    expect(await ledger.check('beta')).toEqual({ bytes: 650, projectBytes: 50, projectJobs: 1 });

    await queue.remove(first!);
    expect(await ledger.check('acme')).toEqual({ bytes: 350, projectBytes: 300, projectJobs: 1 });

    const worker = new Worker(QUEUES.append, () => Promise.resolve(), {
      connection: ns.connect(),
      prefix: ns.queuePrefix,
    });
    closers.push(() => worker.close());
    await eventually(
      async () => (await queue.getJobState(second!)) === 'completed',
      'the worker to run the job',
    );
    expect(await ledger.check('acme')).toEqual({ bytes: 0, projectBytes: 0, projectJobs: 0 });
    expect(await ledger.totals()).toEqual({});
  });

  it('repairs on reconcile what a check does not reach: entries past the oldest ones, and tampered totals', async () => {
    const ids = await addRecorded('acme', CHECK_SETTLE_ENTRIES + 8);
    for (const id of ids.slice(CHECK_SETTLE_ENTRIES)) await queue.remove(id);
    // A check settles from the oldest entry and stops at a run of waiting ones.
    expect((await ledger.check('acme')).projectJobs).toBe(CHECK_SETTLE_ENTRIES + 8);

    expect(await ledger.reconcile()).toEqual({ settled: 8, entries: CHECK_SETTLE_ENTRIES });
    expect(await ledger.check('acme')).toEqual({
      bytes: CHECK_SETTLE_ENTRIES * 100,
      projectBytes: CHECK_SETTLE_ENTRIES * 100,
      projectJobs: CHECK_SETTLE_ENTRIES,
    });

    const { totals } = backlogLedgerKeys(ns.queuePrefix);
    await ns.redis.hset(totals, 'bytes:acme', '1', 'jobs:ghost', '7');
    await ledger.reconcile();
    expect(await ledger.totals()).toEqual({
      bytes: CHECK_SETTLE_ENTRIES * 100,
      'bytes:acme': CHECK_SETTLE_ENTRIES * 100,
      'jobs:acme': CHECK_SETTLE_ENTRIES,
    });
  });

  it('does not count a job added but never recorded (a producer that died in between)', async () => {
    await queue.add(JOBS.append, { unrecorded: true });
    expect(await ledger.check('acme')).toEqual({ bytes: 0, projectBytes: 0, projectJobs: 0 });
  });

  it('is reconciled by the maintenance sweep', async () => {
    const registry = await shippedMemories();
    const pipeline = await startPipeline(ns, registry, 'mt');
    closers.push(() => pipeline.close());
    // An entry whose job no longer exists, behind the oldest ones: only a reconcile reaches it.
    await queue.pause(); // keep the recorded jobs waiting
    await addRecorded('acme', CHECK_SETTLE_ENTRIES);
    await ledger.record(QUEUES.append, 'gone-job', 'acme', 100);
    const job = await pipeline.workers.queues.cleanup.add(JOBS.maintenance, {});
    const result = await pipeline.client.waitFor<MaintenanceResult>({
      queue: QUEUES.cleanup,
      jobId: job.id!,
      ref: { project: 'mt', resource: 'agent-memory', key: 'none' },
    });
    expect(result.backlogSettled).toBe(1);
    expect((await ledger.totals())['jobs:acme']).toBe(CHECK_SETTLE_ENTRIES);
  });
});
