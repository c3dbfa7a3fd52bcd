import { Writable } from 'node:stream';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOBS } from '../../queues/names.js';
import { ROLES } from '../../src/core/message.js';
import { SCRIPTS } from '../../src/redis/scripts.js';
import { createRedis } from '../../src/redis/connection.js';
import { listen } from '../../src/http/app.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { BOARD, KEYS, appOver, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const auth = (key: string) => ({ Authorization: `Bearer ${key}` });
const PATH = '/v1/memories/customer-support';
const hello = (content = 'hello there') => ({ messages: [{ role: 'user', content }] });

describe('HTTP API', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let http: TestHttp;

  beforeAll(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
    http = await startHttp(ns, registry);
  });
  afterAll(async () => {
    await http.close();
    await ns.cleanup();
  });

  describe('memory operations', () => {
    it('appends (202 with the job), then reads the page with counts and context-window use', async () => {
      const appended = await request(http.app)
        .post(`${PATH}/c-1/messages`)
        .set(auth(KEYS.acme))
        .send({ messages: [{ role: 'user', content: 'hi, my order is late' }] });
      expect(appended.status).toBe(202);
      expect(appended.body).toMatchObject({
        job: { queue: 'memory-append' },
        dropped: 0,
        redactions: 0,
      });
      expect(appended.body.message_ids).toHaveLength(1);

      const job = await request(http.app)
        .get(`/v1/jobs/memory-append/${appended.body.job.id}`)
        .set(auth(KEYS.acme));
      expect(job.status).toBe(200);
      expect(job.body).toMatchObject({ id: appended.body.job.id, name: 'append' });

      const waited = await request(http.app)
        .post(`${PATH}/c-1/messages?wait=true`)
        .set(auth(KEYS.acme))
        .send({ messages: [{ role: 'assistant', content: 'sorry, let me check' }] });
      expect(waited.status).toBe(200);
      expect(waited.body.result).toEqual({ added: 1, duplicates: 0 });

      const read = await request(http.app).get(`${PATH}/c-1/messages`).set(auth(KEYS.acme));
      expect(read.status).toBe(200);
      expect(
        read.body.messages.map((m: { message: { content: string } }) => m.message.content),
      ).toEqual(['hi, my order is late', 'sorry, let me check']);
      expect(read.body).toMatchObject({ total: 2, offset: 0, has_more: false, summary: null });
      expect(read.body.context_window.max_tokens).toBe(4_000);
      expect(read.body.context_window.used_tokens).toBeGreaterThan(0);
      expect(read.body.context_window.used_percent).toBe(
        Math.round((read.body.context_window.used_tokens / 4_000) * 10_000) / 100,
      );

      const chat = await request(http.app)
        .get(`${PATH}/c-1/messages?format=messages&limit=1`)
        .set(auth(KEYS.acme));
      expect(chat.body.messages).toEqual([{ role: 'user', content: 'hi, my order is late' }]);
      expect(chat.body.has_more).toBe(true);
    });

    it('redacts before enqueueing and reports what the policy dropped', async () => {
      const res = await request(http.app)
        .post(`${PATH}/c-2/messages?wait=true`)
        .set(auth(KEYS.acme))
        .send({
          messages: [
            { role: 'system', content: 'internal prompt' },
            { role: 'user', content: 'mail me at jane.doe@example.com' },
          ],
        });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ dropped: 1, redactions: 1 });
      const read = await request(http.app).get(`${PATH}/c-2/messages`).set(auth(KEYS.acme));
      expect(read.body.messages[0].message.content).toBe('mail me at [REDACTED]');
    });

    it('writes, flushes (dry run answers with the plan), shows stats and health, clears and deletes', async () => {
      const write = await request(http.app)
        .put(`${PATH}/c-3/messages?wait=true`)
        .set(auth(KEYS.acme))
        .send({
          messages: [
            { role: 'user', content: 'one' },
            { role: 'assistant', content: 'two' },
            { role: 'user', content: 'three' },
          ],
        });
      expect(write.status).toBe(200);
      expect(write.body.job.queue).toBe('memory-cleanup');

      const plan = await request(http.app)
        .post(`${PATH}/c-3/flush`)
        .set(auth(KEYS.acme))
        .send({ dry_run: true });
      expect(plan.status).toBe(200);
      expect(plan.body.result).toMatchObject({ applied: false, plan: { before: { messages: 3 } } });

      await eventually(async () => {
        const s = await request(http.app).get(`${PATH}/c-3/stats`).set(auth(KEYS.acme));
        return s.body.uncounted_messages === 0;
      }, 'exact counts');
      const stats = await request(http.app).get(`${PATH}/c-3/stats?deep=true`).set(auth(KEYS.acme));
      expect(stats.status).toBe(200);
      expect(stats.body).toMatchObject({
        exists: true,
        message_count: 3,
        roles: { user: 2, assistant: 1 },
        consistent: true,
      });
      expect(stats.body.token_utilization).toBeCloseTo(stats.body.token_count / 4_000, 3);
      // Without ?deep=true: the same fields from the counters alone, roles null.
      const shallow = await request(http.app).get(`${PATH}/c-3/stats`).set(auth(KEYS.acme));
      expect(shallow.status).toBe(200);
      expect(Object.keys(shallow.body).sort()).toEqual(Object.keys(stats.body).sort());
      const withoutTtl = ({ ttl_seconds: _ttl, ...rest }: Record<string, unknown>) => rest;
      expect(withoutTtl(shallow.body)).toEqual({ ...withoutTtl(stats.body), roles: null });
      const badDeep = await request(http.app)
        .get(`${PATH}/c-3/stats?deep=yes`)
        .set(auth(KEYS.acme));
      expect(badDeep.status).toBe(400);
      expect(badDeep.body.error.message).toContain('deep');

      const health = await request(http.app).get(`${PATH}/c-3/health`).set(auth(KEYS.acme));
      expect(health.body).toMatchObject({ healthy: true, message_count: 3 });

      const cleared = await request(http.app)
        .post(`${PATH}/c-3/clear?wait=true`)
        .set(auth(KEYS.acme))
        .send({ confirm: true });
      expect(cleared.status).toBe(200);
      const afterClear = await request(http.app).get(`${PATH}/c-3/messages`).set(auth(KEYS.acme));
      expect(afterClear.body.total).toBe(0);

      const deleted = await request(http.app).delete(`${PATH}/c-3`).set(auth(KEYS.acme));
      expect(deleted.status).toBe(202);
      await eventually(async () => {
        const h = await request(http.app).get(`${PATH}/c-3/health`).set(auth(KEYS.acme));
        return h.body.exists === false;
      }, 'the delete');
    });

    it('serves /openapi.json generated from the request schemas', async () => {
      const res = await request(http.app).get('/openapi.json');
      expect(res.status).toBe(200);
      expect(res.body.openapi).toBe('3.1.0');
      const append = res.body.paths['/v1/memories/{resource}/{key}/messages'].post;
      const body = append.requestBody.content['application/json'].schema;
      expect(body.properties.messages.maxItems).toBe(100);
      // The message schema: every role, content as a string, parts or null, tool calls, privacy.
      const message = body.properties.messages.items;
      expect(message.properties.role.enum).toEqual([...ROLES]);
      expect(message.required).toEqual(['role', 'content']);
      const contentShapes = JSON.stringify(message.properties.content);
      for (const shape of ['"const":"text"', '"const":"image_url"', '"type":"null"'])
        expect(contentShapes).toContain(shape);
      const toolCall = message.properties.tool_calls.items;
      expect(toolCall.required).toEqual(['id', 'type', 'function']);
      expect(toolCall.properties.function.required).toEqual(['name', 'arguments']);
      expect(Object.keys(message.properties.privacy.properties)).toEqual([
        'do_not_persist',
        'redact_fields',
      ]);
      expect(message.description).toContain('tool_call_id on every tool message');
      const appended = append.responses['202'].content['application/json'].schema;
      expect(appended.required).toContain('not_persisted');
      expect(Object.keys(append.responses)).toEqual(
        expect.arrayContaining([
          '202',
          '400',
          '401',
          '403',
          '404',
          '409',
          '413',
          '415',
          '429',
          '503',
        ]),
      );
      const stats = res.body.paths['/v1/memories/{resource}/{key}/stats'].get;
      expect(stats.parameters).toEqual([
        expect.objectContaining({ name: 'deep', in: 'query', required: false }),
      ]);
      const job = res.body.paths['/v1/jobs/{queue}/{id}'];
      expect(new RegExp(job.parameters[1].schema.pattern).test('events')).toBe(false);

      const context = res.body.paths['/v1/memories/{resource}/{key}/context'].get;
      expect(context.parameters.map((p: { name: string }) => p.name)).toEqual([
        'max_tokens',
        'model',
      ]);
      expect(
        Object.keys(context.responses['200'].content['application/json'].schema.properties),
      ).toEqual(expect.arrayContaining(['messages', 'tokens', 'exact', 'omitted', 'max_tokens']));
      const list = res.body.paths['/v1/memories/{resource}'].get;
      expect(list.parameters.map((p: { name: string }) => p.name)).toEqual(['cursor', 'limit']);
      const data = res.body.paths['/v1/memories/{resource}/{key}/data'];
      const dataBody = data.put.requestBody.content['application/json'].schema;
      expect(dataBody.properties.data).toMatchObject({
        maxProperties: 64,
        propertyNames: { minLength: 1, maxLength: 128 },
        additionalProperties: { type: 'string', maxLength: 4096 },
      });
      expect(Object.keys(data.get.responses)).toEqual(expect.arrayContaining(['200', '404']));
      expect(Object.keys(data.put.responses)).toEqual(
        expect.arrayContaining(['200', '403', '413']),
      );
    });
  });

  describe('tenancy', () => {
    it('keeps projects apart both ways: same resource and key, separate memories and jobs', async () => {
      const a = await request(http.app)
        .post(`${PATH}/shared-key/messages?wait=true`)
        .set(auth(KEYS.acme))
        .send(hello('from acme'));
      const b = await request(http.app)
        .post(`${PATH}/shared-key/messages?wait=true`)
        .set(auth(KEYS.beta))
        .send(hello('from beta'));
      expect([a.status, b.status]).toEqual([200, 200]);
      const readA = await request(http.app).get(`${PATH}/shared-key/messages`).set(auth(KEYS.acme));
      const readB = await request(http.app).get(`${PATH}/shared-key/messages`).set(auth(KEYS.beta));
      const contents = (r: request.Response) =>
        r.body.messages.map((m: { message: { content: string } }) => m.message.content);
      expect(contents(readA)).toEqual(['from acme']);
      expect(contents(readB)).toEqual(['from beta']);
      const crossJob = await request(http.app)
        .get(`/v1/jobs/memory-append/${a.body.job.id}`)
        .set(auth(KEYS.beta));
      expect(crossJob.status).toBe(404);
      expect(crossJob.body.error.code).toBe('NOT_FOUND');
      const ownJob = await request(http.app)
        .get(`/v1/jobs/memory-append/${b.body.job.id}`)
        .set(auth(KEYS.beta));
      expect(ownJob.status).toBe(200);
      const otherWay = await request(http.app)
        .get(`/v1/jobs/memory-append/${b.body.job.id}`)
        .set(auth(KEYS.acme));
      expect(otherWay.status).toBe(404);
    });
  });

  describe('errors', () => {
    it('401 without a key, with another scheme and with an unknown key', async () => {
      for (const headers of [{}, { Authorization: 'Basic abc' }, auth('not-a-key')]) {
        const res = await request(http.app).get(`${PATH}/c-1/messages`).set(headers);
        expect(res.status).toBe(401);
        expect(res.body.error.code).toBe('UNAUTHENTICATED');
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
      }
    });

    it('403 when a read-only key writes; it may still read', async () => {
      const write = await request(http.app)
        .post(`${PATH}/c-ro/messages`)
        .set(auth(KEYS.acmeRead))
        .send(hello());
      expect(write.status).toBe(403);
      expect(write.body.error).toMatchObject({ code: 'FORBIDDEN' });
      const read = await request(http.app).get(`${PATH}/c-ro/messages`).set(auth(KEYS.acmeRead));
      expect(read.status).toBe(200);
    });

    it('400 for invalid bodies, queries and JSON, naming the field', async () => {
      const role = await request(http.app)
        .post(`${PATH}/c-4/messages`)
        .set(auth(KEYS.acme))
        .send({ messages: [{ role: 'robot', content: 'x' }] });
      expect(role.status).toBe(400);
      expect(role.body.error.code).toBe('PAYLOAD_INVALID');
      expect(role.body.error.message).toContain('messages.0.role');
      const clear = await request(http.app).post(`${PATH}/c-4/clear`).set(auth(KEYS.acme)).send({});
      expect(clear.status).toBe(400);
      expect(clear.body.error.message).toContain('confirm');
      const limit = await request(http.app)
        .get(`${PATH}/c-4/messages?limit=0`)
        .set(auth(KEYS.acme));
      expect(limit.status).toBe(400);
      expect(limit.body.error.message).toContain('limit');
      const json = await request(http.app)
        .post(`${PATH}/c-4/messages`)
        .set(auth(KEYS.acme))
        .set('Content-Type', 'application/json')
        .send('{"messages": [');
      expect(json.status).toBe(400);
      expect(json.body.error.message).toBe('request body: invalid JSON');
    });

    it('404 for an unknown resource, route, queue or job', async () => {
      const resource = await request(http.app)
        .get('/v1/memories/nope/c-1/messages')
        .set(auth(KEYS.acme));
      expect(resource.status).toBe(404);
      expect(resource.body.error.code).toBe('MEMORY_NOT_FOUND');
      const route = await request(http.app).get('/v1/nothing').set(auth(KEYS.acme));
      expect(route.status).toBe(404);
      const queue = await request(http.app).get('/v1/jobs/nope/1').set(auth(KEYS.acme));
      expect(queue.status).toBe(404);
      const job = await request(http.app).get('/v1/jobs/memory-append/404').set(auth(KEYS.acme));
      expect(job.status).toBe(404);
    });

    it('409 when a pending flush with another strategy would absorb the request', async () => {
      await http.pipeline.workers.queues.flush.pause();
      try {
        const first = await request(http.app)
          .post(`${PATH}/c-5/flush`)
          .set(auth(KEYS.acme))
          .send({ strategy: 'lru' });
        expect(first.status).toBe(202);
        const other = await request(http.app)
          .post(`${PATH}/c-5/flush`)
          .set(auth(KEYS.acme))
          .send({ strategy: 'simple_fifo' });
        expect(other.status).toBe(409);
        expect(other.body.error).toMatchObject({
          code: 'CONFLICT',
          details: { job_id: first.body.job.id },
        });
        const same = await request(http.app)
          .post(`${PATH}/c-5/flush`)
          .set(auth(KEYS.acme))
          .send({ strategy: 'lru' });
        expect(same.status).toBe(202);
        expect(same.body.job.id).toBe(first.body.job.id);
      } finally {
        await http.pipeline.workers.queues.flush.resume();
      }
    });

    it('413 for too many messages, a message over the byte limit, and a body over the limit', async () => {
      const many = await request(http.app)
        .post(`${PATH}/c-6/messages`)
        .set(auth(KEYS.acme))
        .send({ messages: Array.from({ length: 101 }, () => ({ role: 'user', content: 'x' })) });
      expect(many.status).toBe(413);
      expect(many.body.error.details).toEqual({ limit_messages: 100 });
      const big = await request(http.app)
        .post(`${PATH}/c-6/messages`)
        .set(auth(KEYS.acme))
        .send(hello('é'.repeat(4097))); // 8,194 UTF-8 bytes > 8 KiB
      expect(big.status).toBe(413);
      expect(big.body.error.message).toMatch(/^messages\.0: expected at most 8192 bytes of text/);
      const body = await request(http.app)
        .post(`${PATH}/c-6/messages`)
        .set(auth(KEYS.acme))
        .send(hello('x'.repeat(70 * 1024)));
      expect(body.status).toBe(413);
      expect(body.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    });

    it('504 when ?wait=true runs out of time; the job goes on', async () => {
      await http.pipeline.workers.queues.append.pause();
      try {
        const res = await request(http.app)
          .post(`${PATH}/c-7/messages?wait=true&timeout_ms=200`)
          .set(auth(KEYS.acme))
          .send(hello());
        expect(res.status).toBe(504);
        expect(res.body.error.code).toBe('WAIT_TIMEOUT');
      } finally {
        await http.pipeline.workers.queues.append.resume();
      }
      await eventually(async () => {
        const r = await request(http.app).get(`${PATH}/c-7/messages`).set(auth(KEYS.acme));
        return r.body.total === 1;
      }, 'the append to commit after the timeout');
    });

    it('429 with Retry-After past the high-water mark', async () => {
      const { app, close } = appOver(http, ns, registry, ns.connect({ producer: true }), {
        backpressure: { highWaterMessages: 1, lowWaterMessages: 0, policy: 'reject' },
      });
      await http.pipeline.workers.queues.append.pause();
      try {
        const first = await request(app)
          .post(`${PATH}/c-8/messages`)
          .set(auth(KEYS.acme))
          .send(hello());
        expect(first.status).toBe(202);
        await new Promise((r) => setTimeout(r, 300)); // past the 250 ms backlog cache
        const second = await request(app)
          .post(`${PATH}/c-8/messages`)
          .set(auth(KEYS.acme))
          .send(hello());
        expect(second.status).toBe(429);
        expect(second.body.error.code).toBe('BACKPRESSURE');
        expect(second.body.error.details).toMatchObject({ bound: 'messages', usage: 1, limit: 1 });
        expect(Number(second.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      } finally {
        await http.pipeline.workers.queues.append.resume();
        await close();
      }
    });

    it('503 with Retry-After when Redis is unreachable; /readyz says not ready', async () => {
      const dead = createRedis({ url: 'redis://127.0.0.1:1', role: 'producer' });
      dead.on('error', () => undefined);
      const { app, close } = appOver(http, ns, registry, dead, { readyTimeoutMs: 200 });
      try {
        const read = await request(app).get(`${PATH}/c-9/messages`).set(auth(KEYS.acme));
        expect(read.status).toBe(503);
        expect(read.body.error.code).toBe('REDIS_UNAVAILABLE');
        expect(read.headers['retry-after']).toBe('1');
        const ready = await request(app).get('/readyz');
        expect(ready.status).toBe(503);
        expect(ready.body.checks.redis.ok).toBe(false);
      } finally {
        await close().catch(() => undefined);
        dead.disconnect();
      }
    });
  });

  describe('operator surfaces', () => {
    it('/healthz answers while the process lives; /readyz runs a canary job through a worker', async () => {
      const health = await request(http.app).get('/healthz');
      expect(health.status).toBe(200);
      expect(health.body.status).toBe('ok');
      const ready = await request(http.app).get('/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body.checks).toMatchObject({
        redis: { ok: true, reply: 'PONG' },
        scripts: { ok: true, loaded: Object.keys(SCRIPTS).length }, // every memq script compiles
        canary: { ok: true },
      });
      await http.pipeline.workers.queues.cleanup.pause();
      try {
        const impatient = appOver(http, ns, registry, ns.connect({ producer: true }), {
          readyTimeoutMs: 300,
        });
        const stalled = await request(impatient.app).get('/readyz');
        expect(stalled.status).toBe(503);
        expect(stalled.body.checks.canary.ok).toBe(false);
        await impatient.close();
      } finally {
        await http.pipeline.workers.queues.cleanup.resume();
      }
    });

    it('listen() binds loopback (127.0.0.1) unless given a host', async () => {
      const server = await listen(http.app, 0);
      try {
        expect(server.host).toBe('127.0.0.1');
        expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
      } finally {
        await server.close();
      }
    });

    it('logs one line per request with route, status, project and resource, never the body', async () => {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(chunk.toString());
          done();
        },
      });
      const { app, close } = appOver(http, ns, registry, ns.connect({ producer: true }), {
        log: pino({ level: 'info' }, sink),
      });
      try {
        const res = await request(app)
          .post(`${PATH}/log-1/messages?wait=true`)
          .set(auth(KEYS.acme))
          .send(hello('secret-marker-4471 reach me at jane@example.com'));
        expect(res.status).toBe(200);
      } finally {
        await close();
      }
      const line = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'http request');
      expect(line).toMatchObject({
        method: 'POST',
        route: '/v1/memories/:resource/:key/messages',
        status: 200,
        project: 'acme',
        resource: 'customer-support',
      });
      expect(lines.join('')).not.toContain('secret-marker-4471');
      expect(lines.join('')).not.toContain('jane');
    });

    it('/metrics has the memq catalogue with route patterns, never ids or keys', async () => {
      await request(http.app).get(`${PATH}/metrics-key-77/messages`).set(auth(KEYS.acme));
      const res = await request(http.app).get('/metrics');
      expect(res.status).toBe(200);
      expect(res.text).toContain(
        'memq_http_requests_total{method="GET",route="/v1/memories/:resource/:key/messages",status="200"}',
      );
      expect(res.text).toContain('memq_jobs_total{queue="memory-append",outcome="completed"}');
      expect(res.text).toContain('memq_queue_jobs{queue="memory-append",state="waiting"}');
      expect(res.text).not.toContain('metrics-key-77');
    });

    it('Bull Board needs its own credentials, shows every queue, and shows job data redacted', async () => {
      const anonymous = await request(http.app).get('/admin/queues');
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers['www-authenticate']).toMatch(/^Basic/);
      const apiKey = await request(http.app).get('/admin/queues').set(auth(KEYS.acme));
      expect(apiKey.status).toBe(401);
      const page = await request(http.app).get('/admin/queues').auth(BOARD.user, BOARD.password);
      expect(page.status).toBe(200);
      expect(page.text).toContain('<div id="root">');

      // A producer that went around MemoryClient: raw content in the job itself.
      await http.pipeline.workers.queues.append.pause();
      try {
        await http.pipeline.workers.queues.append.add(JOBS.append, {
          ref: { project: 'acme', resource: 'customer-support', key: 'board-1' },
          messages: [
            {
              id: '01JC0000000000000000000001',
              role: 'user',
              content: 'call +1 (555) 123-4567 or bob@example.org',
              created_at: new Date().toISOString(),
            },
          ],
        });
        const queues = await request(http.app)
          .get('/admin/queues/api/queues?activeQueue=memory-append&status=waiting')
          .auth(BOARD.user, BOARD.password);
        expect(queues.status).toBe(200);
        const names = queues.body.queues.map((q: { name: string }) => q.name);
        expect(names.sort()).toEqual([
          'memory-append',
          'memory-cleanup',
          'memory-flush',
          'memory-token-count',
        ]);
        expect(queues.text).toContain('call [REDACTED] or [REDACTED]');
        expect(queues.text).not.toContain('bob@example.org');
        expect(queues.text).not.toContain('555');
        const add = await request(http.app)
          .post('/admin/queues/api/queues/memory-append/add')
          .auth(BOARD.user, BOARD.password)
          .send({ name: 'append', data: {} });
        expect(add.status).toBe(403);
      } finally {
        await http.pipeline.workers.queues.append.obliterate({ force: true });
        await http.pipeline.workers.queues.append.resume();
      }
    });
  });
});
