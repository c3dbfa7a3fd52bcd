/**
 * `/readyz` during a shutdown (docs/operations.md, "Shutdown"): from the moment the drain starts
 * it answers 503 `draining` -- also a probe that was already running then -- while `/healthz`
 * still answers 200, so a load balancer stops sending to a process that still serves.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { KEYS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

describe('/readyz while draining', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let http: TestHttp;
  let draining = false;

  beforeAll(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
    http = await startHttp(ns, registry, { draining: () => draining, readyCacheMs: 0 });
  });
  afterAll(async () => {
    await http.close();
    await ns.cleanup();
  });

  it('answers 503 "draining" once the drain starts, a probe already running included; /healthz stays 200', async () => {
    expect((await request(http.app).get('/readyz')).status).toBe(200);

    // A probe whose canary waits (no worker takes it while the queue is paused) when the drain
    // starts: its answer comes after, and says draining.
    await http.pipeline.workers.queues.cleanup.pause();
    try {
      const running = request(http.app)
        .get('/readyz')
        .then((res) => res);
      await new Promise((resolve) => setTimeout(resolve, 200));
      draining = true;
      const late = await running;
      expect(late.status).toBe(503);
      expect(late.body).toEqual({ status: 'draining', checks: {} });
    } finally {
      await http.pipeline.workers.queues.cleanup.resume();
    }

    const ready = await request(http.app).get('/readyz');
    expect(ready.status).toBe(503);
    expect((ready.body as { status: string }).status).toBe('draining');
    const health = await request(http.app).get('/healthz');
    expect(health.status).toBe(200);
    expect((health.body as { status: string }).status).toBe('ok');
  });

  it('cuts a ?wait=true append that arrives during the drain short: 504 with the job, which stays queued', async () => {
    // No worker takes the job (the append queue is paused, as the process's workers are once
    // they drained): the wait cannot end in a result, and must not last the 20 s asked.
    await http.pipeline.workers.queues.append.pause();
    try {
      draining = true;
      const answer = await request(http.app)
        .post('/v1/memories/customer-support/drain-1/messages?wait=true&timeout_ms=20000')
        .set({ Authorization: `Bearer ${KEYS.acme}` })
        .send({ messages: [{ role: 'user', content: 'sent while the process drains' }] });
      expect(answer.status).toBe(504);
      expect(answer.body).toMatchObject({
        error: { code: 'WAIT_TIMEOUT', details: { queue: 'memory-append', timeout_ms: 1000 } },
      });
      // The append was accepted: the job is in the queue for another worker.
      const jobs = await http.pipeline.workers.queues.append.getJobCounts('waiting');
      expect(jobs.waiting).toBe(1);
      draining = false;
      const waited = await request(http.app)
        .post('/v1/memories/customer-support/drain-1/messages?wait=true&timeout_ms=300')
        .set({ Authorization: `Bearer ${KEYS.acme}` })
        .send({ messages: [{ role: 'user', content: 'sent while serving' }] });
      // Not draining: the call waits as long as asked (here 300 ms, the queue being paused).
      expect(waited.status).toBe(504);
      expect(waited.body).toMatchObject({ error: { details: { timeout_ms: 300 } } });
    } finally {
      draining = false;
      await http.pipeline.workers.queues.append.resume();
    }
  });
});
