import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createTokenCounter, encodingForModel } from '../../src/tokens/counter.js';
import { QUEUES } from '../../queues/names.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

describe('token-count job on real Redis', () => {
  let ns: RedisNamespace | undefined;
  let pipeline: TestPipeline | undefined;
  afterEach(async () => {
    await pipeline?.close();
    await ns?.cleanup();
  });

  it('counts a 2 MB message without losing its job lock (lock 600 ms)', async () => {
    ns = createRedisNamespace();
    const registry = await shippedMemories();
    pipeline = await startPipeline(ns, registry, 'test', { lockDurationMs: 600 });
    const tokenWorker = pipeline.workers.workers.find((w) => w.name === QUEUES.tokenCount)!;
    const trouble: string[] = [];
    tokenWorker.on('stalled', (id) => trouble.push(`stalled ${id}`));
    tokenWorker.on('failed', (job, err) => trouble.push(`failed ${job?.id}: ${err.message}`));
    tokenWorker.on('error', (err) => trouble.push(`error ${err.message}`));

    // Random base64: the costliest text per character for BPE (about 4 s for 2 MB here).
    const content = randomBytes(1_500_000).toString('base64');
    expect(content.length).toBe(2_000_000);
    const target = { resource: 'agent-memory', key: 'big:1' };
    // 1.4 M tokens are over agent-memory's trigger: keep the automatic flush from folding it.
    await pipeline.workers.queues.flush.pause();
    const receipt = await pipeline.client.append(target, [{ role: 'user', content }]);
    await pipeline.client.waitFor(receipt.jobId!);

    await eventually(
      async () => (await pipeline!.client.read(target)).exact,
      'the exact count',
      60_000,
    );
    const counter = await createTokenCounter(
      encodingForModel(registry.get('agent-memory').tokenProvider.model),
    );
    const window = await pipeline.client.read(target);
    expect(window.tokenCount).toBe(counter.countMessage({ role: 'user', content }));
    expect(window.tokenCount).toBeGreaterThan(1_000_000);
    // The lock is renewed every 300 ms while the counting thread works: no stall, no failure.
    // (How long the event loop pauses is a speed figure, not asserted in a test.)
    expect(trouble).toEqual([]);
  }, 90_000);
});
