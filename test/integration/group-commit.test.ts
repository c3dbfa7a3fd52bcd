import { Worker, type Job } from 'bullmq';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAppendProcessor } from '../../processors/append.js';
import type { AppendEntry, AppendEntryData, AppendJobResult } from '../../queues/job-contracts.js';
import type { JobReceipt } from '../../queues/job-status.js';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { createMemoryQueues } from '../../queues/memory-queues.js';
import { JOBS, QUEUES } from '../../queues/names.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { JobFailedError } from '../../src/core/errors.js';
import type { Message } from '../../src/core/message.js';
import { createHttpApp } from '../../src/http/app.js';
import { createMetrics, type MemqMetrics } from '../../src/metrics/metrics.js';
import type { MemoryRef } from '../../src/redis/keys.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import type { MemoryStore } from '../../src/store/memory-store.js';
import { BOARD, KEYS, TEST_GRANTS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import {
  eventually,
  quietLog,
  usePipelinePerTest,
  type TestPipeline,
} from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

/**
 * Group commit of appends (queues/append-batcher.ts, processors/append.ts) as a user sees it:
 * fewer jobs than appends under concurrency, each append's own answer, nothing stored twice,
 * and a delete that removes only its instance's entries from a batched job.
 */

const RESOURCE = 'agent-memory';
const target = (key: string) => ({ resource: RESOURCE, key });

/** `memq_append_job_entries` as recorded: jobs enqueued (count) and appends they carried (sum). */
async function observedJobs(metrics: MemqMetrics): Promise<{ jobs: number; appends: number }> {
  const { values } = await metrics.appendJobEntries.get();
  const value = (suffix: string) =>
    values.find((v) => v.metricName === `memq_append_job_entries_${suffix}`)?.value ?? 0;
  return { jobs: value('count'), appends: value('sum') };
}

/** The data of an append job as Redis holds it (the job hash's `data` field, raw JSON). */
async function rawJobData(ns: RedisNamespace, pipeline: TestPipeline, jobId: string) {
  const raw = await ns.redis.hget(pipeline.queues.append.toKey(jobId), 'data');
  if (raw === null) throw new Error(`no job hash for ${jobId}`);
  return { raw, data: JSON.parse(raw) as { entries: AppendEntryData[] } };
}

/** A receipt for entry `entry` of append job `jobId` (what an append's receipt carries). */
const entryOf = (jobId: string, entry: number, ref: MemoryRef): JobReceipt => ({
  queue: QUEUES.append,
  jobId,
  ref,
  entry,
});

describe('group commit of appends, through MemoryClient', () => {
  const context = usePipelinePerTest();
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let pipeline: TestPipeline;
  const closing: Array<{ close(): Promise<void> }> = [];
  beforeEach(() => {
    ({ ns, registry, pipeline } = context());
  });
  afterEach(async () => {
    for (const c of closing.splice(0).reverse()) await c.close();
  });

  /**
   * A producer client of project `test` without backpressure: between `append` and the batcher
   * there is no I/O, so appends started together all reach the batcher while the first one's job
   * is being added (what makes the batching below deterministic, not timed).
   */
  const producer = (appendBatch?: { maxMessages?: number; maxBytes?: number }) => {
    const metrics = createMetrics();
    const client = createMemoryClient({
      connection: ns.connect({ producer: true }),
      queuePrefix: ns.queuePrefix,
      registry,
      project: 'test',
      store: pipeline.store,
      metrics,
      ...(appendBatch ? { appendBatch } : {}),
    });
    closing.push(client);
    return { client, metrics };
  };

  it('64 concurrent appends to 4 memories take fewer jobs; each is stored once, in order, and answered on its own', async () => {
    const { client, metrics } = producer();
    const targets = [0, 1, 2, 3].map((i) => target(`gc:${i}`));
    const receipts = await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        client.append(targets[i % 4]!, [{ role: 'user', content: `message ${i}` }]),
      ),
    );

    const jobIds = new Set(receipts.map((r) => r.jobId));
    expect(jobIds.size).toBeLessThan(64);
    expect(await observedJobs(metrics)).toEqual({ jobs: jobIds.size, appends: 64 });
    // every append has its own place: (job, entry) pairs are distinct
    expect(new Set(receipts.map((r) => `${r.jobId}#${r.entry}`)).size).toBe(64);
    const batched = await pipeline.queues.append.getJob(receipts[63]!.jobId!);
    expect((batched!.data as { entries: unknown[] }).entries.length).toBeGreaterThan(1);

    for (const receipt of receipts) {
      expect(await client.waitFor(receipt)).toEqual({ added: 1, duplicates: 0 });
    }
    for (const [m, t] of targets.entries()) {
      const mine = receipts.flatMap((r, i) => (i % 4 === m ? [{ r, i }] : []));
      const window = await client.read(t, { limit: 100 });
      expect(window.total).toBe(16);
      expect(window.messages.map((x) => x.message.id)).toEqual(
        mine.map(({ r }) => r.messageIds[0]),
      );
      expect(window.messages.map((x) => x.message.content)).toEqual(
        mine.map(({ i }) => `message ${i}`),
      );
    }
  });

  it('a lone append is its own job, entry 0, in Redis when append resolves', async () => {
    const { client, metrics } = producer();
    for (const n of [1, 2]) {
      const receipt = await client.append(target('lone'), [
        { role: 'user', content: `alone ${n}` },
      ]);
      expect(receipt.entry).toBe(0);
      const job = await pipeline.queues.append.getJob(receipt.jobId!);
      expect(job).toBeDefined();
      // A job of one append keeps the shape every worker version runs: `{ ref, messages }`.
      const data = job!.data as AppendEntry & { entries?: unknown };
      expect(data.entries).toBeUndefined();
      expect(data.ref).toEqual(receipt.ref);
      expect(data.messages.map((m) => m.id)).toEqual(receipt.messageIds);
      expect(await observedJobs(metrics)).toEqual({ jobs: n, appends: n });
      expect(await client.waitFor(receipt)).toEqual({ added: 1, duplicates: 0 });
    }
  });

  it('appendBatch maxMessages 1 (batching off): one job per append', async () => {
    const { client, metrics } = producer({ maxMessages: 1 });
    const receipts = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        client.append(target(`off:${i % 2}`), [{ role: 'user', content: `unbatched ${i}` }]),
      ),
    );
    expect(new Set(receipts.map((r) => r.jobId)).size).toBe(16);
    expect(receipts.map((r) => r.entry)).toEqual(receipts.map(() => 0));
    expect(await observedJobs(metrics)).toEqual({ jobs: 16, appends: 16 });
    for (const receipt of receipts) {
      // the whole job's result is this append's own
      expect(await client.waitFor(receipt.jobId!)).toEqual({ added: 1, duplicates: 0 });
    }
  });

  it('jobs reach the queue in the order their appends were submitted, an append too large to share going after the ones before it', async () => {
    const { client } = producer({ maxMessages: 4 });
    await pipeline.queues.append.pause();
    const one = (content: string) => [{ role: 'user' as const, content }];
    const receipts = await Promise.all([
      client.append(target('order'), one('first')), // nothing in flight: alone
      client.append(target('order'), one('second')), // gathered while the first is added
      client.append(
        target('order'),
        ['third a', 'third b', 'third c', 'third d', 'third e'].map((c) => one(c)[0]!),
      ), // a full job by itself
    ]);
    const waiting = await pipeline.queues.append.getJobs(['waiting'], 0, -1, true);
    expect(waiting.map((j) => j.id)).toEqual(receipts.map((r) => r.jobId));
    await pipeline.queues.append.resume();
    for (const r of receipts) await client.waitFor(r);
    expect((await client.read(target('order'))).total).toBe(7);
  });

  it('a job with an entry of an undeclared resource commits the others and ends a dead letter', async () => {
    const a = pipeline.client.prepareAppend(target('dl:a'), [{ role: 'user', content: 'a1' }]);
    const retired = pipeline.client.prepareAppend(target('dl:x'), [
      { role: 'user', content: 'kept in the dead letter' },
    ]).entry!;
    const b = pipeline.client.prepareAppend(target('dl:b'), [
      { role: 'user', content: 'b1' },
      { role: 'assistant', content: 'b2' },
    ]);
    const unknownRef = { ...retired.ref, resource: 'retired-memory' };
    const job = await pipeline.queues.append.add(
      JOBS.append,
      { entries: [a.entry!, { ...retired, ref: unknownRef }, b.entry!] },
      { attempts: 3, backoff: { type: 'fixed', delay: 10 } },
    );
    const jobId = job.id!;

    expect(await pipeline.client.waitFor(entryOf(jobId, 0, a.receipt.ref))).toEqual({
      added: 1,
      duplicates: 0,
    });
    expect(await pipeline.client.waitFor(entryOf(jobId, 2, b.receipt.ref))).toEqual({
      added: 2,
      duplicates: 0,
    });
    const failed = pipeline.client.waitFor(entryOf(jobId, 1, unknownRef));
    await expect(failed).rejects.toBeInstanceOf(JobFailedError);
    await expect(failed).rejects.toThrow(/MEMORY_NOT_FOUND/);

    const dead = (await pipeline.queues.append.getJob(jobId))!;
    expect(await dead.getState()).toBe('failed');
    expect(dead.attemptsMade).toBe(1); // UnrecoverableError: no retries left unused
    expect(dead.failedReason).toMatch(/^MEMORY_NOT_FOUND: entries\[1\]/);
    expect(dead.progress).toEqual({
      entries: [{ added: 1, duplicates: 0 }, null, { added: 2, duplicates: 0 }],
    });
    // the dead letter keeps what was not committed, to be retried once the resource is back
    expect((await rawJobData(ns, pipeline, jobId)).raw).toContain('kept in the dead letter');
    expect((await pipeline.client.read(target('dl:a'))).total).toBe(1);
    expect((await pipeline.client.read(target('dl:b'))).total).toBe(2);
  });
});

describe('group commit of appends: retries and erasure', () => {
  const context = usePipelinePerTest();
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let pipeline: TestPipeline;
  const workers: Worker[] = [];
  beforeEach(() => {
    ({ ns, registry, pipeline } = context());
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.close()));
  });

  /** Entries (through the producer's validation and ids) of the given instances' messages. */
  const entries = (...appends: Array<[key: string, contents: string[]]>): AppendEntry[] =>
    appends.map(
      ([key, contents]) =>
        pipeline.client.prepareAppend(
          target(key),
          contents.map((content) => ({ role: 'user' as const, content })),
        ).entry!,
    );

  /** Faults injected once into the processor's dependencies (the store itself stays real). */
  interface Faults {
    /** `store.append` of this key throws a retryable error on its first call. */
    appendOf?: string;
    /** The first token-count enqueue throws. */
    tokenCount?: boolean;
    /** The first scrub of the job hash throws. */
    scrub?: boolean;
  }

  /**
   * Replaces the pipeline's append worker by one running the real append processor with
   * `faults` injected once each.
   */
  const workerWith = async (faults: Faults) => {
    await pipeline.workers.workers.find((w) => w.name === QUEUES.append)!.close();
    const fired = new Set<keyof Faults>();
    const once = (fault: keyof Faults) => {
      if (fired.has(fault)) return false;
      fired.add(fault);
      return true;
    };
    const store: MemoryStore = {
      ...pipeline.store,
      append: (ref, ...rest) => {
        if (ref.key === faults.appendOf && once('appendOf')) {
          return Promise.reject(new Error('connection reset (injected)'));
        }
        return pipeline.store.append(ref, ...rest);
      },
    };
    const maintenance = createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    const processor = createAppendProcessor({
      store,
      registry,
      enqueueTokenCount: (ref) => {
        if (faults.tokenCount && once('tokenCount')) {
          return Promise.reject(new Error('token-count enqueue failed (injected)'));
        }
        return pipeline.workers.queues.enqueueTokenCount(ref);
      },
      scrubJob: (ref, erasedAtMs, jobKey) => {
        if (faults.scrub && once('scrub')) {
          return Promise.reject(new Error('scrub failed (injected)'));
        }
        return maintenance.scrubJobKeys(ref, erasedAtMs, [jobKey]);
      },
      jobKey: (jobId) => pipeline.queues.append.toKey(jobId),
      log: quietLog,
      metrics: pipeline.metrics,
    });
    const worker = new Worker(QUEUES.append, processor, {
      connection: ns.connect(),
      prefix: ns.queuePrefix,
    });
    workers.push(worker);
  };

  const addJob = async (data: object, opts: { timestamp?: number } = {}): Promise<Job> =>
    pipeline.queues.append.add(JOBS.append, data, {
      attempts: 3,
      backoff: { type: 'fixed', delay: 10 },
      ...opts,
    });

  const total = async (key: string) => (await pipeline.client.read(target(key))).total;

  it('a retry after one entry failed stores nothing twice and reports what each entry stored', async () => {
    await workerWith({ appendOf: 'rt:b' });
    const job = await addJob({ entries: entries(['rt:a', ['a1', 'a2']], ['rt:b', ['b1']]) });
    expect(await pipeline.client.waitFor(job.id!)).toEqual({
      added: 3,
      duplicates: 0,
      entries: [
        { added: 2, duplicates: 0 },
        { added: 1, duplicates: 0 },
      ],
    });
    expect((await pipeline.queues.append.getJob(job.id!))!.attemptsMade).toBe(2);
    expect(await total('rt:a')).toBe(2);
    expect(await total('rt:b')).toBe(1);
  });

  it('a retry after the token-count enqueue failed reports what the first attempt stored', async () => {
    await workerWith({ tokenCount: true });
    const job = await addJob({ entries: entries(['tc:a', ['a1']], ['tc:b', ['b1', 'b2']]) });
    expect(await pipeline.client.waitFor(job.id!)).toEqual({
      added: 3,
      duplicates: 0,
      entries: [
        { added: 1, duplicates: 0 },
        { added: 2, duplicates: 0 },
      ],
    });
    expect((await pipeline.queues.append.getJob(job.id!))!.attemptsMade).toBe(2);
    expect(await total('tc:a')).toBe(1);
    expect(await total('tc:b')).toBe(2);
  });

  it('an entry of an undeclared resource does not keep a retryable entry from its retry', async () => {
    await workerWith({ appendOf: 'mx:b' });
    const [retired, b] = entries(['mx:x', ['lost']], ['mx:b', ['b1']]);
    const unknownRef = { ...retired!.ref, resource: 'retired-memory' };
    const job = await addJob({ entries: [{ ...retired!, ref: unknownRef }, b!] });
    expect(await pipeline.client.waitFor(entryOf(job.id!, 1, b!.ref))).toEqual({
      added: 1,
      duplicates: 0,
    });
    await expect(pipeline.client.waitFor(entryOf(job.id!, 0, unknownRef))).rejects.toThrow(
      /MEMORY_NOT_FOUND/,
    );
    const dead = (await pipeline.queues.append.getJob(job.id!))!;
    expect(await dead.getState()).toBe('failed');
    expect(dead.attemptsMade).toBe(2); // retried for b, then a dead letter for the other
    expect(await total('mx:b')).toBe(1);
  });

  /** Deletes instance `key` through the client and waits for the delete to commit. */
  const deleteNow = async (key: string) => {
    await pipeline.client.waitFor(await pipeline.client.delete(target(key)));
  };

  it('an erased entry whose scrub failed is scrubbed on the retry', async () => {
    await workerWith({ scrub: true });
    const enqueuedAt = Date.now() - 60_000; // accepted before the delete (a slow producer)
    await pipeline.client.append(target('sf:a'), [{ role: 'user', content: 'seed' }]);
    await deleteNow('sf:a');
    const job = await addJob(
      { entries: entries(['sf:a', ['secret of a']], ['sf:b', ['b1']]) },
      { timestamp: enqueuedAt },
    );
    expect(await pipeline.client.waitFor(job.id!)).toMatchObject({
      added: 1,
      erased: 1,
      entries: [
        { added: 0, duplicates: 0, erased: 1 },
        { added: 1, duplicates: 0 },
      ],
    });
    const { raw, data } = await rawJobData(ns, pipeline, job.id!);
    expect(raw).not.toContain('secret of a');
    expect(data.entries[0]).toHaveProperty('erased_ids');
    expect(await total('sf:a')).toBe(0);
  });

  /**
   * A message whose JSON Lua's cjson would change: an empty array (cjson writes `{}`), the
   * largest safe integer (cjson keeps 14 digits), a fraction, unicode, null.
   */
  const fragile = (): Message => {
    const { entry } = pipeline.client.prepareAppend(target('er:b'), [
      {
        role: 'user',
        content: [],
        metadata: {
          big: Number.MAX_SAFE_INTEGER,
          ratio: 0.1,
          text: 'é ☃ "quoted" \\ back',
          none: null,
          flag: false,
        },
      },
    ]);
    return entry!.messages[0]!;
  };

  it('a delete while a batched job waits erases only that instance: its entry is reported erased, the others are stored and kept exactly', async () => {
    await pipeline.queues.append.pause();
    const b = { ...entries(['er:b', ['b placeholder']])[0]!, messages: [fragile()] };
    const [a, b2] = entries(['er:a', ['secret of a']], ['er:b', ['b2']]);
    const batch = [a!, b, b2!];
    const waitingJob = await addJob({ entries: batch });
    await pipeline.client.append(target('er:a'), [{ role: 'user', content: 'seed' }]);

    await deleteNow('er:a');
    // A job enqueued before the delete but added after it (a slow producer): the delete's scrub
    // did not see it, the processor's tombstone check and scrub do.
    const lateJob = await addJob({ entries: batch }, { timestamp: waitingJob.timestamp });

    const waiting = await rawJobData(ns, pipeline, waitingJob.id!);
    expect(waiting.raw).not.toContain('secret of a');
    expect(waiting.data.entries[0]).toEqual({
      ref: a!.ref,
      erased_ids: a!.messages.map((m) => m.id),
    });
    // the other entries as the producer wrote them, byte for byte
    for (const kept of [b, b2!]) expect(waiting.raw).toContain(JSON.stringify(kept));

    await pipeline.queues.append.resume();
    for (const job of [waitingJob, lateJob]) {
      expect(await pipeline.client.waitFor(entryOf(job.id!, 0, a!.ref))).toEqual({
        added: 0,
        duplicates: 0,
        erased: 1,
      });
      expect(await pipeline.client.waitFor(job.id!)).toMatchObject({ erased: 1 });
    }
    expect(await pipeline.client.waitFor(entryOf(waitingJob.id!, 1, b.ref))).toEqual({
      added: 1,
      duplicates: 0,
    });
    const late = await rawJobData(ns, pipeline, lateJob.id!);
    expect(late.raw).not.toContain('secret of a');
    expect(late.data.entries[0]).toHaveProperty('erased_ids');
    for (const kept of [b, b2!]) expect(late.raw).toContain(JSON.stringify(kept));

    expect(await total('er:a')).toBe(0);
    const stored = await pipeline.client.read(target('er:b'));
    expect(stored.messages.map((m) => m.message)).toEqual([
      expect.objectContaining({
        id: b.messages[0]!.id,
        content: [],
        metadata: b.messages[0]!.metadata,
      }),
      expect.objectContaining({ id: b2!.messages[0]!.id, content: 'b2' }),
    ]);
    expect(b.messages[0]!.metadata!.big).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('group commit of appends, over HTTP', () => {
  let ns: RedisNamespace;
  let http: TestHttp;
  let client: MemoryClient;
  let app: ReturnType<typeof createHttpApp>;
  let closeQueues: () => Promise<void>;
  /** Releases the first append job's add (held so the other requests gather behind it). */
  let release: () => void;
  /** Appends that reached the client. */
  let entered = 0;

  beforeEach(async () => {
    ns = createRedisNamespace();
    const registry = await shippedMemories();
    http = await startHttp(ns, registry);
    const connection = ns.connect({ producer: true });
    const queues = createMemoryQueues(connection, ns.queuePrefix);
    closeQueues = () => queues.close();
    // Hold the first job's add until every request has reached the batcher: no timing decides
    // what is batched (the client has no backpressure: no I/O between append and the batcher).
    const held = new Promise<void>((resolve) => (release = resolve));
    const add = queues.append.add.bind(queues.append);
    let adds = 0;
    queues.append.add = (async (...args: Parameters<typeof add>) => {
      if (adds++ === 0) await held;
      return add(...args);
    }) as typeof queues.append.add;
    client = createMemoryClient({
      connection,
      queuePrefix: ns.queuePrefix,
      registry,
      project: 'acme',
      store: http.pipeline.store,
      queues,
    });
    const append = client.append.bind(client);
    entered = 0;
    (client as { append: MemoryClient['append'] }).append = (...args) => {
      entered += 1;
      return append(...args);
    };
    app = createHttpApp({
      client,
      queues: http.pipeline.workers.queues,
      registry,
      redis: connection,
      metrics: createMetrics(),
      log: quietLog,
      apiKeys: TEST_GRANTS,
      board: { ...BOARD, readOnly: true },
      maxBodyBytes: 64 * 1024,
      maxMessageBytes: 8 * 1024,
    });
  });
  afterEach(async () => {
    release();
    await client.close();
    await closeQueues();
    await http.close();
    await ns.cleanup();
  });

  interface AppendAnswer {
    readonly job: { readonly id: string; readonly entry: number };
    readonly result: AppendJobResult;
  }

  it('?wait=true answers each append with its own entry, and a job is shown to its project only', async () => {
    const N = 5;
    const pending = Array.from({ length: N }, (_, i) =>
      request(app)
        .post(`/v1/memories/${RESOURCE}/http:${i}/messages?wait=true`)
        .set({ Authorization: `Bearer ${KEYS.acme}` })
        .send({
          messages: Array.from({ length: i + 1 }, (_, n) => ({
            role: 'user',
            content: `request ${i} message ${n}`,
          })),
        })
        .then((res) => res),
    );
    await eventually(() => Promise.resolve(entered === N), 'every request to reach the client');
    release();
    const answers = await Promise.all(pending);

    for (const [i, res] of answers.entries()) {
      expect(res.status).toBe(200);
      expect((res.body as AppendAnswer).result).toEqual({ added: i + 1, duplicates: 0 });
    }
    const bodies = answers.map((res) => res.body as AppendAnswer);
    const jobIds = new Set(bodies.map((b) => b.job.id));
    expect(jobIds.size).toBe(2); // the first alone, the others gathered behind it
    const shared = bodies.filter((b) => b.job.entry > 0)[0]!.job.id;

    const own = await request(app)
      .get(`/v1/jobs/memory-append/${shared}`)
      .set({ Authorization: `Bearer ${KEYS.acme}` });
    expect(own.status).toBe(200);
    expect((own.body as { result: AppendJobResult }).result.entries).toHaveLength(N - 1);
    const other = await request(app)
      .get(`/v1/jobs/memory-append/${shared}`)
      .set({ Authorization: `Bearer ${KEYS.beta}` });
    expect(other.status).toBe(404);
  });
});
