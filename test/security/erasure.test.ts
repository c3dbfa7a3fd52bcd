import { UnrecoverableError, Worker, type Job } from 'bullmq';
import request, { type Test } from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAppendProcessor } from '../../processors/append.js';
import { createCleanupProcessor } from '../../processors/cleanup.js';
import { appendErasureDeps } from '../../processors/workers.js';
import type { AppendJobResult } from '../../queues/job-contracts.js';
import { JOBS, QUEUES } from '../../queues/names.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { KEYS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { quietLog } from '../helpers/pipeline.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import { jobScrubber } from '../../src/runtime/compose.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const auth = { Authorization: `Bearer ${KEYS.acme}` };
const PATH = '/v1/memories/customer-support';
const SECRET = 'erase me';
const TOKEN = 'erasure-test-token';

/** The fields of the HTTP answers these tests read (supertest types `body` as `any`). */
interface Body {
  readonly job: { readonly id: string };
  readonly result?: unknown;
  readonly state?: string;
  readonly total: number;
  readonly messages: ReadonlyArray<{ readonly message: { readonly content: string } }>;
}

/** Sends `req` and returns its status and body. */
async function answer(req: Test): Promise<{ status: number; body: Body }> {
  const res = await req;
  return { status: res.status, body: res.body as Body };
}

/**
 * After a delete or clear commits, no job enqueued before it brings a message
 * back, and no BullMQ job hash of that instance keeps a copy of its messages.
 */
describe('a delete or clear is final', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let http: TestHttp;
  const manualWorkers: Worker[] = [];

  beforeEach(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
    http = await startHttp(ns, registry);
  });
  afterEach(async () => {
    await Promise.all(manualWorkers.splice(0).map((w) => w.close()));
    await http.close();
    await ns.cleanup();
  });

  const append = (key: string, content: string, wait = false) =>
    answer(
      request(http.app)
        .post(`${PATH}/${key}/messages${wait ? '?wait=true' : ''}`)
        .set(auth)
        .send({ messages: [{ role: 'user', content }] }),
    );
  const read = (key: string) => answer(request(http.app).get(`${PATH}/${key}/messages`).set(auth));
  const contents = (body: Body) => body.messages.map((m) => m.message.content);
  const jobOf = (queue: string, id: string) =>
    answer(request(http.app).get(`/v1/jobs/${queue}/${id}`).set(auth));
  const waitForAppend = (id: string) => http.pipeline.client.waitFor(id);
  const deleteNow = (key: string) =>
    answer(request(http.app).delete(`${PATH}/${key}?wait=true`).set(auth));
  const clearNow = (key: string) =>
    answer(
      request(http.app).post(`${PATH}/${key}/clear?wait=true`).set(auth).send({ confirm: true }),
    );

  /** Stops the pipeline's worker of `queue`: its jobs are then taken by hand (below). */
  const stopWorker = async (queue: string) => {
    await http.pipeline.workers.workers.find((w) => w.name === queue)!.close();
  };
  /** Takes the next job of `queue` by hand: it is active (in its job hash) until finished. */
  const takeJob = async (queue: string): Promise<Job> => {
    const worker = new Worker(queue, undefined, {
      connection: ns.connect(),
      prefix: ns.queuePrefix,
    });
    manualWorkers.push(worker);
    const job = await worker.getNextJob(TOKEN);
    if (!job) throw new Error(`no ${queue} job to take`);
    return job;
  };
  /** Runs the append processor the workers run on a job taken by hand. */
  const runAppend = async (job: Job): Promise<AppendJobResult> => {
    const processor = createAppendProcessor({
      store: http.pipeline.store,
      registry,
      enqueueTokenCount: (ref) => http.pipeline.workers.queues.enqueueTokenCount(ref),
      ...appendErasureDeps(
        createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix }),
        http.pipeline.workers.queues.append,
      ),
      log: quietLog,
      metrics: http.pipeline.metrics,
    });
    return (await processor(job, TOKEN)) as AppendJobResult;
  };

  it.each([
    ['delete', 'del-1', deleteNow],
    ['clear', 'clr-1', clearNow],
  ] as const)(
    'an append accepted before a %s cannot come back once it committed',
    async (_, key, erase) => {
      const appendQueue = http.pipeline.workers.queues.append;
      await appendQueue.pause();
      const appended = await append(key, SECRET);
      expect(appended.status).toBe(202);

      const erased = await erase(key);
      expect(erased.status).toBe(200);
      expect(erased.body.result).toMatchObject({ removed: 0 });
      // Read before the append runs: the waiting append job must no longer carry the message.
      const textAfterErasure = await ns.allText();

      await appendQueue.resume();
      expect(await waitForAppend(appended.body.job.id)).toEqual({
        added: 0,
        duplicates: 0,
        erased: 1,
      });
      const job = await jobOf(QUEUES.append, appended.body.job.id);
      expect(job.body).toMatchObject({ state: 'completed', result: { erased: 1 } });
      const after = await read(key);
      expect(after.status).toBe(200);
      expect(after.body.total).toBe(0);
      expect(after.body.messages).toEqual([]);
      expect(textAfterErasure).not.toContain(SECRET);
      expect(await ns.allText()).not.toContain(SECRET);
    },
  );

  it('leaves no copy in a completed or a dead-lettered append job of the instance, and only of that instance', async () => {
    const completed = await append('del-2', `${SECRET}: completed`, true);
    expect(completed.body.result).toEqual({ added: 1, duplicates: 0 });
    await stopWorker(QUEUES.append);
    const dead = await append('del-2', `${SECRET}: dead letter`);
    const other = await append('keep-2', 'keep me: dead letter');
    for (let i = 0; i < 2; i++) {
      const job = await takeJob(QUEUES.append);
      await job.moveToFailed(new UnrecoverableError('provider down'), TOKEN);
    }
    expect((await jobOf(QUEUES.append, dead.body.job.id)).body.state).toBe('failed');
    expect((await jobOf(QUEUES.append, other.body.job.id)).body.state).toBe('failed');
    expect(await ns.allText()).toContain(SECRET);

    const deleted = await deleteNow('del-2');
    expect(deleted.status).toBe(200);
    expect(deleted.body.result).toMatchObject({ removed: 1 });
    const text = await ns.allText();
    expect(text).not.toContain(SECRET);
    // Another instance's dead letter is untouched.
    expect(text).toContain('keep me: dead letter');
  });

  it('a dead letter of the instance retried after the delete (as from Bull Board) stores nothing', async () => {
    await stopWorker(QUEUES.append);
    const dead = await append('del-3', SECRET);
    const taken = await takeJob(QUEUES.append);
    await taken.moveToFailed(new UnrecoverableError('provider down'), TOKEN);
    expect((await deleteNow('del-3')).status).toBe(200);

    const failed = await http.pipeline.workers.queues.append.getJob(dead.body.job.id);
    await failed!.retry('failed');
    const job = await takeJob(QUEUES.append);
    expect(job.id).toBe(dead.body.job.id);
    const result = await runAppend(job);
    expect(result).toEqual({ added: 0, duplicates: 0, erased: 1 });
    await job.moveToCompleted(result, TOKEN, false);
    expect((await read('del-3')).body.total).toBe(0);
    expect(await ns.allText()).not.toContain(SECRET);
  });

  it('an append active during the delete that commits after it is refused, and keeps no copy', async () => {
    await stopWorker(QUEUES.append);
    const appended = await append('del-4', SECRET);
    const job = await takeJob(QUEUES.append); // active; the processor holds its messages
    expect(job.id).toBe(appended.body.job.id);

    const deleted = await deleteNow('del-4');
    expect(deleted.body.result).toMatchObject({ removed: 0 });
    expect(await ns.allText()).not.toContain(SECRET);

    const result = await runAppend(job);
    expect(result).toEqual({ added: 0, duplicates: 0, erased: 1 });
    await job.moveToCompleted(result, TOKEN, false);
    expect((await read('del-4')).body.total).toBe(0);
    expect(await ns.allText()).not.toContain(SECRET);
  });

  it('an append active during the delete that committed before it keeps no copy once it completes', async () => {
    await stopWorker(QUEUES.append);
    await append('del-5', SECRET);
    const job = await takeJob(QUEUES.append);
    const result = await runAppend(job);
    expect(result).toEqual({ added: 1, duplicates: 0 });

    const deleted = await deleteNow('del-5');
    expect(deleted.body.result).toMatchObject({ removed: 1 });
    await job.moveToCompleted(result, TOKEN, false);
    expect((await read('del-5')).body.total).toBe(0);
    expect(await ns.allText()).not.toContain(SECRET);
  });

  it.each([
    ['delete', 'del-6', deleteNow],
    ['clear', 'clr-6', clearNow],
  ] as const)(
    'an append enqueued after the %s committed is stored normally',
    async (_, key, erase) => {
      expect((await append(key, 'before')).status).toBe(202);
      expect((await erase(key)).status).toBe(200);
      const after = await append(key, 'after the erasure', true);
      expect(after.status).toBe(200);
      expect(after.body.result).toEqual({ added: 1, duplicates: 0 });
      const page = await read(key);
      expect(contents(page.body)).toEqual(['after the erasure']);
    },
  );

  it('a write enqueued before a delete does not bring its messages back', async () => {
    await stopWorker(QUEUES.cleanup);
    const target = { resource: 'customer-support', key: 'del-7' };
    const write = await http.pipeline.client.write(target, [{ role: 'user', content: SECRET }]);
    const del = await http.pipeline.client.delete(target);
    const writeJob = await takeJob(QUEUES.cleanup); // active: the processor holds its messages
    const deleteJob = await takeJob(QUEUES.cleanup);
    expect([writeJob.id, deleteJob.id]).toEqual([write.jobId, del.jobId]);
    const cleanup = createCleanupProcessor({
      store: http.pipeline.store,
      registry,
      locks: http.pipeline.locks,
      enqueueTokenCount: (ref) => http.pipeline.queues.enqueueTokenCount(ref),
      scrubJobs: jobScrubber(
        createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix }),
        http.pipeline.queues,
      ),
      log: quietLog,
      metrics: http.pipeline.metrics,
    });

    const deleted = await cleanup(deleteJob, TOKEN);
    expect(deleted).toMatchObject({ removed: 0 });
    await deleteJob.moveToCompleted(deleted, TOKEN, false);
    expect(await ns.allText()).not.toContain(SECRET);

    const written = await cleanup(writeJob, TOKEN);
    expect(written).toMatchObject({ erased: 1 });
    await writeJob.moveToCompleted(written, TOKEN, false);
    expect((await read('del-7')).body.total).toBe(0);
    expect(await ns.allText()).not.toContain(SECRET);
  });

  it('a write waiting behind a delete it was enqueued before is scrubbed and then stores nothing', async () => {
    const ref = { project: 'acme', resource: 'customer-support', key: 'del-8' };
    const message = {
      id: '01JZ0000000000000000000000',
      role: 'user',
      content: SECRET,
      created_at: new Date().toISOString(),
    };
    const cleanupQueue = http.pipeline.workers.queues.cleanup;
    const delayed = await cleanupQueue.add(
      JOBS.write,
      { ref, messages: [message] },
      { delay: 60_000 },
    );
    expect((await deleteNow('del-8')).status).toBe(200);
    expect(await ns.allText()).not.toContain(SECRET);

    await delayed.promote();
    await http.pipeline.client.waitFor({ queue: QUEUES.cleanup, jobId: delayed.id!, ref });
    expect((await read('del-8')).body.total).toBe(0);
    expect(await ns.allText()).not.toContain(SECRET);
  });
});
