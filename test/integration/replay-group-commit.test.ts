/**
 * `memq replay` under group commit: the producer carries several appends in one append job
 * (queues/append-batcher.ts), and the replay still accounts for every append on its own: each
 * message accepted once, each one timed, and a second replay of the slice all duplicates.
 */
import { monotonicFactory } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOBS } from '../../queues/names.js';
import {
  completedAppendJob,
  failedAppendJob,
  runReplay,
  type ReplayDeps,
  type ReplayReport,
} from '../../src/replay/replay.js';
import { shippedMemories } from '../helpers/memories.js';
import {
  eventually,
  replayDepsFor,
  startPipeline,
  usePipelinePerTest,
  type TestPipeline,
} from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const LIMIT = 400;
const nextId = monotonicFactory();

/** `memq_append_job_entries`: append jobs enqueued, and the appends they carried. */
async function appendJobs(pipeline: TestPipeline): Promise<{ jobs: number; entries: number }> {
  const { values } = await pipeline.metrics.appendJobEntries.get();
  const of = (name: string) => values.find((v) => v.metricName === name)?.value ?? 0;
  return {
    jobs: of('memq_append_job_entries_count'),
    entries: of('memq_append_job_entries_sum'),
  };
}

describe('memq replay when appends share append jobs (group commit)', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  let deps: ReplayDeps;
  let report: ReplayReport;
  let batched: { jobs: number; entries: number };

  beforeAll(async () => {
    ns = createRedisNamespace();
    pipeline = await startPipeline(ns, await shippedMemories());
    deps = replayDepsFor(ns, pipeline);
    report = await runReplay(deps, { memory: 'customer-support', limit: LIMIT });
    batched = await appendJobs(pipeline);
  }, 120_000);
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('carried several appends in one job (the situation under test)', () => {
    expect(batched.entries).toBe(LIMIT);
    expect(batched.jobs).toBeLessThan(LIMIT);
  });

  it('counts every append once: accepted, timed, none failed', () => {
    expect(report.messagesEnqueued).toBe(LIMIT);
    expect(report.messagesAccepted).toBe(LIMIT);
    expect(report.duplicates).toBe(0);
    expect(report.failedJobs).toBe(0);
    expect(report.failedAppends).toBe(0);
    expect(report.enqueueErrors).toBe(0);
    // One enqueue -> committed sample per append, not per job.
    expect(report.latencyMs.samples).toBe(LIMIT);
    expect(report.messagesStored + report.messagesFolded).toBe(LIMIT);
  });

  it('reports the whole slice as duplicates when it is replayed again', async () => {
    const again = await runReplay(deps, { memory: 'customer-support', limit: LIMIT });
    expect(again.messagesAccepted).toBe(0);
    expect(again.duplicates).toBe(LIMIT);
    expect(again.failedAppends).toBe(0);
    expect(again.latencyMs.samples).toBe(LIMIT);
    expect(again.messagesStored).toBe(report.messagesStored);
  }, 120_000);
});

describe('what the replay reads from a finished append job of several entries', () => {
  const context = usePipelinePerTest();
  const entry = (resource: string, key: string, id = nextId()) => ({
    ref: { project: 'test', resource, key },
    messages: [{ id, role: 'user', content: `to ${key}`, created_at: new Date().toISOString() }],
  });

  it('a completed job: each append its own result', async () => {
    const { pipeline } = context();
    const queue = pipeline.queues.append;
    const again = entry('customer-support', 'a');
    await pipeline.client.waitFor((await queue.add(JOBS.append, { entries: [again] })).id!);
    const job = await queue.add(JOBS.append, {
      entries: [again, entry('customer-support', 'b')],
    });
    await eventually(async () => (await queue.getJobState(job.id!)) === 'completed', 'the job');
    const finished = completedAppendJob((await queue.getJob(job.id!))!.returnvalue, undefined);
    expect(finished.failed).toBe(false);
    expect(finished.size).toBe(2);
    expect(finished.outcome(0)).toEqual({ added: 0, duplicates: 1 });
    expect(finished.outcome(1)).toEqual({ added: 1, duplicates: 0 });
  });

  it('a failed job: the append it committed is stored, the other failed', async () => {
    const { pipeline } = context();
    const queue = pipeline.queues.append;
    const job = await queue.add(JOBS.append, {
      entries: [entry('customer-support', 'kept'), entry('no-such-memory', 'lost')],
    });
    await eventually(async () => (await queue.getJobState(job.id!)) === 'failed', 'the job');
    const finished = failedAppendJob(await queue.getJob(job.id!), undefined);
    expect(finished.failed).toBe(true);
    expect(finished.size).toBe(2);
    expect(finished.outcome(0)).toEqual({ added: 1, duplicates: 0 });
    expect(finished.outcome(1)).toBe('failed');
  });
});
