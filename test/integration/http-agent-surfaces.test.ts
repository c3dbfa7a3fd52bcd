/**
 * The agent-facing surfaces of `/v1` on real Redis, through the HTTP app as `memq start` wires it:
 * messages with content parts, tool calls and per-message privacy; the context read
 * (`.../context`); the list of a resource's instances (`/v1/memories/:resource`); session data
 * (`.../data`); tenancy of each; and the same calls through `MemqHttpClient` and `MemoryClient`.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { listen, type HttpServer } from '../../src/http/app.js';
import { MemqHttpClient, MemqHttpError } from '../../src/client/http.js';
import type { MessageInput } from '../../src/core/message.js';
import { memoryKeys } from '../../src/redis/keys.js';
import { createTokenCounter } from '../../src/tokens/counter.js';
import { KEYS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const auth = (key: string) => ({ Authorization: `Bearer ${key}` });
/** No privacy policy, 64,000-token window (half of gpt-4o's 128,000). */
const AGENT = '/v1/memories/agent-memory';
/** E-mail and phone redaction; system and tool messages are not stored. */
const SUPPORT = '/v1/memories/customer-support';
/** Message-count limited (no token limit), model gpt-4o by default. */
const BUFFER = '/v1/memories/chat-buffer';
/** E-mail detector with action `drop`. */
const NOTES = '/v1/memories/drop-notes';
const ADDRESS = 'jane.doe@example.com';

const DROP_NOTES = `resource: memory
id: drop-notes
type: token_based
max_tokens: 1000
persistence:
  type: redis
  ttl: 1h
privacy_policy:
  detectors: [email]
  action: drop
`;

/** A conversation with every message shape: instructions, parts, a tool call and its result. */
const agentConversation: MessageInput[] = [
  { role: 'developer', content: 'Answer briefly.' },
  {
    role: 'user',
    content: [
      { type: 'text', text: 'What is in this picture, and the weather in Paris?' },
      { type: 'image_url', image_url: { url: 'https://img.example/cat.png', detail: 'low' } },
    ],
  },
  {
    role: 'assistant',
    content: null,
    tool_calls: [
      {
        id: 'call_1',
        type: 'function',
        function: { name: 'weather', arguments: '{"city":"Paris"}' },
      },
    ],
  },
  { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c":21}' },
  { role: 'assistant', content: 'A cat; 21 °C in Paris.' },
];

describe('HTTP API: agent surfaces', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let http: TestHttp;

  /** Waits until every message of `path`'s instance has its exact count. */
  const counted = (path: string, key = KEYS.acme) =>
    eventually(async () => {
      const s = await request(http.app).get(`${path}/stats`).set(auth(key));
      return s.body.uncounted_messages === 0;
    }, `exact counts of ${path}`);

  beforeAll(async () => {
    ns = createRedisNamespace();
    const shipped = await shippedMemories();
    registry = createMemoryRegistry([
      ...shipped.list(),
      parseMemoryResource(DROP_NOTES, 'drop-notes.yaml').resource!,
    ]);
    http = await startHttp(ns, registry);
  });
  afterAll(async () => {
    await http.close();
    await ns.cleanup();
  });

  describe('messages', () => {
    it('stores content parts, tool calls and developer messages; do_not_persist messages are counted, never stored', async () => {
      const res = await request(http.app)
        .post(`${AGENT}/shapes/messages?wait=true`)
        .set(auth(KEYS.acme))
        .send({
          messages: [
            ...agentConversation,
            { role: 'user', content: 'my PIN is 4242', privacy: { do_not_persist: true } },
          ],
        });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body).toMatchObject({ dropped: 0, not_persisted: 1, result: { added: 5 } });
      expect(res.body.message_ids).toHaveLength(5);
      const read = await request(http.app)
        .get(`${AGENT}/shapes/messages?format=messages`)
        .set(auth(KEYS.acme));
      expect(read.body.messages).toEqual(agentConversation);
    });

    it('answers 413 for a message whose text parts, image URLs or tool-call arguments are over MEMQ_MAX_MESSAGE_BYTES in all', async () => {
      // The app's limit is 8 KiB: each piece is under it, their sum is not.
      const half = 'x'.repeat(5 * 1024);
      const parts = await request(http.app)
        .post(`${AGENT}/big/messages`)
        .set(auth(KEYS.acme))
        .send({
          messages: [
            { role: 'user', content: 'small' },
            {
              role: 'user',
              content: [
                { type: 'text', text: half },
                { type: 'image_url', image_url: { url: `https://img.example/${half}` } },
              ],
            },
          ],
        });
      expect(parts.status).toBe(413);
      expect(parts.body.error.message).toMatch(/^messages\.1: expected at most 8192 bytes/);
      const args = await request(http.app)
        .post(`${AGENT}/big/messages`)
        .set(auth(KEYS.acme))
        .send({
          messages: [
            {
              role: 'assistant',
              content: half,
              tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: half } }],
            },
          ],
        });
      expect(args.status).toBe(413);
      expect(args.body.error.details).toMatchObject({ index: 0, limit_bytes: 8192 });
      const read = await request(http.app).get(`${AGENT}/big/messages`).set(auth(KEYS.acme));
      expect(read.body.total).toBe(0);
    });
  });

  describe('GET .../context', () => {
    beforeAll(async () => {
      const turns = Array.from({ length: 12 }, (_, i) => ({
        role: i % 2 === 0 ? 'user' : 'assistant',
        content: `turn ${i}: ${'lorem ipsum dolor sit amet '.repeat(4)}`,
      }));
      const res = await request(http.app)
        .put(`${AGENT}/ctx/messages?wait=true`)
        .set(auth(KEYS.acme))
        .send({ messages: [{ role: 'system', content: 'You are terse.' }, ...turns] });
      expect(res.status).toBe(200);
      await counted(`${AGENT}/ctx`);
    });

    it('returns the instructions and the newest messages that fit max_tokens, and what it left out', async () => {
      const all = await request(http.app).get(`${AGENT}/ctx/context`).set(auth(KEYS.acme));
      expect(all.status).toBe(200);
      expect(all.body).toMatchObject({
        resource: 'agent-memory',
        key: 'ctx',
        exact: true,
        omitted: { messages: 0, tokens: 0 },
        max_tokens: 64_000,
        model: 'gpt-4o',
      });
      expect(all.body.messages).toHaveLength(13);

      const budget = Math.floor(all.body.tokens / 2);
      const half = await request(http.app)
        .get(`${AGENT}/ctx/context?max_tokens=${budget}`)
        .set(auth(KEYS.acme));
      expect(half.status).toBe(200);
      expect(half.body.max_tokens).toBe(budget);
      expect(half.body.tokens).toBeLessThanOrEqual(budget);
      const kept = half.body.messages as { role: string; content: string }[];
      expect(kept[0]).toEqual({ role: 'system', content: 'You are terse.' });
      expect(kept.at(-1)!.content).toMatch(/^turn 11:/);
      expect(kept.length).toBeLessThan(13);
      expect(half.body.omitted.messages).toBe(13 - kept.length);
      expect(half.body.omitted.tokens + half.body.tokens).toBe(all.body.tokens);
    });

    it('defaults max_tokens to the resource limit, else the model context window', async () => {
      await request(http.app)
        .post(`${BUFFER}/ctx/messages?wait=true`)
        .set(auth(KEYS.acme))
        .send({ messages: [{ role: 'user', content: 'hello' }] });
      const buffer = await request(http.app).get(`${BUFFER}/ctx/context`).set(auth(KEYS.acme));
      expect(buffer.status).toBe(200);
      expect(buffer.body).toMatchObject({ max_tokens: 128_000, model: 'gpt-4o' });
      const support = await request(http.app).get(`${SUPPORT}/none/context`).set(auth(KEYS.acme));
      expect(support.body).toMatchObject({
        messages: [],
        tokens: 0,
        max_tokens: 4_000,
        omitted: { messages: 0, tokens: 0 },
      });
    });

    it("counts with another model's tokenizer: exact with its encoding, approximate without a published one", async () => {
      const gpt4 = await request(http.app)
        .get(`${AGENT}/ctx/context?model=gpt-4`)
        .set(auth(KEYS.acme));
      expect(gpt4.status).toBe(200);
      // The resource's 64,000-token limit, but never more than gpt-4's 8,192-token window.
      expect(gpt4.body).toMatchObject({ model: 'gpt-4', exact: true, max_tokens: 8_192 });
      const cl100k = await createTokenCounter('cl100k_base');
      // Every message counted with cl100k_base, plus the 3 tokens that prime the reply.
      const expected = (gpt4.body.messages as Parameters<typeof cl100k.countMessage>[0][])
        .map((m) => cl100k.countMessage(m))
        .reduce((a, b) => a + b, 3);
      expect(gpt4.body.tokens).toBe(expected);

      const claude = await request(http.app)
        .get(`${AGENT}/ctx/context?model=claude-sonnet-4-5`)
        .set(auth(KEYS.acme));
      expect(claude.status).toBe(200);
      // 200,000-token window: the resource's 64,000 limit applies.
      expect(claude.body).toMatchObject({
        model: 'claude-sonnet-4-5',
        exact: false,
        max_tokens: 64_000,
      });
    });

    it('refuses a bad max_tokens or model with 400 naming the parameter', async () => {
      for (const [query, field] of [
        ['max_tokens=0', 'max_tokens'],
        ['max_tokens=abc', 'max_tokens'],
        ['max_tokens=10000001', 'max_tokens'],
        ['model=', 'model'],
        ['model=gpt%204o', 'model'],
        ['model=llama-3-70b', 'model'],
        ['max_token=10', 'max_token'],
      ] as const) {
        const res = await request(http.app)
          .get(`${AGENT}/ctx/context?${query}`)
          .set(auth(KEYS.acme));
        expect(res.status, query).toBe(400);
        expect(res.body.error.code).toBe('PAYLOAD_INVALID');
        expect(res.body.error.message, query).toContain(field);
      }
      const unknown = await request(http.app)
        .get('/v1/memories/nope/k/context')
        .set(auth(KEYS.acme));
      expect(unknown.status).toBe(404);
    });

    it("lets a read-only key read, and never shows another project's messages", async () => {
      const readOnly = await request(http.app)
        .get(`${AGENT}/ctx/context?max_tokens=100`)
        .set(auth(KEYS.acmeRead));
      expect(readOnly.status).toBe(200);
      expect(readOnly.body.messages.length).toBeGreaterThan(0);
      const beta = await request(http.app).get(`${AGENT}/ctx/context`).set(auth(KEYS.beta));
      expect(beta.status).toBe(200);
      expect(beta.body).toMatchObject({ messages: [], tokens: 0, omitted: { messages: 0 } });
    });
  });

  describe('GET /v1/memories/:resource', () => {
    const keys = ['list-a', 'list-b', 'list-c'];
    beforeAll(async () => {
      for (const key of keys) {
        const res = await request(http.app)
          .post(`${BUFFER}/${key}/messages?wait=true`)
          .set(auth(KEYS.acme))
          .send({ messages: [{ role: 'user', content: `hi from ${key}` }] });
        expect(res.status).toBe(200);
        await counted(`${BUFFER}/${key}`);
      }
    });

    it("pages through the API key's project's instances with a cursor", async () => {
      const seen: Record<string, unknown>[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
        const page = await request(http.app).get(`${BUFFER}?limit=2${query}`).set(auth(KEYS.acme));
        expect(page.status).toBe(200);
        expect(page.body.items.length).toBeLessThanOrEqual(2);
        seen.push(...(page.body.items as Record<string, unknown>[]));
        cursor = page.body.next_cursor as string | null;
        pages += 1;
      } while (cursor !== null && pages < 10);
      expect(cursor).toBeNull();
      expect(pages).toBeGreaterThanOrEqual(2);
      const mine = seen.filter((i) => keys.includes(i.key as string));
      expect(mine.map((i) => i.key).sort()).toEqual(keys);
      for (const item of mine) {
        expect(item).toMatchObject({ message_count: 1, exact: true });
        expect(item.tokens).toBeGreaterThan(0);
        expect(new Date(item.last_activity as string).toISOString()).toBe(item.last_activity);
      }
      const read = await request(http.app).get(`${BUFFER}`).set(auth(KEYS.acmeRead));
      expect(read.status).toBe(200);
      expect(read.body.items.length).toBeGreaterThanOrEqual(3);
    });

    it('shows another project none of them', async () => {
      const beta = await request(http.app).get(`${BUFFER}?limit=100`).set(auth(KEYS.beta));
      expect(beta.status).toBe(200);
      expect(beta.body).toEqual({ items: [], next_cursor: null });
    });

    it('refuses a bad limit or cursor with 400, an undeclared resource with 404', async () => {
      for (const [query, field] of [
        ['limit=0', 'limit'],
        ['limit=101', 'limit'],
        ['limit=ten', 'limit'],
        ['cursor=', 'cursor'],
        ['offset=2', 'offset'],
      ] as const) {
        const res = await request(http.app).get(`${BUFFER}?${query}`).set(auth(KEYS.acme));
        expect(res.status, query).toBe(400);
        expect(res.body.error.message, query).toContain(field);
      }
      const unknown = await request(http.app).get('/v1/memories/nope').set(auth(KEYS.acme));
      expect(unknown.status).toBe(404);
    });
  });

  describe('.../data', () => {
    it('stores session data through the privacy policy and reads it back; PUT replaces it', async () => {
      const put = await request(http.app)
        .put(`${SUPPORT}/d-1/data`)
        .set(auth(KEYS.acme))
        .send({ data: { plan: 'pro', contact: `mail ${ADDRESS}`, city: 'Zürich' } });
      expect(put.status, JSON.stringify(put.body)).toBe(200);
      const stored = { plan: 'pro', contact: 'mail [REDACTED]', city: 'Zürich' };
      expect(put.body).toEqual({ data: stored, redactions: 1, dropped: 0 });
      const get = await request(http.app).get(`${SUPPORT}/d-1/data`).set(auth(KEYS.acmeRead));
      expect(get.status).toBe(200);
      expect(get.body).toEqual({ data: stored });

      const replaced = await request(http.app)
        .put(`${SUPPORT}/d-1/data`)
        .set(auth(KEYS.acme))
        .send({ data: { plan: 'team' } });
      expect(replaced.status).toBe(200);
      const after = await request(http.app).get(`${SUPPORT}/d-1/data`).set(auth(KEYS.acme));
      expect(after.body).toEqual({ data: { plan: 'team' } });
      const none = await request(http.app).get(`${SUPPORT}/d-none/data`).set(auth(KEYS.acme));
      expect(none.body).toEqual({ data: {} });
      // The map lives as long as the instance: customer-support's TTL is 24 h.
      const dataKey = memoryKeys(ns.keyPrefix, {
        project: 'acme',
        resource: 'customer-support',
        key: 'd-1',
      }).data;
      const ttl = await ns.redis.ttl(dataKey);
      expect(ttl).toBeGreaterThan(24 * 3600 - 60);
      expect(ttl).toBeLessThanOrEqual(24 * 3600);
    });

    it('drops an entry whose value matches a policy with action drop', async () => {
      const put = await request(http.app)
        .put(`${NOTES}/d-2/data`)
        .set(auth(KEYS.acme))
        .send({ data: { note: `write to ${ADDRESS}`, step: '3' } });
      expect(put.status).toBe(200);
      expect(put.body).toEqual({ data: { step: '3' }, redactions: 0, dropped: 1 });
      const get = await request(http.app).get(`${NOTES}/d-2/data`).set(auth(KEYS.acme));
      expect(get.body).toEqual({ data: { step: '3' } });
    });

    it('refuses invalid data before storing anything: 400 or 413 naming the field', async () => {
      const key = `${SUPPORT}/d-3/data`;
      await request(http.app)
        .put(key)
        .set(auth(KEYS.acme))
        .send({ data: { kept: 'yes' } })
        .expect(200);
      const cases: Array<[unknown, number, string]> = [
        [{ data: { a: 1 } }, 400, 'data'],
        [{ data: { '': 'x' } }, 400, 'data'],
        [{ data: { ['k'.repeat(129)]: 'x' } }, 400, 'data'],
        [{ data: ['x'] }, 400, 'data'],
        [{ data: {}, extra: true }, 400, 'extra'],
        [{}, 400, 'data'],
        [{ data: { [`to ${ADDRESS}`]: 'x' } }, 400, 'privacy policy'],
        [
          { data: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) },
          413,
          'at most 64 entries',
        ],
        // 1,366 characters of 3 bytes each: under 4,096 characters, over 4,096 bytes.
        [
          { data: { big: '€'.repeat(1366) } },
          413,
          'data[0]: the value: expected at most 4096 bytes',
        ],
        // Entries are named by position, never by key (a key is data too).
        [{ data: { ok: 'v', [ADDRESS]: 5 } }, 400, 'data[1]: the value: expected a string'],
        [{ data: { [ADDRESS + 'k'.repeat(120)]: 'v' } }, 400, 'data[0]: the key: expected 1-128'],
        [{ data: { [ADDRESS]: '€'.repeat(1366) } }, 413, 'data[0]: the value'],
      ];
      for (const [body, status, text] of cases) {
        const res = await request(http.app)
          .put(key)
          .set(auth(KEYS.acme))
          .send(body as object);
        expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(status);
        expect(res.body.error.message).toContain(text);
        expect(res.body.error.message).not.toContain(ADDRESS);
      }
      const after = await request(http.app).get(key).set(auth(KEYS.acme));
      expect(after.body).toEqual({ data: { kept: 'yes' } });
    });

    it('checks the limits on the data as sent: a value within them that redaction lengthens is stored', async () => {
      // 585 addresses of 6 bytes and a space: 4,095 bytes sent, 6,435 bytes once redacted.
      const value = 'a@b.co '.repeat(585);
      const put = await request(http.app)
        .put(`${SUPPORT}/d-5/data`)
        .set(auth(KEYS.acme))
        .send({ data: { notes: value } });
      expect(put.status).toBe(200);
      expect(put.body).toEqual({
        data: { notes: '[REDACTED] '.repeat(585) },
        redactions: 585,
        dropped: 0,
      });
      const get = await request(http.app).get(`${SUPPORT}/d-5/data`).set(auth(KEYS.acme));
      expect(get.body).toEqual({ data: { notes: '[REDACTED] '.repeat(585) } });
    });

    it('keeps a __proto__ key as an entry', async () => {
      const put = await request(http.app)
        .put(`${AGENT}/d-6/data`)
        .set(auth(KEYS.acme))
        .set('Content-Type', 'application/json')
        .send('{"data": {"__proto__": "x", "a": "b"}}');
      expect(put.status).toBe(200);
      const get = await request(http.app).get(`${AGENT}/d-6/data`).set(auth(KEYS.acme));
      expect(get.text).toBe('{"data":{"__proto__":"x","a":"b"}}');
    });

    it("starts the instance's lifetime with a put that creates it (chat-buffer: expiration 24h)", async () => {
      await request(http.app)
        .put(`${BUFFER}/d-7/data`)
        .set(auth(KEYS.acme))
        .send({ data: { step: '1' } })
        .expect(200);
      const k = memoryKeys(ns.keyPrefix, { project: 'acme', resource: 'chat-buffer', key: 'd-7' });
      const [createdAt, expiresAt] = (await ns.redis.hmget(k.meta, 'created_at', 'expires_at')).map(
        Number,
      );
      expect(expiresAt).toBe(createdAt! + 24 * 3_600_000);
      // The data takes the 1 h TTL; puts slide it, never past expires_at.
      const expiry = await ns.redis.pexpiretime(k.data);
      expect(expiry).toBeGreaterThan(createdAt! + 3_600_000 - 60_000);
      expect(expiry).toBeLessThanOrEqual(expiresAt!);
    });

    it("needs a write key to PUT, and keeps projects' data apart", async () => {
      const readOnly = await request(http.app)
        .put(`${SUPPORT}/d-4/data`)
        .set(auth(KEYS.acmeRead))
        .send({ data: { a: 'b' } });
      expect(readOnly.status).toBe(403);
      await request(http.app)
        .put(`${SUPPORT}/d-4/data`)
        .set(auth(KEYS.acme))
        .send({ data: { owner: 'acme' } })
        .expect(200);
      const beta = await request(http.app).get(`${SUPPORT}/d-4/data`).set(auth(KEYS.beta));
      expect(beta.body).toEqual({ data: {} });
      await request(http.app)
        .put(`${SUPPORT}/d-4/data`)
        .set(auth(KEYS.beta))
        .send({ data: { owner: 'beta' } })
        .expect(200);
      const acme = await request(http.app).get(`${SUPPORT}/d-4/data`).set(auth(KEYS.acme));
      expect(acme.body).toEqual({ data: { owner: 'acme' } });
    });
  });

  describe('clients', () => {
    let server: HttpServer;
    let client: MemqHttpClient;
    beforeAll(async () => {
      server = await listen(http.app, 0);
      client = new MemqHttpClient({
        baseUrl: `http://127.0.0.1:${server.port}`,
        apiKey: KEYS.acme,
      });
    });
    afterAll(() => server.close());

    it('MemqHttpClient: context, list (one page and every page), putData and getData', async () => {
      const appended = await client.append('agent-memory', 'client:1', agentConversation, {
        wait: true,
      });
      expect(appended.not_persisted).toBe(0);
      const context = await client.context('agent-memory', 'client:1', { maxTokens: 10_000 });
      expect(context.messages).toEqual(agentConversation);
      expect(context.max_tokens).toBe(10_000);
      const gpt4 = await client.context('agent-memory', 'client:1', { model: 'gpt-4' });
      expect(gpt4.model).toBe('gpt-4');

      const page = await client.list('agent-memory', { limit: 1 });
      expect(page.items).toHaveLength(1);
      const every: string[] = [];
      for await (const item of client.listAll('agent-memory', { limit: 1 })) every.push(item.key);
      expect(every).toContain('client:1');
      expect(new Set(every).size).toBe(every.length);

      const put = await client.putData('customer-support', 'client:1', { mail: ADDRESS });
      expect(put).toEqual({ data: { mail: '[REDACTED]' }, redactions: 1, dropped: 0 });
      expect(await client.getData('customer-support', 'client:1')).toEqual({
        mail: '[REDACTED]',
      });
      const refused = await client
        .context('agent-memory', 'client:1', { maxTokens: 0 })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(MemqHttpError);
      expect((refused as MemqHttpError).status).toBe(400);
    });

    it('MemoryClient: the same operations in-process', async () => {
      const memory = http.pipeline.client.forProject('acme');
      const target = { resource: 'agent-memory', key: 'client:1' };
      const context = await memory.context(target, { maxTokens: 10_000 });
      expect(context.messages).toEqual(agentConversation);
      expect(context).toMatchObject({ maxTokens: 10_000, model: 'gpt-4o' });
      const page = await memory.list('agent-memory', { limit: 100 });
      expect(page.items.map((i) => i.key)).toContain('client:1');
      const put = await memory.putData(
        { resource: 'customer-support', key: 'client:2' },
        { note: `call ${ADDRESS}` },
      );
      expect(put).toEqual({ data: { note: 'call [REDACTED]' }, redactions: 1, dropped: 0 });
      expect(await memory.getData({ resource: 'customer-support', key: 'client:2' })).toEqual({
        note: 'call [REDACTED]',
      });
      await expect(memory.context(target, { maxTokens: 1.5 })).rejects.toThrow(/max_tokens/);
      await expect(memory.list('agent-memory', { limit: 101 })).rejects.toThrow(/limit/);
      // Another project sees nothing of it.
      const other = http.pipeline.client.forProject('other');
      expect((await other.context(target)).messages).toEqual([]);
      expect(await other.getData({ resource: 'customer-support', key: 'client:2' })).toEqual({});
    });
  });
});
