import { contentText } from '../../src/core/message.js';
import { Queue, Worker } from 'bullmq';
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { MemoryRef } from '../../src/redis/keys.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { createAppendProcessor } from '../../processors/append.js';
import { appendErasureDeps } from '../../processors/workers.js';
import { JOBS, QUEUES } from '../../queues/names.js';
import { eventually, quietLog, startPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const ADDRESS = 'jane.doe@example.com';
const KEY = 'a-test-key-that-is-long-enough';

const resourceYaml = (id: string, scope: string) => `resource: memory
id: ${id}
type: token_based
max_tokens: 100000
persistence:
  type: redis
  ttl: 1h
privacy_policy:
  detectors: [email]
  action: hash
  hash_key_env: TEST_PII_KEY
privacy_scope: ${scope}
`;

describe('privacy_scope: hash pseudonyms in the append processor, on real Redis', () => {
  let ns: RedisNamespace;
  let queue: Queue;
  let worker: Worker;

  beforeEach(() => {
    ns = createRedisNamespace();
    const registry = createMemoryRegistry(
      [
        parseMemoryResource(resourceYaml('per-session', 'session'), 'per-session.yaml').resource!,
        parseMemoryResource(resourceYaml('project-wide', 'global'), 'project-wide.yaml').resource!,
      ],
      { TEST_PII_KEY: KEY },
    );
    queue = new Queue(QUEUES.append, { connection: ns.connect(), prefix: ns.queuePrefix });
    worker = new Worker(
      QUEUES.append,
      createAppendProcessor({
        store: createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix }),
        registry,
        enqueueTokenCount: async () => {},
        ...appendErasureDeps(
          createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix }),
          queue,
        ),
        log: quietLog,
        metrics: createMetrics(),
      }),
      { connection: ns.connect(), prefix: ns.queuePrefix },
    );
  });
  afterEach(async () => {
    await worker.close();
    await queue.close();
    await ns.cleanup();
  });

  /**
   * Enqueues the address unredacted (a job built around MemoryClient, so only the processor
   * applies the policy) to `ref` and returns what the instance stores.
   */
  async function storedFor(ref: MemoryRef): Promise<string> {
    const job = await queue.add(JOBS.append, {
      ref,
      messages: [
        {
          id: nextId(),
          role: 'user',
          content: `mail ${ADDRESS}`,
          created_at: new Date().toISOString(),
        },
      ],
    });
    await eventually(async () => (await job.isCompleted()) || (await job.isFailed()), 'the job');
    expect(job.failedReason ?? (await queue.getJob(job.id!))?.failedReason).toBeUndefined();
    const store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    const window = await store.read(ref);
    const content = window.messages[0]!.message.content as string;
    expect(content).toMatch(/^mail pii_[0-9a-f]{16}$/);
    return content;
  }

  it('session: the same address gets a different pseudonym in each memory instance', async () => {
    const a = await storedFor({ project: 'p', resource: 'per-session', key: 'chat:1' });
    const b = await storedFor({ project: 'p', resource: 'per-session', key: 'chat:2' });
    expect(a).not.toBe(b);
  });

  it('global: the same address gets the same pseudonym in every memory instance', async () => {
    const a = await storedFor({ project: 'p', resource: 'project-wide', key: 'chat:1' });
    const b = await storedFor({ project: 'p', resource: 'project-wide', key: 'chat:2' });
    expect(a).toBe(b);
  });
});

describe('privacy_scope: session through MemoryClient (append, write, flush summary)', () => {
  it('every path stores per-instance pseudonyms and no job fails closed for want of the instance', async () => {
    const registry = createMemoryRegistry(
      [
        parseMemoryResource(
          `${resourceYaml('per-session', 'session')}flushing:\n  type: hybrid_summary\n  summarize_threshold: 0.8\n  summary_tokens: 200\n`,
          'per-session.yaml',
        ).resource!,
      ],
      { TEST_PII_KEY: KEY },
    );
    const ns = createRedisNamespace();
    const pipeline = await startPipeline(ns, registry, 'p');
    try {
      const { client, store } = pipeline;
      const one = { resource: 'per-session', key: 'chat:1' };
      const two = { resource: 'per-session', key: 'chat:2' };
      for (const target of [one, two]) {
        const receipt = await client.append(target, [
          { role: 'user', content: `mail ${ADDRESS}` },
          { role: 'assistant', content: `noted, ${ADDRESS}` },
        ]);
        await client.waitFor(receipt.jobId!);
      }
      const pseudonym = async (key: string): Promise<string> => {
        const window = await store.read({ project: 'p', resource: 'per-session', key });
        const contents = window.messages.map((m) => contentText(m.message.content)).join(' ');
        expect(contents).not.toContain(ADDRESS);
        return /pii_[0-9a-f]{16}/.exec(contents)![0];
      };
      expect(await pseudonym('chat:1')).not.toBe(await pseudonym('chat:2'));

      // write replaces the log of chat:2 through the cleanup processor
      await client.waitFor(
        await client.write(two, [{ role: 'user', content: `again ${ADDRESS}` }]),
      );
      const written = await store.read({ project: 'p', resource: 'per-session', key: 'chat:2' });
      expect(written.messages.map((m) => m.message.content)).toEqual([
        expect.stringMatching(/^again pii_[0-9a-f]{16}$/),
      ]);

      // a hybrid flush folds chat:1 into a summary, redacted with the instance's pseudonyms
      await client.waitFor(await client.flush(one, { strategy: 'hybrid_summary' }));
      const flushed = await store.read({ project: 'p', resource: 'per-session', key: 'chat:1' });
      expect(flushed.summary?.content ?? '').not.toContain(ADDRESS);
    } finally {
      await pipeline.close();
      await ns.cleanup();
    }
  });
});
