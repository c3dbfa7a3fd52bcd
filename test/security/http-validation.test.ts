import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUES } from '../../queues/names.js';
import { KEYS } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';
import { startBareHttp, type BareHttp } from './http-bare-app.js';

const auth = { Authorization: `Bearer ${KEYS.acme}` };
const BASE = '/v1/memories/customer-support';
const hello = { messages: [{ role: 'user', content: 'hello there' }] };

/** One invalid request: what it is, and the 4xx it must answer. */
interface Case {
  readonly name: string;
  readonly method: 'post' | 'put' | 'delete';
  readonly path: string;
  readonly body?: object;
  readonly key?: string;
  readonly status: number;
  readonly code: string;
}

const M = `${BASE}/v-1/messages`;
const CASES: Case[] = [
  // append
  {
    name: 'append ?wait=yes',
    method: 'post',
    path: `${M}?wait=yes`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append ?wait=true&timeout_ms=0',
    method: 'post',
    path: `${M}?wait=true&timeout_ms=0`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append ?timeout_ms=0 alone',
    method: 'post',
    path: `${M}?timeout_ms=0`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append ?timeout_ms=60001',
    method: 'post',
    path: `${M}?wait=true&timeout_ms=60001`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append ?wait twice',
    method: 'post',
    path: `${M}?wait=true&wait=false`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append unknown query ?wiat=true',
    method: 'post',
    path: `${M}?wiat=true`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append bad role',
    method: 'post',
    path: M,
    body: { messages: [{ role: 'robot', content: 'x' }] },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append extra body field',
    method: 'post',
    path: M,
    body: { ...hello, project: 'beta' },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append no messages',
    method: 'post',
    path: M,
    body: { messages: [] },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append 101 messages',
    method: 'post',
    path: M,
    body: { messages: Array.from({ length: 101 }, () => hello.messages[0]) },
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
  },
  {
    name: 'append bad key',
    method: 'post',
    path: `${BASE}/bad%20key!/messages`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append key with __',
    method: 'post',
    path: `${BASE}/__k/messages`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append key template',
    method: 'post',
    path: `${BASE}/%7B%7B%20.x%20%7D%7D/messages`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'append unknown resource',
    method: 'post',
    path: '/v1/memories/nope/v-1/messages',
    body: hello,
    status: 404,
    code: 'MEMORY_NOT_FOUND',
  },
  {
    name: 'append read-only key',
    method: 'post',
    path: M,
    body: hello,
    key: KEYS.acmeRead,
    status: 403,
    code: 'FORBIDDEN',
  },
  // write
  {
    name: 'write ?wait=yes',
    method: 'put',
    path: `${M}?wait=yes`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'write ?timeout_ms=0',
    method: 'put',
    path: `${M}?wait=true&timeout_ms=0`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'write messages not a list',
    method: 'put',
    path: M,
    body: { messages: 'x' },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'write bad key',
    method: 'put',
    path: `${BASE}/bad%20key/messages`,
    body: hello,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  // flush
  {
    name: 'flush ?wait=maybe',
    method: 'post',
    path: `${BASE}/v-1/flush?wait=maybe`,
    body: {},
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'flush ?timeout_ms=0',
    method: 'post',
    path: `${BASE}/v-1/flush?wait=true&timeout_ms=0`,
    body: {},
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'flush unknown strategy',
    method: 'post',
    path: `${BASE}/v-1/flush`,
    body: { strategy: 'nope' },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'flush dry_run not boolean',
    method: 'post',
    path: `${BASE}/v-1/flush`,
    body: { dry_run: 'yes' },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'flush dry run ?timeout_ms=0',
    method: 'post',
    path: `${BASE}/v-1/flush?timeout_ms=0`,
    body: { dry_run: true },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'flush bad key',
    method: 'post',
    path: `${BASE}/bad%20key/flush`,
    body: {},
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  // clear
  {
    name: 'clear ?wait=yes',
    method: 'post',
    path: `${BASE}/v-1/clear?wait=yes`,
    body: { confirm: true },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'clear ?timeout_ms=abc',
    method: 'post',
    path: `${BASE}/v-1/clear?wait=true&timeout_ms=abc`,
    body: { confirm: true },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'clear without confirm',
    method: 'post',
    path: `${BASE}/v-1/clear`,
    body: {},
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'clear extra body field',
    method: 'post',
    path: `${BASE}/v-1/clear`,
    body: { confirm: true, all: true },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'clear bad key',
    method: 'post',
    path: `${BASE}/bad%20key/clear`,
    body: { confirm: true },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  // delete
  {
    name: 'delete ?wait=yes',
    method: 'delete',
    path: `${BASE}/v-1?wait=yes`,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'delete ?timeout_ms=0',
    method: 'delete',
    path: `${BASE}/v-1?wait=true&timeout_ms=0`,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'delete with a body',
    method: 'delete',
    path: `${BASE}/v-1`,
    body: { confirm: true },
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
  {
    name: 'delete bad key',
    method: 'delete',
    path: `${BASE}/bad%20key`,
    status: 400,
    code: 'PAYLOAD_INVALID',
  },
];

/** Jobs per queue, every state BullMQ has (a job added in any state shows here). */
async function jobCounts(http: BareHttp): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const name of Object.values(QUEUES)) {
    const byState = await http.queues.byName(name).getJobCounts();
    counts[name] = Object.values(byState).reduce((a, b) => a + b, 0);
  }
  return counts;
}

// No worker runs (as with `memq serve` alone), so nothing in Redis changes by itself: the
// namespace's whole text (memory keys and every BullMQ key, the job id counters included) is
// a reliable before/after witness. A job enqueued and then processed would still show: the
// queue's id counter and event stream only grow.
describe('HTTP validation happens before any side effect', () => {
  let ns: RedisNamespace;
  let http: BareHttp;

  beforeAll(async () => {
    ns = createRedisNamespace();
    http = startBareHttp(ns, await shippedMemories());
    // A BullMQ Queue writes its queue's `meta` hash once connected (the same fields from every
    // Queue object): wait for all four, so that initialisation is not mistaken for a side effect.
    await eventually(
      async () => (await ns.keys()).filter((key) => key.endsWith(':meta')).length === 4,
      'the queues to write their meta',
    );
  });
  afterAll(async () => {
    await http.close();
    await ns.cleanup();
  });

  it.each(CASES)('$name: answers $status $code and Redis is unchanged', async (c) => {
    const before = await ns.allText();
    const jobsBefore = await jobCounts(http);
    const agent = request(http.app);
    let req = agent[c.method](c.path).set({ Authorization: `Bearer ${c.key ?? KEYS.acme}` });
    if (c.body !== undefined) req = req.send(c.body);
    const res = await req;
    expect(res.status, JSON.stringify(res.body)).toBe(c.status);
    expect(res.body).toEqual({
      error: {
        code: c.code,
        message: expect.any(String) as unknown,
        details: expect.any(Object) as unknown,
      },
    });
    expect(await ns.allText()).toBe(before);
    expect(await jobCounts(http)).toEqual(jobsBefore);
  });

  it('the witness sees a valid request: the same append without the bad query changes Redis', async () => {
    const before = await ns.allText();
    const jobsBefore = await jobCounts(http);
    const res = await request(http.app).post(M).set(auth).send(hello);
    expect(res.status).toBe(202);
    expect(await ns.allText()).not.toBe(before);
    expect(await jobCounts(http)).toEqual({
      ...jobsBefore,
      'memory-append': jobsBefore['memory-append']! + 1,
    });
  });
});
