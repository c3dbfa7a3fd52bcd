import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import { memoryKeys } from '../../src/redis/keys.js';
import type { FlushJobResult } from '../../processors/flush.js';
import { QUEUES } from '../../queues/names.js';
import { FAKE_LLM_KEY, fakeLlm, summarizedMemoryYaml } from '../helpers/fake-llm.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

describe('flush fencing on real Redis', () => {
  let llm: Awaited<ReturnType<typeof fakeLlm>>;
  let ns: RedisNamespace;
  let pipelines: TestPipeline[];
  // fenced: 20 seeded messages (~260 tokens) are over its trigger (240); roomy: far under.
  const fenced = { resource: 'fenced', key: 'f:1' };
  const roomy = { resource: 'roomy', key: 'r:1' };
  beforeEach(async () => {
    llm = await fakeLlm();
    ns = createRedisNamespace();
    const resources = [
      parseMemoryResource(summarizedMemoryYaml(llm.url, 'fenced', 300), 'fenced.yaml'),
      parseMemoryResource(summarizedMemoryYaml(llm.url, 'roomy', 100_000), 'roomy.yaml'),
    ];
    expect(resources.flatMap((r) => r.problems)).toEqual([]);
    const registry = createMemoryRegistry(resources.map((r) => r.resource!));
    const env = { TEST_SUMMARIZER_KEY: FAKE_LLM_KEY };
    // Two worker processes' worth of workers on the same queues and memories.
    pipelines = [
      await startPipeline(ns, registry, 'test', { env }),
      await startPipeline(ns, registry, 'test', { env }),
    ];
  });
  afterEach(async () => {
    for (const p of pipelines) await p.close();
    await ns.cleanup();
    await llm.close();
  });

  /** 20 messages, committed and counted. */
  const seed = async (target: { resource: string; key: string }) => {
    const client = pipelines[0]!.client;
    const receipt = await client.append(
      target,
      Array.from({ length: 20 }, (_, i) => ({
        role: i % 2 ? ('assistant' as const) : ('user' as const),
        content: `Message ${i}: a detail worth keeping.`,
      })),
    );
    await client.waitFor(receipt.jobId!);
    await eventually(async () => (await client.read(target)).exact, 'exact counts');
    return receipt.messageIds;
  };

  it('lets one of two racing triggered flushes commit; the other does nothing', async () => {
    const ref = { project: 'test', ...fenced };
    const flushQueue = pipelines[0]!.workers.queues.flush;
    await flushQueue.pause();
    const ids = await seed(fenced);
    // The trigger enqueued one flush (deduplicated per instance); add a second one for the same
    // memory, bypassing deduplication on purpose, so two workers race for it.
    await eventually(
      async () => ((await flushQueue.getJobCounts('waiting')).waiting ?? 0) === 1,
      'the triggered flush',
    );
    const [waiting] = await flushQueue.getJobs(['waiting']);
    const racer = await flushQueue.add('flush', { ref, dry_run: false, trigger: true });
    llm.state.delayMs = 300;
    await flushQueue.resume();
    const results = await Promise.all(
      [waiting!.id!, racer.id!].map((jobId) =>
        pipelines[0]!.client.waitFor<FlushJobResult>(
          { queue: QUEUES.flush, jobId, ref },
          { timeoutMs: 20_000 },
        ),
      ),
    );
    expect(results.map((r) => r.applied).sort()).toEqual([false, true]);
    const winner = results.find((r) => r.applied)!;
    const loser = results.find((r) => !r.applied)!;
    expect(loser.folded + loser.evicted).toBe(0);
    const stats = await pipelines[0]!.client.stats(fenced, { deep: true });
    expect(stats.foldedCount).toBe(winner.folded);
    expect(stats.consistent).toBe(true);
    expect(stats.acceptedCount).toBe(ids.length);
    expect(stats.acceptedCount).toBe(stats.messageCount + stats.foldedCount);
    expect(llm.state.calls).toBe(1);
  });

  it('rejects the commit of a flush whose lock was lost, changes nothing, and retries', async () => {
    const ref = { project: 'test', ...roomy };
    const target = roomy;
    const ids = await seed(roomy);
    llm.state.delayMs = 1500;
    const before = await pipelines[0]!.client.read(target, { limit: 100 });
    const receipt = await pipelines[0]!.client.flush(target, { strategy: 'hybrid_summary' });
    // While the summarizer works, the lock expires (forced: its key disappears).
    await eventually(() => Promise.resolve(llm.state.calls >= 1), 'the summarizer call');
    await ns.redis.del(memoryKeys(ns.keyPrefix, ref).lock);
    await eventually(
      async () =>
        (await pipelines[0]!.workers.queues.flush.getJob(receipt.jobId))?.attemptsMade === 1,
      'the fenced-out attempt to fail',
    );
    const during = await pipelines[0]!.client.read(target, { limit: 100 });
    expect(during.summary).toBeUndefined();
    expect(during.messages.map((m) => m.message)).toEqual(before.messages.map((m) => m.message));
    const job = await pipelines[0]!.workers.queues.flush.getJob(receipt.jobId);
    expect(`${(job!.stacktrace ?? []).join('\n')} ${job!.failedReason}`).toMatch(
      /no longer held|lock/i,
    );

    llm.state.delayMs = 0;
    const result = await pipelines[0]!.client.waitFor<FlushJobResult>(receipt, {
      timeoutMs: 20_000,
    });
    expect(result.applied).toBe(true);
    const stats = await pipelines[0]!.client.stats(target, { deep: true });
    expect(stats.consistent).toBe(true);
    expect(stats.foldedCount).toBe(result.folded);
    expect(stats.acceptedCount).toBe(ids.length);
    expect(stats.acceptedCount).toBe(stats.messageCount + stats.foldedCount);
  });

  it('waits out a lock left by a crashed holder without spending attempts, then flushes', async () => {
    const ref = { project: 'test', ...roomy };
    const ids = await seed(roomy);
    // A worker died holding the instance lock: its key stays until its TTL (here 3 s) passes.
    const lockKey = memoryKeys(ns.keyPrefix, ref).lock;
    await ns.redis.set(lockKey, 'token-of-a-dead-worker', 'PX', 3_000);
    const client = pipelines[0]!.client;
    const receipt = await client.flush(roomy, { strategy: 'hybrid_summary' });
    const flushQueue = pipelines[0]!.workers.queues.flush;
    await eventually(
      async () => (await flushQueue.getJobState(receipt.jobId)) === 'delayed',
      'the flush to step back while the lock is held',
    );
    const result = await client.waitFor<FlushJobResult>(receipt, { timeoutMs: 20_000 });
    expect(result.applied).toBe(true);
    const job = await flushQueue.getJob(receipt.jobId);
    // It started more than once (stepped back while the lock was held), yet only its successful
    // run counts as an attempt: waiting for the lock spent no retry and recorded no failure.
    expect(job!.attemptsStarted).toBeGreaterThan(1);
    expect(job!.attemptsMade).toBe(1);
    expect(job!.stacktrace ?? []).toEqual([]);
    expect((await flushQueue.getJobCounts('failed')).failed).toBe(0);
    const stats = await client.stats(roomy, { deep: true });
    expect(stats.consistent).toBe(true);
    expect(stats.acceptedCount).toBe(ids.length);
  });
});

describe('lru with recorded reads on real Redis', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  beforeEach(async () => {
    ns = createRedisNamespace();
    const parsed = parseMemoryResource(
      `resource: memory
id: recent
type: message_count_based
max_messages: 10
flushing:
  type: lru
  summarize_threshold: 1
  target_ratio: 0.5
  track_access: true
persistence:
  type: redis
  ttl: 1h
`,
      'recent.yaml',
    );
    expect(parsed.problems).toEqual([]);
    pipeline = await startPipeline(ns, createMemoryRegistry([parsed.resource!]));
  });
  afterEach(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('evicts the never-read messages first and keeps what the agent read', async () => {
    const target = { resource: 'recent', key: 'l:1' };
    await pipeline.workers.queues.flush.pause();
    const receipt = await pipeline.client.append(
      target,
      Array.from({ length: 10 }, (_, i) => ({ role: 'user' as const, content: `fact ${i}` })),
    );
    await pipeline.client.waitFor(receipt.jobId!);
    await pipeline.client.read(target, { offset: 0, limit: 3 }); // the agent reads 0, 1, 2
    const accessKey = memoryKeys(ns.keyPrefix, { project: 'test', ...target }).acc;
    expect(await ns.redis.hlen(accessKey)).toBe(3);
    await pipeline.workers.queues.flush.resume();
    // Polled through the store: a client read would itself count as the agent reading.
    const ref = { project: 'test', ...target };
    await eventually(
      async () => (await pipeline.store.read(ref)).total === 5,
      'the automatic lru flush',
    );
    const left = (await pipeline.store.read(ref, { limit: 10 })).messages.map(
      (m) => m.message.content,
    );
    expect(left).toEqual(['fact 0', 'fact 1', 'fact 2', 'fact 8', 'fact 9']);
    const stats = await pipeline.client.stats(target, { deep: true });
    expect(stats).toMatchObject({ evictedCount: 5, acceptedCount: 10, consistent: true });
    await pipeline.client.delete(target).then((r) => pipeline.client.waitFor(r));
    expect(await ns.redis.exists(accessKey)).toBe(0);
  });
});
