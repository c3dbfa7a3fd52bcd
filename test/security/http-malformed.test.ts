import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import pino from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KEYS } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';
import { startBareHttp, type BareHttp } from './http-bare-app.js';

const auth = { Authorization: `Bearer ${KEYS.acme}` };
const M = '/v1/memories/customer-support/mal-1/messages';
const JSON_BODY = JSON.stringify({ messages: [{ role: 'user', content: 'hello there' }] });
/** 1 MiB of JSON that gzips to about 1 KiB: over the 64 KiB body limit once inflated. */
const BOMB = gzipSync(
  Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'a'.repeat(1 << 20) }] })),
);

/** Sends a Buffer as is (superagent JSON-serializes any non-string body typed application/json). */
const asIs = (value: unknown) => value as string;

/** The error body every client error carries. */
const errorBody = (code: string): unknown => ({
  error: {
    code,
    message: expect.any(String) as unknown,
    details: expect.any(Object) as unknown,
  },
});

/** The id of the job a 202 names. */
const jobIdOf = (res: request.Response) => (res.body as { job: { id: string } }).job.id;

describe('malformed requests answer 4xx with the error body and log nothing at error', () => {
  let ns: RedisNamespace;
  let http: BareHttp;
  const lines: string[] = [];
  /** Log lines at error level or above (pino: error = 50, fatal = 60). */
  const errorLines = () =>
    lines.map((l) => JSON.parse(l) as { level: number }).filter((l) => l.level >= 50);

  beforeAll(async () => {
    ns = createRedisNamespace();
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    http = startBareHttp(ns, await shippedMemories(), { log: pino({ level: 'trace' }, sink) });
    // The append queue's keys (events stream, id counter, meta hash) must exist for a job id
    // that names one of them to reach a wrong-type key.
    const seeded = await request(http.app).post(M).set(auth).type('json').send(JSON_BODY);
    expect(seeded.status).toBe(202);
  });
  afterAll(async () => {
    await http.close();
    await ns.cleanup();
  });
  beforeEach(() => {
    lines.length = 0;
  });

  describe('bodies', () => {
    it.each(['post', 'put'] as const)(
      '%s with Content-Encoding: bogus answers 415 UNSUPPORTED_MEDIA_TYPE',
      async (method) => {
        const agent = request(http.app);
        const res = await agent[method](M)
          .set(auth)
          .set('Content-Type', 'application/json')
          .set('Content-Encoding', 'bogus')
          .send(JSON_BODY);
        expect(res.status).toBe(415);
        expect(res.body).toEqual(errorBody('UNSUPPORTED_MEDIA_TYPE'));
        expect((res.body as { error: { message: string } }).error.message).toContain(
          'Content-Encoding',
        );
        expect(errorLines()).toEqual([]);
      },
    );

    it('flush and clear with Content-Encoding: bogus answer 415 too', async () => {
      for (const path of [
        '/v1/memories/customer-support/mal-1/flush',
        '/v1/memories/customer-support/mal-1/clear',
      ]) {
        const res = await request(http.app)
          .post(path)
          .set(auth)
          .set('Content-Type', 'application/json')
          .set('Content-Encoding', 'bogus')
          .send('{}');
        expect(res.status).toBe(415);
        expect(res.body).toEqual(errorBody('UNSUPPORTED_MEDIA_TYPE'));
      }
      expect(errorLines()).toEqual([]);
    });

    it('invalid JSON answers 400 PAYLOAD_INVALID', async () => {
      const res = await request(http.app)
        .post(M)
        .set(auth)
        .set('Content-Type', 'application/json')
        .send('{"messages": [');
      expect(res.status).toBe(400);
      expect(res.body).toEqual(errorBody('PAYLOAD_INVALID'));
      expect(errorLines()).toEqual([]);
    });

    it('gzip that is not gzip answers 400 PAYLOAD_INVALID', async () => {
      const res = await request(http.app)
        .post(M)
        .set(auth)
        .set('Content-Type', 'application/json')
        .set('Content-Encoding', 'gzip')
        .send(JSON_BODY);
      expect(res.status).toBe(400);
      expect(res.body).toEqual(errorBody('PAYLOAD_INVALID'));
      expect(errorLines()).toEqual([]);
    });

    it('a body that is not JSON (text/plain, form) answers 415 UNSUPPORTED_MEDIA_TYPE', async () => {
      for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
        const res = await request(http.app)
          .post(M)
          .set(auth)
          .set('Content-Type', type)
          .send(JSON_BODY);
        expect(res.status, type).toBe(415);
        expect(res.body).toEqual(errorBody('UNSUPPORTED_MEDIA_TYPE'));
      }
      expect(errorLines()).toEqual([]);
    });

    it('JSON in a charset other than UTF-8 answers 415 UNSUPPORTED_MEDIA_TYPE', async () => {
      const res = await request(http.app)
        .post(M)
        .set(auth)
        .set('Content-Type', 'application/json; charset=utf-7')
        .send(JSON_BODY);
      expect(res.status).toBe(415);
      expect(res.body).toEqual(errorBody('UNSUPPORTED_MEDIA_TYPE'));
      expect(errorLines()).toEqual([]);
    });

    it('a body over the limit, plain or gzip-inflated, answers 413 PAYLOAD_TOO_LARGE', async () => {
      const plain = await request(http.app)
        .post(M)
        .set(auth)
        .set('Content-Type', 'application/json')
        .send('x'.repeat(70 * 1024));
      expect(plain.status).toBe(413);
      expect(plain.body).toEqual(errorBody('PAYLOAD_TOO_LARGE'));
      const bomb = await request(http.app)
        .post(M)
        .set(auth)
        .set('Content-Type', 'application/json')
        .set('Content-Encoding', 'gzip')
        .serialize(asIs)
        .send(BOMB);
      expect(bomb.status).toBe(413);
      expect(bomb.body).toEqual(errorBody('PAYLOAD_TOO_LARGE'));
      expect(errorLines()).toEqual([]);
    });
  });

  describe('authentication comes before the body is read', () => {
    it.each([
      ['an oversized body', { 'Content-Type': 'application/json' }, 'x'.repeat(200 * 1024)],
      [
        'a gzip bomb',
        { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' },
        BOMB as string | Buffer,
      ],
      [
        'Content-Encoding: bogus',
        { 'Content-Type': 'application/json', 'Content-Encoding': 'bogus' },
        JSON_BODY,
      ],
      ['invalid JSON', { 'Content-Type': 'application/json' }, '{"messages": ['],
      ['a text/plain body', { 'Content-Type': 'text/plain' }, JSON_BODY],
    ])('without a key, %s answers 401 UNAUTHENTICATED', async (_name, headers, body) => {
      const res = await request(http.app).post(M).set(headers).serialize(asIs).send(body);
      expect(res.status).toBe(401);
      expect(res.body).toEqual(errorBody('UNAUTHENTICATED'));
      expect(errorLines()).toEqual([]);
    });

    it('with an unknown key, an oversized body answers 401 UNAUTHENTICATED', async () => {
      const res = await request(http.app)
        .post(M)
        .set({ Authorization: 'Bearer not-a-key' })
        .set('Content-Type', 'application/json')
        .send('x'.repeat(200 * 1024));
      expect(res.status).toBe(401);
      expect(res.body).toEqual(errorBody('UNAUTHENTICATED'));
    });
  });

  describe('job ids', () => {
    it.each([
      'events',
      'meta',
      'id',
      'wait',
      'stalled-check',
      'id:with:colons',
      '..%2Fx',
      '..%2F..%2Fmemory-cleanup%2F1',
      '0',
      '-1',
      '1e3',
      '01JC0000000000000000000001',
      '01JC0000000000000000000001-zzzzzzzz',
      'x'.repeat(300),
      '9'.repeat(300),
    ])('GET /v1/jobs/memory-append/%s answers 404 NOT_FOUND', async (id) => {
      const res = await request(http.app).get(`/v1/jobs/memory-append/${id}`).set(auth);
      expect(res.status).toBe(404);
      expect(res.body).toEqual(errorBody('NOT_FOUND'));
      expect(errorLines()).toEqual([]);
    });

    it('ids of the shapes memq produces still resolve: the append id from a 202', async () => {
      const appended = await request(http.app).post(M).set(auth).type('json').send(JSON_BODY);
      expect(appended.status).toBe(202);
      const job = await request(http.app)
        .get(`/v1/jobs/memory-append/${jobIdOf(appended)}`)
        .set(auth);
      expect(job.status).toBe(200);
      expect(job.body).toMatchObject({
        id: jobIdOf(appended),
        name: 'append',
        state: 'waiting',
      });
    });

    it('ids of the shapes memq produces still resolve: a numeric id (write, flush, clear, delete)', async () => {
      const written = await request(http.app)
        .put(M)
        .set(auth)
        .send({ messages: [{ role: 'user', content: 'x' }] });
      expect(written.status).toBe(202);
      expect(jobIdOf(written)).toMatch(/^\d+$/);
      const job = await request(http.app)
        .get(`/v1/jobs/memory-cleanup/${jobIdOf(written)}`)
        .set(auth);
      expect(job.status).toBe(200);
      expect(job.body).toMatchObject({ name: 'write', state: 'waiting' });
    });
  });
});
