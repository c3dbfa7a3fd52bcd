import { Queue, Worker } from 'bullmq';
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { MemoryRef } from '../../src/redis/keys.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { createAppendProcessor } from '../../processors/append.js';
import { JOBS, QUEUES } from '../../queues/names.js';
import { eventually, quietLog } from '../helpers/pipeline.js';
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
    const content = window.messages[0]!.message.content;
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
