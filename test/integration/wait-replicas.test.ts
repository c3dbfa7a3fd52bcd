/**
 * `MEMQ_WAIT_REPLICAS` on a real primary with a real replica (`replicaof`), both local processes
 * (never the shared Redis): an acknowledged append is on the replica, and too few replicas make
 * the producer answer Redis-unavailable (503) and the worker retry the job until they confirm.
 */
import { once } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { loadEnvConfig } from '../../src/config/env.js';
import { RedisUnavailableError } from '../../src/core/errors.js';
import { closeRedis, createRedis } from '../../src/redis/connection.js';
import { confirmReplicas, connectionSession } from '../../src/redis/replicas.js';
import { compose, type Composition } from '../../src/runtime/compose.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { startMemqProcess } from '../helpers/cli.js';
import { shippedMemories } from '../helpers/memories.js';
import { quietLog } from '../helpers/pipeline.js';
import { startTestRedisServer, type TestRedisServer } from '../helpers/redis-server.js';

const KEY_PREFIX = 'memqw:';
const QUEUE_PREFIX = '{memqw}';
const MEMORY = 'customer-support';
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe('MEMQ_WAIT_REPLICAS on a primary with one replica', () => {
  let primary: TestRedisServer;
  let replica: TestRedisServer;
  /** Admin connection to the replica (REPLICAOF, reads). */
  let replicaAdmin: Redis;
  let graph: Composition | undefined;
  const opened: Redis[] = [];

  /** Points the replica at the primary and waits until its link is up. */
  const attach = async () => {
    await replicaAdmin.replicaof('127.0.0.1', primary.port);
    for (let i = 0; i < 200; i++) {
      if ((await replicaAdmin.info('replication')).includes('master_link_status:up')) return;
      await sleep(50);
    }
    throw new Error('the replica did not sync');
  };

  beforeAll(async () => {
    primary = await startTestRedisServer('none');
    replica = await startTestRedisServer('none');
    replicaAdmin = createRedis({ url: replica.url, role: 'producer' });
    await attach();
  }, 60_000);
  afterAll(async () => {
    await closeRedis(replicaAdmin);
    await replica?.destroy();
    await primary?.destroy();
  });
  afterEach(async () => {
    for (const closable of graph?.closables ?? []) await closable.close();
    graph = undefined;
    await Promise.all(opened.splice(0).map((c) => closeRedis(c)));
    await attach();
  });

  /** memq (client and workers) on the primary with `MEMQ_WAIT_REPLICAS=replicas`, 200 ms WAITs. */
  const start = async (replicas: number, project: string) => {
    const producer = createRedis({ url: primary.url, role: 'producer' });
    const worker = createRedis({ url: primary.url, role: 'worker' });
    opened.push(producer, worker);
    graph = await compose({
      env: loadEnvConfig({
        MEMQ_KEY_PREFIX: KEY_PREFIX,
        MEMQ_QUEUE_PREFIX: QUEUE_PREFIX,
        MEMQ_PROJECT: project,
        MEMQ_WAIT_REPLICAS: String(replicas),
        MEMQ_WAIT_REPLICAS_TIMEOUT_MS: '200',
      }),
      redis: { producer, worker },
      registry: await shippedMemories(),
      log: quietLog,
      workers: true,
      maintenanceSchedule: false,
      metrics: createMetrics(),
    });
    return graph;
  };

  /** Contents of `key`'s log as the replica holds it. */
  const onReplica = async (project: string, key: string) => {
    const store = createMemoryStore({ redis: replicaAdmin, keyPrefix: KEY_PREFIX });
    const window = await store.read({ project, resource: MEMORY, key });
    return window.messages.map((m) => m.message.id);
  };

  it('with 1: the receipt comes once the replica holds the job, the commit once it holds the messages', async () => {
    const { client, queues } = await start(1, 'wait-one');
    const receipt = await client.append({ resource: MEMORY, key: 'k1' }, [
      { role: 'user', content: 'copied before it is acknowledged' },
    ]);
    // Read on the replica right away: WAIT confirmed the job reached it.
    expect(await replicaAdmin.exists(queues.append.toKey(receipt.jobId!))).toBe(1);
    await client.waitFor(receipt, { timeoutMs: 10_000 });
    expect(await onReplica('wait-one', 'k1')).toEqual(receipt.messageIds);
  });

  it('with the replica gone: the append fails Redis-unavailable, the job retries until a replica confirms, a retry of the append is deduplicated', async () => {
    const { client, queues } = await start(1, 'wait-gone');
    await replicaAdmin.replicaof('NO', 'ONE');
    const message = { id: '01JC0000000000000000000001', role: 'user' as const, content: 'hello' };
    const target = { resource: MEMORY, key: 'k2' };
    const failure = await client.append(target, [message]).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(RedisUnavailableError);
    expect((failure as Error).message).toContain('0 of 1 replicas confirmed');
    // The job stays enqueued; the worker commits it on the primary but cannot complete it.
    const appendJobs = async () =>
      (await queues.append.getJobs(['waiting', 'active', 'delayed', 'completed'])).filter((job) =>
        JSON.stringify(job.data).includes(message.id),
      );
    let attempts = 0;
    for (let i = 0; i < 200 && attempts === 0; i++) {
      const [job] = await appendJobs();
      if (job?.attemptsMade) {
        attempts = job.attemptsMade;
        expect(job.failedReason).toContain('replicas confirmed');
      }
      await sleep(50);
    }
    expect(attempts).toBeGreaterThan(0);
    await attach();
    // The retry completes once the replica confirms.
    let state = '';
    for (let i = 0; i < 300 && state !== 'completed'; i++) {
      const [job] = await appendJobs();
      state = job ? await job.getState() : 'gone';
      await sleep(50);
    }
    expect(state).toBe('completed');
    // The caller, told 503, retries with the same id: stored once.
    const again = await client.append(target, [message]);
    expect(await client.waitFor(again, { timeoutMs: 10_000 })).toMatchObject({
      added: 0,
      duplicates: 1,
    });
    expect(await onReplica('wait-gone', 'k2')).toEqual([message.id]);
  }, 60_000);

  it('memq start with MEMQ_WAIT_REPLICAS=2 and one replica answers 503 REDIS_UNAVAILABLE', async () => {
    const key = 'wait-test-key-0123456789';
    const memq = await startMemqProcess('start', {
      ...process.env,
      REDIS_URL: primary.url,
      MEMQ_KEY_PREFIX: KEY_PREFIX,
      MEMQ_QUEUE_PREFIX: QUEUE_PREFIX,
      MEMQ_LOG_LEVEL: 'warn',
      MEMQ_WAIT_REPLICAS: '2',
      MEMQ_WAIT_REPLICAS_TIMEOUT_MS: '100',
      PORT: '0',
      MEMQ_API_KEYS: `${key}:wait-two`,
      MEMQ_BOARD_PASSWORD: 'wait-board-password',
    });
    try {
      const response = await fetch(`${memq.base!}/v1/memories/${MEMORY}/k3/messages`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'two replicas wanted' }] }),
      });
      expect(response.status).toBe(503);
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('REDIS_UNAVAILABLE');
      expect(body.error.message).toContain('1 of 2 replicas confirmed');
    } finally {
      expect(await memq.stop()).toBe(0);
    }
  });

  it('a reconnect between the write and WAIT leaves the write unconfirmed (a retry confirms it)', async () => {
    const worker = createRedis({ url: primary.url, role: 'worker' });
    const admin = createRedis({ url: primary.url, role: 'producer' });
    opened.push(worker, admin);
    const confirmation = { replicas: 1, timeoutMs: 1000 };
    await worker.ping();
    // Without a reconnect, the replica confirms the write.
    let session = connectionSession(worker);
    await worker.set(`${KEY_PREFIX}reconnect`, 'one');
    expect(await confirmReplicas(worker, confirmation, 'append', session)).toBe(1);
    // The connection is closed after the write and comes back before WAIT: WAIT would answer on
    // the new connection, which made no write, so it says nothing of the one to confirm.
    session = connectionSession(worker);
    await worker.set(`${KEY_PREFIX}reconnect`, 'two');
    const id = await worker.client('ID');
    const ready = once(worker, 'ready');
    expect(await admin.client('KILL', 'ID', String(id))).toBe(1);
    await ready;
    const failure = await confirmReplicas(worker, confirmation, 'append', session).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(RedisUnavailableError);
    expect((failure as Error).message).toContain(
      'append: the connection to Redis was re-established',
    );
    // The retry (a new session, the idempotent write made again) is confirmed.
    session = connectionSession(worker);
    await worker.set(`${KEY_PREFIX}reconnect`, 'two');
    expect(await confirmReplicas(worker, confirmation, 'append', session)).toBe(1);
  });
});
