/**
 * Fairness between tenants: a global backlog mark alone counts every project together and no
 * bytes, so one project could enqueue ~10 GiB (10 000 messages of 1 MiB) and put every other
 * project into 429. A byte bound (global and per project) and a per-project message mark refuse
 * the project over them while others are admitted. The append queue is paused, so nothing drains
 * until a test says so.
 */
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { createMetrics, type MemqMetrics } from '../../src/metrics/metrics.js';
import { backlogLedgerKeys, createBacklogLedger } from '../../queues/backlog-ledger.js';
import type { BacklogBounds } from '../../queues/backpressure.js';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import type { ErrorBody } from '../../src/http/http-errors.js';
import { KEYS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const auth = (key: string) => ({ Authorization: `Bearer ${key}` });
/** The error of an error answer. */
const errorOf = (res: request.Response) => (res.body as ErrorBody).error;
const M = '/v1/memories/agent-memory';
/** One message of about 4 KiB: an append job of it carries a little more (ids, ref). */
const big = (n: number) => ({ messages: [{ role: 'user', content: `${n}`.padEnd(4000, 'x') }] });

describe('backlog bounds per project and in bytes', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let http: TestHttp | undefined;
  let client: MemoryClient | undefined;
  let metrics: MemqMetrics;

  beforeEach(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
  });
  afterEach(async () => {
    await http?.close();
    await client?.close();
    http = undefined;
    client = undefined;
    await ns.cleanup();
  });

  /** The HTTP app over a client with `bounds`, the append and cleanup queues paused. */
  const start = async (bounds: BacklogBounds) => {
    const producer = ns.connect({ producer: true });
    metrics = createMetrics();
    client = createMemoryClient({
      metrics,
      connection: producer,
      queuePrefix: ns.queuePrefix,
      registry,
      project: 'test',
      store: createMemoryStore({ redis: producer, keyPrefix: ns.keyPrefix }),
      backpressure: {
        highWaterMessages: 10_000,
        lowWaterMessages: 5_000,
        policy: 'reject',
        ...bounds,
      },
    });
    http = await startHttp(ns, registry, { client });
    await http.pipeline.workers.queues.append.pause();
    await http.pipeline.workers.queues.cleanup.pause();
    return http;
  };
  const append = (h: TestHttp, key: string, memory: string, n: number) =>
    request(h.app).post(`${M}/${memory}/messages`).set(auth(key)).send(big(n));
  /** Jobs in the append queue, whatever their state. */
  const appendJobs = async (h: TestHttp) => {
    const counts = await h.pipeline.workers.queues.append.getJobCounts(
      'waiting',
      'active',
      'completed',
    );
    return Object.values(counts).reduce((sum, n) => sum + n, 0);
  };
  const totals = async () =>
    Object.fromEntries(
      Object.entries(await ns.redis.hgetall(backlogLedgerKeys(ns.queuePrefix).totals)).map(
        ([field, value]) => [field, Number(value)],
      ),
    );

  it('refuses a project over its byte budget while another project is admitted, and admits it again once drained', async () => {
    const h = await start({ projectMaxBytes: 10_000 });
    for (let n = 0; n < 3; n++) expect((await append(h, KEYS.acme, 'a', n)).status).toBe(202);
    const acmeBytes = (await totals())['bytes:acme']!;
    expect(acmeBytes).toBeGreaterThanOrEqual(10_000);
    expect(acmeBytes).toBeLessThan(15_000);

    const refused = await append(h, KEYS.acme, 'a', 3);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(errorOf(refused)).toMatchObject({
      code: 'BACKPRESSURE',
      details: {
        queue: 'memory-append',
        bound: 'project_bytes',
        project: 'acme',
        usage: acmeBytes,
        limit: 10_000,
        retry_after_ms: 1000,
      },
    });
    expect(errorOf(refused).message).toContain('MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES');
    // A write is bounded the same way (its job would go to memory-cleanup).
    const write = await request(h.app).put(`${M}/a/messages`).set(auth(KEYS.acme)).send(big(9));
    expect(write.status).toBe(429);
    expect(errorOf(write).details).toMatchObject({
      queue: 'memory-cleanup',
      bound: 'project_bytes',
    });
    expect(await appendJobs(h)).toBe(3);
    expect(await h.pipeline.workers.queues.cleanup.getJobCounts('waiting')).toEqual({ waiting: 0 });

    const other = await append(h, KEYS.beta, 'b', 0);
    expect(other.status).toBe(202);
    expect(await appendJobs(h)).toBe(4);

    // Once the workers took acme's jobs, the ledger settles and acme is admitted again.
    await h.pipeline.workers.queues.append.resume();
    await eventually(
      async () => (await append(h, KEYS.acme, 'a', 4)).status === 202,
      'acme admitted again',
    );
    // The last job is settled by the next check or the maintenance sweep's reconcile.
    const ledger = createBacklogLedger(ns.redis, ns.queuePrefix);
    await eventually(async () => {
      await ledger.reconcile();
      return (await totals())['bytes:acme'] === undefined;
    }, 'the ledger to settle every acme job');
    expect(await totals()).toEqual({});
  });

  it('refuses everyone once the bytes of all projects reach the global bound', async () => {
    const h = await start({ maxBytes: 10_000 });
    for (let n = 0; n < 3; n++) expect((await append(h, KEYS.acme, 'a', n)).status).toBe(202);
    const refused = await append(h, KEYS.beta, 'b', 0);
    expect(refused.status).toBe(429);
    expect(errorOf(refused).details).toMatchObject({ bound: 'bytes', limit: 10_000 });
    expect(errorOf(refused).message).toContain('MEMQ_BACKPRESSURE_MAX_BYTES');
    expect(await appendJobs(h)).toBe(3);
  });

  it("refuses a project at its own message mark, reached with a few batched jobs, while another project's appends are accepted", async () => {
    const h = await start({ projectHighWaterMessages: 10 });
    const two = (n: number) => ({
      messages: [
        { role: 'user', content: `question ${n}` },
        { role: 'assistant', content: `answer ${n}` },
      ],
    });
    const post = (key: string, memory: string, body: object) =>
      request(h.app).post(`${M}/${memory}/messages`).set(auth(key)).send(body);
    // Five appends at once: ten messages, in five jobs at most (group commit may join them).
    const accepted = await Promise.all([0, 1, 2, 3, 4].map((n) => post(KEYS.acme, 'a', two(n))));
    expect(accepted.map((res) => res.status)).toEqual([202, 202, 202, 202, 202]);
    expect(await appendJobs(h)).toBeLessThanOrEqual(5);

    const refused = await post(KEYS.acme, 'a', two(5));
    expect(refused.status).toBe(429);
    expect(errorOf(refused).details).toMatchObject({
      queue: 'memory-append',
      bound: 'project_messages',
      project: 'acme',
      usage: 10,
      limit: 10,
    });
    expect(errorOf(refused).message).toContain('MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER');
    for (let n = 0; n < 4; n++) expect((await post(KEYS.beta, 'b', two(n))).status).toBe(202);
    expect(await totals()).toMatchObject({ messages: 18, 'messages:acme': 10, 'messages:beta': 8 });
    expect(
      await metrics.registry.getSingleMetricAsString('memq_backpressure_rejections_total'),
    ).toContain(
      'memq_backpressure_rejections_total{queue="memory-append",bound="project_messages"} 1',
    );
  });
});
