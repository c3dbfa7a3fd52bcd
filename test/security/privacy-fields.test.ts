import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUES } from '../../queues/names.js';
import { KEYS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const EMAIL = 'jane@example.com';
const PHONE = '4155552671';

describe('privacy policy on every field of a message', () => {
  let ns: RedisNamespace;
  let http: TestHttp;

  beforeAll(async () => {
    ns = createRedisNamespace();
    http = await startHttp(ns, await shippedMemories());
  });
  afterAll(async () => {
    await http.close();
    await ns.cleanup();
  });

  it('redacts an e-mail in a tool-call id and a phone number in a number metadata value before Redis', async () => {
    const res = await request(http.app)
      .post('/v1/memories/customer-support/pii-1/messages?wait=true')
      .set({ Authorization: `Bearer ${KEYS.acme}` })
      .send({
        messages: [
          {
            role: 'assistant',
            content: 'hi',
            tool_calls: [
              { id: EMAIL, type: 'function', function: { name: 'lookup', arguments: '{}' } },
            ],
            metadata: { phone: 4155552671 },
          },
        ],
      });
    const body = res.body as { result: unknown; redactions: number; job: { id: string } };
    expect(res.status).toBe(200);
    expect(body.result).toEqual({ added: 1, duplicates: 0 });
    expect(body.redactions).toBe(2);

    const read = await request(http.app)
      .get('/v1/memories/customer-support/pii-1/messages')
      .set({ Authorization: `Bearer ${KEYS.acme}` });
    expect(
      (read.body as { messages: Array<{ message: unknown }> }).messages.map((m) => m.message),
    ).toEqual([
      expect.objectContaining({
        content: 'hi',
        tool_calls: [expect.objectContaining({ id: '[REDACTED]' })],
        metadata: { phone: '[REDACTED]' },
      }),
    ]);

    const text = await ns.allText();
    expect(text).not.toContain(EMAIL);
    expect(text).not.toContain(PHONE);
    // The append job's hash (kept after completion) holds the redacted messages only.
    const job = await ns.redis.hgetall(`${ns.queuePrefix}:${QUEUES.append}:${body.job.id}`);
    expect(job.data).toContain('[REDACTED]');
    expect(job.data).not.toContain(EMAIL);
    expect(job.data).not.toContain(PHONE);
  });
});
