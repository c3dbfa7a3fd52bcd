import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { startHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';
import { startBareHttp } from './http-bare-app.js';

/**
 * The answer cache outlives the test, so every request either shares the one probe in flight or
 * gets its answer: the bound on canaries does not depend on how fast the requests arrive.
 */
const HOUR = 3_600_000;

/** Every job of `memory-cleanup`, whatever its state. */
const allJobs = (queue: { getJobCounts(): Promise<Record<string, number>> }) =>
  queue.getJobCounts().then((counts) => Object.values(counts).reduce((a, b) => a + b, 0));

describe('/readyz is not an anonymous job factory', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;

  beforeEach(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  it('50 concurrent /readyz with no worker create at most one canary, and none is left after the timeout', async () => {
    const http = startBareHttp(ns, registry, { readyTimeoutMs: 300, readyCacheMs: HOUR });
    try {
      const answers = await Promise.all(
        Array.from({ length: 50 }, () => request(http.app).get('/readyz')),
      );
      for (const res of answers) {
        expect(res.status).toBe(503);
        expect(res.body).toMatchObject({ status: 'not ready', checks: { canary: { ok: false } } });
      }
      // BullMQ numbers jobs from the queue's `id` counter: it counts every job ever added.
      const added = Number((await ns.redis.get(`${ns.queuePrefix}:memory-cleanup:id`)) ?? 0);
      expect(added).toBeLessThanOrEqual(1);
      expect(await allJobs(http.queues.cleanup)).toBe(0);
    } finally {
      await http.close();
    }
  });

  it('with workers, /readyz answers 200 and its completed canaries do not stay in Redis', async () => {
    const http = await startHttp(ns, registry, { readyCacheMs: HOUR });
    try {
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => request(http.app).get('/readyz')),
      );
      for (const res of answers) {
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ status: 'ready', checks: { canary: { ok: true } } });
      }
      const added = Number((await ns.redis.get(`${ns.queuePrefix}:memory-cleanup:id`)) ?? 0);
      expect(added).toBe(1);
      expect(await allJobs(http.pipeline.workers.queues.cleanup)).toBe(0);
    } finally {
      await http.close();
    }
  });

  it('with the default 1 s cache, readiness follows a worker that starts later (memq serve, then memq work)', async () => {
    const http = startBareHttp(ns, registry, { readyTimeoutMs: 300 });
    let pipeline: TestPipeline | undefined;
    try {
      expect((await request(http.app).get('/readyz')).status).toBe(503);
      pipeline = await startPipeline(ns, registry);
      await eventually(
        async () => (await request(http.app).get('/readyz')).status === 200,
        '/readyz to answer 200 once a worker runs',
      );
      expect(await allJobs(http.queues.cleanup)).toBe(0);
    } finally {
      await pipeline?.close();
      await http.close();
    }
  });
});
