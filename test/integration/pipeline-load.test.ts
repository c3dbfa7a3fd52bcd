import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/memory-store.js';
import {
  createMemoryClient,
  type AppendReceipt,
  type MemoryClient,
} from '../../queues/memory-client.js';
import { createMemoryQueues, type MemoryQueues } from '../../queues/memory-queues.js';
import { loadEnvConfig } from '../../src/config/env.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { NO_PROVIDER_API_KEYS } from '../../src/providers/api-keys.js';
import { composeWorkers, type WorkerGraph } from '../../src/runtime/compose.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually, quietLog } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const MEMORY = 'agent-memory';

describe('the pipeline under load, faults and restarts', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let client: MemoryClient;
  let store: MemoryStore;
  let queues: MemoryQueues;
  const running: WorkerGraph[] = [];

  /** One more worker process's workers (own connection and store), on the shared queues. */
  const start = async (
    concurrency: number,
    workerStore: MemoryStore = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix }),
  ) => {
    const workers = await composeWorkers({
      connection: ns.connect(),
      queues,
      store: workerStore,
      registry,
      env: {
        ...loadEnvConfig({ MEMQ_KEY_PREFIX: ns.keyPrefix, MEMQ_QUEUE_PREFIX: ns.queuePrefix }),
        appendConcurrency: concurrency,
        tokenCountConcurrency: 2,
      },
      providerKeys: NO_PROVIDER_API_KEYS,
      metrics: createMetrics(),
      log: quietLog,
    });
    running.push(workers);
    return workers;
  };

  beforeEach(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
    const producer = ns.connect({ producer: true });
    store = createMemoryStore({ redis: producer, keyPrefix: ns.keyPrefix });
    queues = createMemoryQueues(producer, ns.queuePrefix);
    client = createMemoryClient({
      connection: producer,
      queuePrefix: ns.queuePrefix,
      queues,
      registry,
      project: 'load',
      store,
    });
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((w) => w.close()));
    await client.close();
    await queues.close();
    await ns.cleanup();
  });

  /** Appends `perMemory` single-message jobs to each of `memories` memories, interleaved. */
  async function load(memories: number, perMemory: number): Promise<AppendReceipt[]> {
    const receipts: Promise<AppendReceipt>[] = [];
    for (let i = 0; i < perMemory; i++) {
      for (let m = 0; m < memories; m++) {
        receipts.push(
          client.append({ resource: MEMORY, key: `agent:${m}:load` }, [
            { role: i % 2 ? 'assistant' : 'user', content: `m${m} turn ${i}` },
          ]),
        );
      }
    }
    return Promise.all(receipts);
  }

  async function expectAllStoredOnce(receipts: readonly AppendReceipt[], memories: number) {
    const expected = new Map<string, string[]>();
    for (const r of receipts)
      expected.set(r.ref.key, [...(expected.get(r.ref.key) ?? []), ...r.messageIds]);
    await eventually(
      async () => {
        const totals = await Promise.all(
          [...expected.keys()].map((key) =>
            store.read({ project: 'load', resource: MEMORY, key }, { limit: 1 }),
          ),
        );
        return totals.every((w, i) => w.total === [...expected.values()][i]!.length);
      },
      'every accepted message to be committed',
      60_000,
    );
    expect(expected.size).toBe(memories);
    for (const [key, ids] of expected) {
      const ref = { project: 'load', resource: MEMORY, key };
      const window = await store.read(ref, { limit: 1000 });
      expect(window.messages.map((m) => m.message.id)).toEqual([...ids].sort());
      expect((await store.stats(ref)).consistent).toBe(true);
    }
  }

  it('stores 5,000 appends across 50 memories once each, in id order, at worker concurrency 32', async () => {
    await start(32);
    const receipts = await load(50, 100);
    expect(receipts).toHaveLength(5000);
    await expectAllStoredOnce(receipts, 50);
  }, 120_000);

  it('retries a processor that fails after committing, without storing anything twice', async () => {
    const real = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    let failures = 0;
    const flaky: MemoryStore = {
      ...real,
      async append(ref, messages, ttl) {
        const result = await real.append(ref, messages, ttl);
        if (failures < 3) {
          failures += 1;
          throw new Error('simulated crash after commit');
        }
        return result;
      },
    };
    await start(4, flaky);
    const receipts = await load(3, 2);
    await expectAllStoredOnce(receipts, 3);
    expect(failures).toBe(3);
  }, 60_000);

  it('keeps every accepted message when workers shut down mid-load and others take over', async () => {
    const first = await start(8);
    const loading = load(20, 50);
    await new Promise((r) => setTimeout(r, 150));
    await first.close();
    const receipts = await loading;
    await start(8);
    await expectAllStoredOnce(receipts, 20);
  }, 120_000);
});
