/**
 * What an operator reads of HTTP traffic: one `route` label per route on
 * `memq_http_requests_total` whatever answered (the route, or a middleware's 401/415/429), in the
 * app and in a running `memq serve` under real backpressure, rate limits and a Redis outage, and
 * an `X-Request-Id` on every answer that its log lines carry too.
 */
import { Writable } from 'node:stream';
import type { Express } from 'express';
import pino from 'pino';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { createMemoryQueues, type MemoryQueues } from '../../queues/memory-queues.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createHttpApp } from '../../src/http/app.js';
import type { ErrorBody } from '../../src/http/http-errors.js';
import type { TenantLimitSettings } from '../../src/http/rate-limit.js';
import { createMetrics, type MemqMetrics } from '../../src/metrics/metrics.js';
import { createRedis, type RedisConnection } from '../../src/redis/connection.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { startMemqProcess, type MemqProcess } from '../helpers/cli.js';
import { BOARD, KEYS, TEST_GRANTS } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';
import { startTestRedisServer } from '../helpers/redis-server.js';

const auth = (key: string) => ({ Authorization: `Bearer ${key}` });
const MESSAGES = '/v1/memories/agent-memory';
/** The error code of an error answer. */
const codeOf = (res: request.Response) => (res.body as ErrorBody).error.code;
const say = (content: string) => ({ messages: [{ role: 'user', content }] });
/** A request id memq generates: a UUID. */
const GENERATED_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A JSON log line as pino writes it. */
type LogLine = Record<string, unknown>;

/**
 * The HTTP app with no worker (nothing moves by itself) over `connection`: a project may have one
 * message waiting (then BACKPRESSURE), `limits` as given, its own metrics and a log kept in `lines`.
 */
function start(
  ns: RedisNamespace,
  registry: MemoryRegistry,
  connection: RedisConnection,
  limits?: Omit<TenantLimitSettings, 'keyPrefix'>,
): {
  app: Express;
  metrics: MemqMetrics;
  lines: LogLine[];
  client: MemoryClient;
  queues: MemoryQueues;
} {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        lines.push(JSON.parse(line) as LogLine);
      }
      done();
    },
  });
  const metrics = createMetrics();
  const client = createMemoryClient({
    connection,
    queuePrefix: ns.queuePrefix,
    registry,
    project: 'test',
    store: createMemoryStore({ redis: connection, keyPrefix: ns.keyPrefix }),
    metrics,
    // The global marks out of reach; one waiting message per project at most.
    backpressure: {
      highWaterMessages: 10_000,
      lowWaterMessages: 5_000,
      policy: 'reject',
      projectHighWaterMessages: 1,
    },
  });
  // Bull Board's queues on a live connection even when `connection` is a dead Redis.
  const queues = createMemoryQueues(ns.connect({ producer: true }), ns.queuePrefix);
  const app = createHttpApp({
    client,
    queues,
    registry,
    redis: connection,
    metrics,
    log: pino({ level: 'info' }, sink),
    apiKeys: TEST_GRANTS,
    board: { ...BOARD, readOnly: true },
    maxBodyBytes: 64 * 1024,
    maxMessageBytes: 8 * 1024,
    readyTimeoutMs: 200,
    ...(limits ? { limits: { keyPrefix: ns.keyPrefix, ...limits } } : {}),
  });
  return { app, metrics, lines, client, queues };
}

/** `{route, status}` of every `memq_http_requests_total` sample, and its count. */
async function requestSamples(metrics: MemqMetrics) {
  const { values } = await metrics.httpRequests.get();
  return values.map((v) => ({
    route: v.labels.route,
    status: v.labels.status,
    method: v.labels.method,
    count: v.value,
  }));
}

describe('HTTP route labels and request ids', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let app: ReturnType<typeof start> | undefined;

  beforeEach(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
  });
  afterEach(async () => {
    await app?.queues.close();
    await app?.client.close();
    app = undefined;
    await ns.cleanup();
  });

  it("labels a route's 202, its 429s (backpressure, rate limit), 401, 415 and 400 with the same route pattern", async () => {
    const redis = ns.connect({ producer: true });
    await redis.ping();
    app = start(ns, registry, redis, { requests: { points: 3, windowSeconds: 60 } });
    const accepted = await request(app.app)
      .post(`${MESSAGES}/k-1/messages`)
      .set(auth(KEYS.acme))
      .send(say('first'));
    expect(accepted.status).toBe(202);
    const backpressure = await request(app.app)
      .post(`${MESSAGES}/k-1/messages`)
      .set(auth(KEYS.acme))
      .send(say('second'));
    expect(backpressure.status).toBe(429);
    expect(codeOf(backpressure)).toBe('BACKPRESSURE');
    const invalid = await request(app.app)
      .post(`${MESSAGES}/k-1/messages`)
      .set(auth(KEYS.acme))
      .send({ messages: 'not a list' });
    expect(invalid.status).toBe(400);
    const limited = await request(app.app)
      .post(`${MESSAGES}/k-1/messages`)
      .set(auth(KEYS.acme))
      .send(say('fourth'));
    expect(limited.status).toBe(429);
    expect(codeOf(limited)).toBe('RATE_LIMITED');
    const anonymous = await request(app.app).post(`${MESSAGES}/k-2/messages`).send(say('who?'));
    expect(anonymous.status).toBe(401);
    const text = await request(app.app)
      .post(`${MESSAGES}/k-3/messages/`)
      .set(auth(KEYS.beta))
      .set('Content-Type', 'text/plain')
      .send('hello');
    expect(text.status).toBe(415);
    const unknown = await request(app.app).get('/v1/nothing/here').set(auth(KEYS.beta));
    expect(unknown.status).toBe(404);

    const route = '/v1/memories/:resource/:key/messages';
    expect(await requestSamples(app.metrics)).toEqual(
      expect.arrayContaining([
        { method: 'POST', route, status: '202', count: 1 },
        { method: 'POST', route, status: '429', count: 2 },
        { method: 'POST', route, status: '400', count: 1 },
        { method: 'POST', route, status: '401', count: 1 },
        { method: 'POST', route, status: '415', count: 1 },
        { method: 'GET', route: 'unmatched', status: '404', count: 1 },
      ]),
    );
    expect(new Set((await requestSamples(app.metrics)).map((s) => s.route))).toEqual(
      new Set([route, 'unmatched']),
    );
    const { values } = await app.metrics.httpDuration.get();
    expect(new Set(values.map((v) => v.labels.route))).toEqual(new Set([route, 'unmatched']));
    // The log lines carry the same label.
    const logged = app.lines.filter((l) => l.msg === 'http request');
    expect(logged.map((l) => [l.status, l.route])).toEqual([
      [202, route],
      [429, route],
      [400, route],
      [429, route],
      [401, route],
      [415, route],
      [404, 'unmatched'],
    ]);
  });

  it('echoes a sane X-Request-Id and logs it with the request', async () => {
    app = start(ns, registry, ns.connect({ producer: true }));
    const id = 'req-2f1c_9A.b~trace';
    const res = await request(app.app)
      .get(`${MESSAGES}/k-1/messages`)
      .set(auth(KEYS.acme))
      .set('X-Request-Id', id);
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe(id);
    expect(app.lines.find((l) => l.msg === 'http request')).toMatchObject({
      requestId: id,
      method: 'GET',
      route: '/v1/memories/:resource/:key/messages',
      status: 200,
    });
  });

  it('replaces a hostile or missing X-Request-Id with a fresh one, and never logs the hostile one', async () => {
    app = start(ns, registry, ns.connect({ producer: true }));
    const hostile = [
      'x'.repeat(129),
      'abc\tdef',
      'two words',
      'id"}, "admin": true',
      'caf\u00e9',
      '',
    ];
    const seen: string[] = [];
    for (const value of hostile) {
      const res = await request(app.app).get('/healthz').set('X-Request-Id', value);
      expect(res.status).toBe(200);
      const id = res.headers['x-request-id'] as string;
      expect(id, JSON.stringify(value)).toMatch(GENERATED_ID);
      seen.push(id);
    }
    const bare = await request(app.app).get('/healthz');
    expect(bare.headers['x-request-id']).toMatch(GENERATED_ID);
    seen.push(bare.headers['x-request-id'] as string);
    expect(new Set(seen).size).toBe(seen.length);
    // The longest token id that is sane is kept.
    const longest = 'y'.repeat(128);
    expect(
      (await request(app.app).get('/healthz').set('X-Request-Id', longest)).headers,
    ).toHaveProperty('x-request-id', longest);
    const logged = JSON.stringify(app.lines);
    expect(logged).not.toContain('x'.repeat(129));
    expect(logged).not.toContain('two words');
    expect(logged).not.toContain('admin');
  });

  it('puts the request id on error answers, Bull Board answers, and the 5xx error log line', async () => {
    const dead = createRedis({ url: 'redis://127.0.0.1:1', role: 'producer' });
    dead.on('error', () => undefined);
    app = start(ns, registry, dead);
    try {
      const notFound = await request(app.app).get('/nowhere').set('X-Request-Id', 'nf-1');
      expect(notFound.status).toBe(404);
      expect(notFound.headers['x-request-id']).toBe('nf-1');
      const board = await request(app.app).get('/admin/queues').set('X-Request-Id', 'board-1');
      expect(board.status).toBe(401);
      expect(board.headers['x-request-id']).toBe('board-1');

      const down = await request(app.app)
        .get(`${MESSAGES}/k-1/messages`)
        .set(auth(KEYS.acme))
        .set('X-Request-Id', 'down-1');
      expect(down.status).toBe(503);
      expect(codeOf(down)).toBe('REDIS_UNAVAILABLE');
      expect(down.headers['x-request-id']).toBe('down-1');
      expect(app.lines.find((l) => l.msg === 'request failed')).toMatchObject({
        requestId: 'down-1',
        route: '/v1/memories/:resource/:key/messages',
        status: 503,
      });
      expect(
        app.lines.find((l) => l.msg === 'http request' && l.requestId === 'down-1'),
      ).toMatchObject({ status: 503 });
    } finally {
      await app.queues.close().catch(() => undefined);
      await app.client.close().catch(() => undefined);
      app = undefined;
      dead.disconnect();
    }
  });
});

/** Write keys of the `memq serve` test: the request rate is 1 per key per second, so one key per request. */
const SERVE_KEYS = Array.from(
  { length: 40 },
  (_, i) => `route-label-key-${String(i).padStart(4, '0')}`,
);
/** A read-only key of the same project (its appends are 403). */
const READ_KEY = 'route-label-read-key-0000';

/** The `memq_http_requests_total` and `memq_http_request_duration_seconds_count` samples of a `/metrics` text. */
function scrapedSamples(text: string) {
  const samples: { metric: string; method: string; route: string; status?: string }[] = [];
  for (const line of text.split('\n')) {
    const match =
      /^(memq_http_requests_total|memq_http_request_duration_seconds_count)\{([^}]*)\} /.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries(
      [...match[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]),
    );
    samples.push({
      metric: match[1]!,
      method: labels.method!,
      route: labels.route!,
      ...(labels.status !== undefined ? { status: labels.status } : {}),
    });
  }
  return samples;
}

describe('route labels of a running memq serve', () => {
  it('gives every answer of the append route (202, 400, 401, 403, 404, 413, 415, 429 BACKPRESSURE and RATE_LIMITED, 503 with Redis away) the one /v1 label, in /metrics and in the log', async () => {
    const redis = await startTestRedisServer('none');
    let memq: MemqProcess | undefined;
    try {
      // No workers (serve): the backlog only grows, so the backpressure bound is reached for real.
      memq = await startMemqProcess('serve', {
        ...process.env,
        REDIS_URL: redis.url,
        PORT: '0',
        MEMQ_LOG_LEVEL: 'info',
        MEMQ_API_KEYS: [...SERVE_KEYS.map((k) => `${k}:labels`), `${READ_KEY}:labels:read`].join(
          ',',
        ),
        MEMQ_BOARD_PASSWORD: 'route-label-board',
        MEMQ_BACKPRESSURE_HIGH_WATER: '2',
        MEMQ_BACKPRESSURE_LOW_WATER: '1',
        MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND: '1',
        MEMQ_RATE_LIMIT_REQUESTS_BURST: '0',
        MEMQ_MAX_BODY_BYTES: '1024',
        MEMQ_MAX_MESSAGE_BYTES: '100',
      });
      const base = memq.base!;
      const keys = SERVE_KEYS[Symbol.iterator]();
      const post = (
        path: string,
        body: string,
        key: string | undefined = keys.next().value,
        type = 'application/json',
      ) =>
        fetch(`${base}${path}`, {
          method: 'POST',
          headers: { 'Content-Type': type, ...(key ? { Authorization: `Bearer ${key}` } : {}) },
          body,
        });
      const append = '/v1/memories/agent-memory/labels-1/messages';
      const hello = JSON.stringify(say('hello'));
      const codeOfAnswer = async (res: Response) => ((await res.json()) as ErrorBody).error.code;

      // 202s until the backlog is at the high-water mark, then 429 BACKPRESSURE (the producer
      // reuses a backlog count for 250 ms, hence the pauses).
      const codes: string[] = [];
      for (let i = 0; i < 20 && !codes.includes('BACKPRESSURE'); i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 100));
        const res = await post(append, hello);
        codes.push(res.status === 202 ? '202' : await codeOfAnswer(res));
      }
      expect(codes[0]).toBe('202');
      expect(codes.at(-1)).toBe('BACKPRESSURE');

      const expectAnswer = async (res: Promise<Response>, status: number, code: string) => {
        const answer = await res;
        expect(answer.status).toBe(status);
        expect(await codeOfAnswer(answer)).toBe(code);
      };
      await expectAnswer(post(append, '{"messages":"x"}'), 400, 'PAYLOAD_INVALID');
      await expectAnswer(post(append, hello, ''), 401, 'UNAUTHENTICATED');
      await expectAnswer(post(append, hello, READ_KEY), 403, 'FORBIDDEN');
      await expectAnswer(
        post('/v1/memories/undeclared/labels-1/messages', hello),
        404,
        'MEMORY_NOT_FOUND',
      );
      await expectAnswer(
        post(append, JSON.stringify(say('x'.repeat(2000)))),
        413,
        'PAYLOAD_TOO_LARGE',
      );
      await expectAnswer(
        post(append, JSON.stringify(say('x'.repeat(200)))),
        413,
        'PAYLOAD_TOO_LARGE',
      );
      await expectAnswer(
        post(append, 'hello', undefined, 'text/plain'),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
      // One key, five requests at once: over 1 request per second.
      const limitedKey = keys.next().value!;
      const limited = await Promise.all([1, 2, 3, 4, 5].map(() => post(append, hello, limitedKey)));
      const limitedCodes = await Promise.all(
        limited.filter((res) => res.status === 429).map(codeOfAnswer),
      );
      // The first may pass the rate and meet the full backlog; the later ones are over the rate.
      expect(limitedCodes).toContain('RATE_LIMITED');

      // Redis away: 503; /metrics still answers; back again: the queue gauge is back.
      await redis.halt('SIGKILL');
      // Past the producer's 250 ms backlog cache, so the append reads Redis.
      await new Promise((r) => setTimeout(r, 300));
      await expectAnswer(post(append, hello), 503, 'REDIS_UNAVAILABLE');
      // A scrape still answers, without the queue gauge and saying Redis did not.
      const away = await fetch(`${base}/metrics`);
      expect(away.status).toBe(200);
      const awayText = await away.text();
      expect(awayText).toMatch(/^memq_redis_up 0$/m);
      expect(awayText).not.toMatch(/^memq_queue_jobs\{/m);
      expect(awayText).toMatch(/^memq_http_requests_total\{/m);
      await redis.start();
      let metricsText = '';
      for (let i = 0; i < 100 && metricsText === ''; i++) {
        const res = await fetch(`${base}/metrics`);
        const text = res.status === 200 ? await res.text() : '';
        if (/^memq_redis_up 1$/m.test(text)) metricsText = text;
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(metricsText).toMatch(/^memq_queue_jobs\{/m);

      const route = '/v1/memories/:resource/:key/messages';
      const posts = scrapedSamples(metricsText).filter((s) => s.method === 'POST');
      expect(new Set(posts.map((s) => s.route))).toEqual(new Set([route]));
      expect(
        new Set(posts.filter((s) => s.metric === 'memq_http_requests_total').map((s) => s.status)),
      ).toEqual(new Set(['202', '400', '401', '403', '404', '413', '415', '429', '503']));
      expect(posts.filter((s) => s.metric === 'memq_http_request_duration_seconds_count')).toEqual([
        { metric: 'memq_http_request_duration_seconds_count', method: 'POST', route },
      ]);
      // The request log lines, and the 503's error line, carry the same label.
      const lines = memq
        .stderr()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as LogLine)
        .filter((line) => line.method === 'POST');
      const logged = lines.filter((line) => line.msg === 'http request');
      expect(logged.length).toBe(codes.length + 7 + limited.length + 1);
      expect(new Set(logged.map((line) => line.route))).toEqual(new Set([route]));
      expect(lines.filter((line) => line.msg === 'request failed')).toEqual([
        expect.objectContaining({ route, status: 503 }),
      ]);
    } finally {
      await memq?.stop();
      await redis.destroy();
    }
  });
});
