/**
 * Fairness between tenants: one API key could push every project into 429. Now each
 * key has its own request and message rates (counted in Redis, shared by every process), and a
 * key over its rate gets 429 RATE_LIMITED with Retry-After while other keys go on. Windows are a
 * minute long so no assertion depends on how fast the requests run.
 */
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createHttpApp } from '../../src/http/app.js';
import type { TenantLimitSettings } from '../../src/http/rate-limit.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { ErrorBody } from '../../src/http/http-errors.js';
import { BOARD, KEYS, TEST_GRANTS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { quietLog } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const auth = (key: string) => ({ Authorization: `Bearer ${key}` });
/** The error of an error answer. */
const errorOf = (res: request.Response) => (res.body as ErrorBody).error;
const M = '/v1/memories/agent-memory';
const say = (...contents: string[]) => ({
  messages: contents.map((content) => ({ role: 'user', content })),
});

describe('per-API-key rate limits', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let http: TestHttp | undefined;

  beforeEach(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
  });
  afterEach(async () => {
    await http?.close();
    http = undefined;
    await ns.cleanup();
  });

  /**
   * The app with `limits`, counting on a connection that is ready (as `memq serve`'s, pinged at
   * start): until it is, each process counts on its own (the insurance limiter).
   */
  const start = async (limits: Omit<TenantLimitSettings, 'keyPrefix'>) => {
    const redis = ns.connect({ producer: true });
    await redis.ping();
    http = await startHttp(ns, registry, {
      redis,
      limits: { keyPrefix: ns.keyPrefix, ...limits },
    });
    return http;
  };
  /** Append jobs in the append queue, whatever their state. */
  const appendJobs = async (h: TestHttp) => {
    const counts = await h.pipeline.workers.queues.append.getJobCounts(
      'waiting',
      'active',
      'delayed',
      'prioritized',
      'completed',
      'failed',
    );
    return Object.values(counts).reduce((sum, n) => sum + n, 0);
  };
  /** Messages of `key`'s memory of `project`, read past the HTTP limits. */
  const stored = async (h: TestHttp, project: string, key: string) =>
    (await h.pipeline.client.forProject(project).read({ resource: 'agent-memory', key })).total;

  it("throttles a noisy key with 429 RATE_LIMITED and Retry-After while another project's appends are accepted", async () => {
    const h = await start({ requests: { points: 3, windowSeconds: 60 } });
    for (let i = 0; i < 3; i++) {
      const res = await request(h.app)
        .post(`${M}/noisy/messages?wait=true`)
        .set(auth(KEYS.acme))
        .send(say(`m${i}`));
      expect(res.status).toBe(200);
    }

    const refused = await request(h.app)
      .post(`${M}/noisy/messages`)
      .set(auth(KEYS.acme))
      .send(say('one too many'));
    expect(refused.status).toBe(429);
    expect(errorOf(refused)).toMatchObject({
      code: 'RATE_LIMITED',
      details: { limit: 'requests', max: 3, window_seconds: 60 },
    });
    expect(errorOf(refused).message).toMatch(
      /^this API key is over its requests rate \(3 requests per 60 s; MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND \/ _BURST\); retry after \d+ ms$/,
    );
    const retryAfterMs = errorOf(refused).details.retry_after_ms as number;
    expect(retryAfterMs).toBeGreaterThanOrEqual(1);
    expect(retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(refused.headers['retry-after']).toBe(String(Math.ceil(retryAfterMs / 1000)));
    // Every route of the key is throttled, reads too.
    const read = await request(h.app).get(`${M}/noisy/messages`).set(auth(KEYS.acme));
    expect(read.status).toBe(429);

    const other = await request(h.app)
      .post(`${M}/quiet/messages?wait=true`)
      .set(auth(KEYS.beta))
      .send(say('still welcome'));
    expect(other.status).toBe(200);

    expect(await stored(h, 'acme', 'noisy')).toBe(3);
    expect(await stored(h, 'beta', 'quiet')).toBe(1);
    expect(await appendJobs(h)).toBe(4);
    // The limiter's Redis keys name the project and a digest, never the key.
    const text = await ns.allText();
    expect(text).toContain(`${ns.keyPrefix}rl:requests:acme:`);
    for (const key of Object.values(KEYS)) expect(text).not.toContain(key);
  });

  it('lets a burst through once the window is used up, then refuses with the sooner reset', async () => {
    const h = await start({
      requests: { points: 1, windowSeconds: 60, burstPoints: 2, burstWindowSeconds: 600 },
    });
    for (let i = 0; i < 3; i++) {
      const res = await request(h.app).get(`${M}/b/messages`).set(auth(KEYS.acme));
      expect(res.status).toBe(200);
    }
    const refused = await request(h.app).get(`${M}/b/messages`).set(auth(KEYS.acme));
    expect(refused.status).toBe(429);
    expect(errorOf(refused).details).toMatchObject({
      limit: 'requests',
      max: 1,
      burst: 2,
      burst_window_seconds: 600,
    });
    // The one-minute window resets first: a retry then passes through it.
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
  });

  it('counts messages after validation and before the enqueue: a batch over the rest of the allowance enqueues nothing', async () => {
    const h = await start({ messages: { points: 5, windowSeconds: 60 } });
    // Invalid bodies are refused by validation (400) and cost no message allowance.
    for (let i = 0; i < 3; i++) {
      const invalid = await request(h.app)
        .post(`${M}/m/messages`)
        .set(auth(KEYS.acme))
        .send({ messages: [1, 2, 3, 4, 5] });
      expect(invalid.status).toBe(400);
    }
    const first = await request(h.app)
      .post(`${M}/m/messages?wait=true`)
      .set(auth(KEYS.acme))
      .send(say('a', 'b', 'c'));
    expect(first.status).toBe(200);

    const refused = await request(h.app)
      .post(`${M}/m/messages?wait=true`)
      .set(auth(KEYS.acme))
      .send(say('d', 'e', 'f'));
    expect(refused.status).toBe(429);
    expect(errorOf(refused)).toMatchObject({
      code: 'RATE_LIMITED',
      details: { limit: 'messages', max: 5, window_seconds: 60 },
    });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);

    // A write counts its messages the same way.
    const write = await request(h.app).put(`${M}/m/messages`).set(auth(KEYS.acme)).send(say('w'));
    expect(write.status).toBe(429);
    expect(errorOf(write).details.limit).toBe('messages');

    // More than the limit ever admits at once is a 413, not a retry that can never pass.
    const tooMany = await request(h.app)
      .post(`${M}/m2/messages`)
      .set(auth(KEYS.beta))
      .send(say('1', '2', '3', '4', '5', '6'));
    expect(tooMany.status).toBe(413);

    const other = await request(h.app)
      .post(`${M}/m/messages?wait=true`)
      .set(auth(KEYS.beta))
      .send(say('1', '2', '3', '4', '5'));
    expect(other.status).toBe(200);

    expect(await stored(h, 'acme', 'm')).toBe(3);
    expect(await appendJobs(h)).toBe(2);
    expect(await h.pipeline.workers.queues.cleanup.getJobCounts('waiting', 'completed')).toEqual({
      waiting: 0,
      completed: 0,
    });
  });

  it('shares the count between processes on the same Redis', async () => {
    const limits = { keyPrefix: ns.keyPrefix, requests: { points: 3, windowSeconds: 60 } };
    const h = await start(limits);
    const redis = ns.connect({ producer: true });
    await redis.ping();
    const second = createHttpApp({
      client: h.pipeline.client,
      queues: h.pipeline.workers.queues,
      registry,
      redis,
      metrics: createMetrics(),
      log: quietLog,
      apiKeys: TEST_GRANTS,
      board: { ...BOARD, readOnly: true },
      maxBodyBytes: 64 * 1024,
      maxMessageBytes: 8 * 1024,
      limits,
    });
    expect((await request(h.app).get(`${M}/s/messages`).set(auth(KEYS.acme))).status).toBe(200);
    expect((await request(second).get(`${M}/s/messages`).set(auth(KEYS.acme))).status).toBe(200);
    expect((await request(h.app).get(`${M}/s/messages`).set(auth(KEYS.acme))).status).toBe(200);
    const refused = await request(second).get(`${M}/s/messages`).set(auth(KEYS.acme));
    expect(refused.status).toBe(429);
    expect(errorOf(refused).code).toBe('RATE_LIMITED');
  });

  it('counts each API key apart, a read-only key of the same project included', async () => {
    const h = await start({ requests: { points: 1, windowSeconds: 60 } });
    expect((await request(h.app).get(`${M}/k/messages`).set(auth(KEYS.acme))).status).toBe(200);
    expect((await request(h.app).get(`${M}/k/messages`).set(auth(KEYS.acme))).status).toBe(429);
    expect((await request(h.app).get(`${M}/k/messages`).set(auth(KEYS.acmeRead))).status).toBe(200);
    // Unauthenticated requests are refused before the limiter (401), so they cost nobody's rate.
    expect(
      (await request(h.app).get(`${M}/k/messages`).set(auth('no-such-key-0123456789'))).status,
    ).toBe(401);
    expect(
      await h.pipeline.metrics.registry.getSingleMetricAsString('memq_rate_limited_total'),
    ).toContain('memq_rate_limited_total{limit="requests"} 1');
  });
});
