import { Queue } from 'bullmq';
import { ulid } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { BackpressureError } from '../../src/core/errors.js';
import { memoryKeys } from '../../src/redis/keys.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { QUEUES } from '../../queues/names.js';
import { MAINTENANCE_SCHEDULER_ID, upsertMaintenanceSchedule } from '../../queues/schedules.js';
import type { MaintenanceResult } from '../../processors/maintenance.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

describe('producer backpressure and the maintenance sweep', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  const closers: Array<() => Promise<unknown>> = [];

  beforeEach(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await ns.cleanup();
  });

  it('rejects appends once the messages waiting reach the high-water mark, though they are in a few batched jobs, and accepts again once drained', async () => {
    const producer = ns.connect({ producer: true });
    const client: MemoryClient = createMemoryClient({
      connection: producer,
      queuePrefix: ns.queuePrefix,
      registry,
      project: 'bp',
      store: createMemoryStore({ redis: producer, keyPrefix: ns.keyPrefix }),
      backpressure: { highWaterMessages: 40, lowWaterMessages: 10, policy: 'reject' },
    });
    closers.push(() => client.close());
    const target = { resource: 'agent-memory', key: 'agent:bp:1' };
    // 40 appends at once: group commit carries them in a few jobs, far fewer than 40.
    const receipts = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        client.append(target, [{ role: 'user', content: `m${i}` }]),
      ),
    );
    const jobs = new Set(receipts.map((r) => r.jobId)).size;
    expect(jobs).toBeLessThan(40);
    const appendQueue = new Queue(QUEUES.append, { connection: ns.redis, prefix: ns.queuePrefix });
    closers.push(() => appendQueue.close());
    expect(await appendQueue.getWaitingCount()).toBe(jobs);
    await new Promise((r) => setTimeout(r, 300)); // let the cached backlog count expire
    expect(await client.backlog()).toBe(40);
    const rejected = await client
      .append(target, [{ role: 'user', content: 'too many' }])
      .catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(BackpressureError);
    expect((rejected as BackpressureError).retryAfterMs).toBeGreaterThanOrEqual(250);
    expect((rejected as Error).message).toMatch(
      /memory-append: backlog 40 messages is at or above the high-water mark 40/,
    );
    expect((rejected as BackpressureError).details).toMatchObject({
      bound: 'messages',
      usage: 40,
      limit: 40,
    });
    // A write is held back by the same mark.
    await expect(
      client.write(target, [{ role: 'user', content: 'replace' }]),
    ).rejects.toMatchObject({
      code: 'BACKPRESSURE',
      details: { queue: 'memory-cleanup', bound: 'messages' },
    });

    const pipeline: TestPipeline = await startPipeline(ns, registry, 'bp');
    closers.push(() => pipeline.close());
    const receipt = await (async () => {
      for (;;) {
        try {
          return await client.append(target, [{ role: 'user', content: 'after drain' }]);
        } catch (error) {
          if (!(error instanceof BackpressureError)) throw error;
          await new Promise((r) => setTimeout(r, error.retryAfterMs));
        }
      }
    })();
    await pipeline.client.waitFor(receipt);
    expect((await pipeline.client.read(target, { limit: 100 })).total).toBe(41);
  });

  it('sweeps: drops expired index entries, repairs drift, flushes what is over its trigger, reports progress', async () => {
    const pipeline = await startPipeline(ns, registry, 'mt');
    closers.push(() => pipeline.close());
    const client = pipeline.client;
    const agent = { resource: 'agent-memory', key: 'agent:mt:1' };
    const gone = { resource: 'agent-memory', key: 'agent:mt:gone' };
    const chat = { resource: 'chat-buffer', key: 'chat:mt' };
    await client.waitFor((await client.append(agent, [{ role: 'user', content: 'hello' }])).jobId!);
    await client.waitFor((await client.append(gone, [{ role: 'user', content: 'bye' }])).jobId!);
    const refOf = (t: { resource: string; key: string }) => ({ project: 'mt', ...t });
    // 45 chat messages written straight to the store (no token-count job, so no automatic
    // flush): over the trigger (40), only the sweep can notice.
    const chatRef = refOf(chat);
    const messages = Array.from({ length: 45 }, (_, i) => ({
      id: ulid(Date.now()).slice(0, 10) + String(i).padStart(16, '0'),
      role: 'user' as const,
      content: `c${i}`,
      created_at: new Date().toISOString(),
    }));
    await pipeline.store.append(chatRef, messages, 3600);
    await pipeline.store.touchIndex(chatRef, Date.now());
    const refOfGone = refOf(gone);
    const goneKeys = memoryKeys(ns.keyPrefix, refOfGone);
    await ns.redis.del(
      goneKeys.ord,
      goneKeys.msg,
      goneKeys.tok,
      goneKeys.unc,
      goneKeys.meta,
      goneKeys.seen,
    ); // as TTL expiry would
    await ns.redis.hincrby(memoryKeys(ns.keyPrefix, refOf(agent)).meta, 'message_count', 5); // drift

    const queue = new Queue(QUEUES.cleanup, { connection: ns.redis, prefix: ns.queuePrefix });
    closers.push(() => queue.close());
    const job = await queue.add('maintenance', {});
    const result = await client.waitFor<MaintenanceResult>({
      queue: QUEUES.cleanup,
      jobId: job.id!,
      ref: refOf(agent),
    });
    expect(result.staleDropped).toBeGreaterThanOrEqual(1);
    expect(result.reconciled).toBeGreaterThanOrEqual(1);
    expect(result.scanned).toBeGreaterThanOrEqual(3);
    expect(result.flushesEnqueued).toBeGreaterThanOrEqual(1);
    // The chat messages were stored without a token-count job: the sweep enqueued one.
    expect(result.tokenCountsEnqueued).toBeGreaterThanOrEqual(1);
    await eventually(
      async () => (await client.read(chat)).total === 25,
      'the flush the sweep enqueued',
    );
    await eventually(
      async () => (await client.read(chat)).estimatedTokens === 0,
      'the token count the sweep enqueued',
    );
    expect((await client.stats(agent, { deep: true })).consistent).toBe(true);
    expect(await queue.getJobState(job.id!)).toBe('completed');
    expect((await queue.getJob(job.id!))?.progress).toBe(100);
  });

  it('keeps exactly one maintenance schedule however often it is upserted', async () => {
    const pipeline = await startPipeline(ns, registry, 'sch');
    closers.push(() => pipeline.close());
    await upsertMaintenanceSchedule(pipeline.workers.queues, 60_000);
    await upsertMaintenanceSchedule(pipeline.workers.queues, 60_000);
    await upsertMaintenanceSchedule(pipeline.workers.queues, 30_000);
    const schedulers = await pipeline.workers.queues.cleanup.getJobSchedulers();
    expect(schedulers.map((s) => [s.key, s.every])).toEqual([[MAINTENANCE_SCHEDULER_ID, 30_000]]);
  });
});
