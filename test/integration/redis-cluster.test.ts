import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from 'ioredis';
import type { MemoryClient } from '../../queues/memory-client.js';
import { loadEnvConfig } from '../../src/config/env.js';
import { compose, type Composition } from '../../src/runtime/compose.js';
import { closeRedis, createRedis, type RedisConnection } from '../../src/redis/connection.js';
import { runReplay, type ReplayReport } from '../../src/replay/replay.js';
import { runAudit } from '../../src/replay/replay-audit.js';
import type { MemoryStore } from '../../src/store/memory-store.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { startMemqProcess } from '../helpers/cli.js';
import { shippedMemories } from '../helpers/memories.js';
import { quietLog } from '../helpers/pipeline.js';
import { startTestCluster, type TestCluster } from '../helpers/redis-cluster.js';

const KEY_PREFIX = 'memqc:';
const QUEUE_PREFIX = '{memqc}';
const LIMIT = 300;

describe('memq on a three-master Redis Cluster', () => {
  let cluster: TestCluster;
  let registry: MemoryRegistry;
  let producer: RedisConnection;
  let worker: RedisConnection;
  let client: MemoryClient;
  let store: MemoryStore;
  let graph: Composition;
  let report: ReplayReport;

  beforeAll(async () => {
    cluster = await startTestCluster();
    registry = await shippedMemories();
    const target = { url: `redis://${cluster.nodes[0]}`, clusterNodes: cluster.nodes };
    producer = createRedis({ ...target, role: 'producer' });
    worker = createRedis({ ...target, role: 'worker' });
    graph = await compose({
      env: loadEnvConfig({
        MEMQ_KEY_PREFIX: KEY_PREFIX,
        MEMQ_QUEUE_PREFIX: QUEUE_PREFIX,
        MEMQ_PROJECT: 'test',
        MEMQ_APPEND_CONCURRENCY: '8',
        MEMQ_TOKEN_COUNT_CONCURRENCY: '2',
      }),
      redis: { producer, worker },
      registry,
      log: quietLog,
      workers: true,
      maintenanceSchedule: false,
      metrics: createMetrics(),
    });
    ({ client, store } = graph);
    const { metrics } = graph;
    report = await runReplay(
      {
        client,
        store,
        connection: producer,
        queuePrefix: QUEUE_PREFIX,
        project: 'test',
        log: quietLog,
        metrics,
      },
      { memory: 'customer-support', limit: LIMIT },
    );
  }, 120_000);
  afterAll(async () => {
    for (const closable of graph?.closables ?? []) await closable.close();
    if (producer) await closeRedis(producer);
    if (worker) await closeRedis(worker);
    await cluster?.stop();
  });

  it('spreads the memories over every master and replays real e-mails with nothing lost', async () => {
    const masters = (producer as Cluster).nodes('master');
    expect(masters).toHaveLength(3);
    const perNode = await Promise.all(
      masters.map(async (node) => (await node.keys(`${KEY_PREFIX}m:*`)).length),
    );
    expect(perNode.every((n) => n > 0)).toBe(true); // hash tags put instances on all three
    expect(report.failedJobs).toBe(0);
    expect(report.enqueueErrors).toBe(0);
    expect(report.messagesStored + report.messagesFolded).toBe(LIMIT);
    expect(report.exactMemories).toBe(report.threads);
  });

  it('passes the independent audit (every master scanned)', async () => {
    const audit = await runAudit(
      { redis: producer, keyPrefix: KEY_PREFIX, queuePrefix: QUEUE_PREFIX, registry, env: {} },
      { memory: 'customer-support', project: 'test', limit: LIMIT },
    );
    expect(audit.violations).toEqual([]);
    expect(audit.messages).toBe(LIMIT);
  });

  it('runs write, flush, clear and delete jobs without a cross-slot error', async () => {
    const target = { resource: 'customer-support', key: 'cluster:ops' };
    await client.waitFor(
      await client.write(target, [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'second' },
      ]),
    );
    const plan = await client.waitFor<{ applied: boolean }>(
      await client.flush(target, { dryRun: true }),
    );
    expect(plan.applied).toBe(false);
    await client.waitFor(await client.clear(target, { confirm: true }));
    expect((await client.read(target)).total).toBe(0);
    await client.waitFor(await client.delete(target));
    expect((await client.stats(target)).exists).toBe(false);
    expect(await client.canary({ timeoutMs: 5_000 })).toBeGreaterThanOrEqual(0);
  });

  it('memq start runs against REDIS_CLUSTER_NODES: ready, and an append over HTTP commits', async () => {
    const memq = await startMemqProcess('start', {
      ...process.env,
      REDIS_URL: '',
      REDIS_CLUSTER_NODES: cluster.nodes.join(','),
      PORT: '0',
      MEMQ_API_KEYS: 'cluster-test-key-012345:cli',
      MEMQ_BOARD_PASSWORD: 'cluster-board-password',
      MEMQ_KEY_PREFIX: 'memqcli:',
      MEMQ_QUEUE_PREFIX: '{memqcli}',
      MEMQ_LOG_LEVEL: 'warn',
    });
    try {
      const base = memq.base!;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const append = await fetch(`${base}/v1/memories/customer-support/c-1/messages?wait=true`, {
        method: 'POST',
        headers: {
          Authorization: 'Bearer cluster-test-key-012345',
          'Content-Type': 'application/json',
        },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'hello, cluster' }] }),
      });
      expect(append.status).toBe(200);
    } finally {
      expect(await memq.stop()).toBe(0);
    }
  });
});
