/**
 * `MemqHttpClient` request building, error mapping and retry policy, over a scripted `fetch`
 * (the server side is covered by test/integration/http-client.test.ts).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  MemqHttpClient,
  MemqHttpError,
  MemqNetworkError,
  type FetchLike,
} from '../../../src/client/http.js';

interface Sent {
  url: string;
  method: string | undefined;
  headers: Record<string, string>;
  body: string | undefined;
}

/** A `fetch` answering with `answers` in turn, recording each request. */
function scripted(...answers: (() => Response)[]): { fetch: FetchLike; sent: Sent[] } {
  const sent: Sent[] = [];
  const fetch: FetchLike = (url, init) => {
    sent.push({
      url,
      method: init.method,
      headers: init.headers as Record<string, string>,
      body: init.body as string | undefined,
    });
    const answer = answers[sent.length - 1];
    if (!answer) throw new Error('no answer scripted');
    return Promise.resolve(answer());
  };
  return { fetch, sent };
}

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}) =>
  () =>
    new Response(JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/json', ...headers },
    });
const apiError = (status: number, code: string, headers: Record<string, string> = {}) =>
  json(status, { error: { code, message: `${code} happened`, details: { field: 'x' } } }, headers);
const OK_APPEND = json(202, {
  job: { queue: 'memory-append', id: '1' },
  message_ids: [],
  dropped: 0,
  redactions: 0,
});

async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('MemqHttpClient', () => {
  it('encodes path parts, sends the key, the query and the body', async () => {
    const { fetch, sent } = scripted(OK_APPEND, json(200, { total: 0 }), json(200, {}));
    const client = new MemqHttpClient({
      baseUrl: 'http://memq.test/base/',
      apiKey: 'k'.repeat(20),
      fetch,
    });
    await client.append('a/b', 'k y?#', [{ role: 'user', content: 'hi' }], {
      wait: true,
      timeoutMs: 500,
    });
    await client.read('r', 'k', { offset: 2, limit: 5, format: 'messages' });
    await client.clear('r', 'k');
    expect(sent.map((s) => `${s.method} ${s.url}`)).toEqual([
      'POST http://memq.test/base/v1/memories/a%2Fb/k%20y%3F%23/messages?wait=true&timeout_ms=500',
      'GET http://memq.test/base/v1/memories/r/k/messages?offset=2&limit=5&format=messages',
      'POST http://memq.test/base/v1/memories/r/k/clear',
    ]);
    expect(sent[0]!.headers.authorization).toBe(`Bearer ${'k'.repeat(20)}`);
    // Without retries the server assigns ids.
    expect(JSON.parse(sent[0]!.body!)).toEqual({ messages: [{ role: 'user', content: 'hi' }] });
    expect(sent[1]!.body).toBeUndefined();
    expect(JSON.parse(sent[2]!.body!)).toEqual({ confirm: true });
  });

  it('builds the context, list and session-data requests; listAll follows next_cursor', async () => {
    const { fetch, sent } = scripted(
      json(200, { messages: [] }),
      json(200, { items: [{ key: 'a' }], next_cursor: 'c/1' }),
      json(200, { items: [{ key: 'b' }, { key: 'c' }], next_cursor: null }),
      json(200, { data: { plan: 'pro' } }),
      json(200, { data: { plan: 'pro' }, redactions: 0, dropped: 0 }),
    );
    const client = new MemqHttpClient({
      baseUrl: 'http://memq.test',
      apiKey: 'k'.repeat(20),
      fetch,
    });
    await client.context('r', 'k:1', { maxTokens: 500, model: 'gpt-4o' });
    const keys: string[] = [];
    for await (const item of client.listAll('r', { limit: 2 })) keys.push(item.key);
    expect(keys).toEqual(['a', 'b', 'c']);
    expect(await client.getData('r', 'k:1')).toEqual({ plan: 'pro' });
    await client.putData('r', 'k:1', { plan: 'pro' });
    expect(sent.map((s) => `${s.method} ${s.url}`)).toEqual([
      'GET http://memq.test/v1/memories/r/k%3A1/context?max_tokens=500&model=gpt-4o',
      'GET http://memq.test/v1/memories/r?limit=2',
      'GET http://memq.test/v1/memories/r?cursor=c%2F1&limit=2',
      'GET http://memq.test/v1/memories/r/k%3A1/data',
      'PUT http://memq.test/v1/memories/r/k%3A1/data',
    ]);
    expect(JSON.parse(sent[4]!.body!)).toEqual({ data: { plan: 'pro' } });
  });

  it('maps an error answer to MemqHttpError and does not retry a 400', async () => {
    const { fetch, sent } = scripted(apiError(400, 'PAYLOAD_INVALID'));
    const client = new MemqHttpClient({
      baseUrl: 'http://memq.test',
      apiKey: 'key',
      fetch,
      retry: { attempts: 3 },
    });
    const error = await rejection(() => client.stats('r', 'k', { deep: true }));
    expect(error).toBeInstanceOf(MemqHttpError);
    expect(error).toMatchObject({
      status: 400,
      code: 'PAYLOAD_INVALID',
      details: { field: 'x' },
      retryAfterMs: undefined,
      method: 'GET',
      path: '/v1/memories/r/k/stats',
    });
    expect(sent).toHaveLength(1);
  });

  it('names a body without the API error shape HTTP_<status>', async () => {
    const { fetch } = scripted(() => new Response('<html>bad gateway</html>', { status: 502 }));
    const client = new MemqHttpClient({ baseUrl: 'http://memq.test', apiKey: 'key', fetch });
    expect(await rejection(() => client.health('r', 'k'))).toMatchObject({
      status: 502,
      code: 'HTTP_502',
      details: {},
    });
  });

  it('retries 429 and 503 after Retry-After (seconds or a date) with the same message ids', async () => {
    const past = new Date(Date.now() - 60_000).toUTCString();
    const { fetch, sent } = scripted(
      apiError(429, 'RATE_LIMITED', { 'retry-after': '0' }),
      apiError(503, 'REDIS_UNAVAILABLE', { 'retry-after': past }),
      OK_APPEND,
    );
    const client = new MemqHttpClient({
      baseUrl: 'http://memq.test',
      apiKey: 'key',
      fetch,
      retry: { attempts: 2 },
    });
    await client.append('r', 'k', [
      { role: 'user', content: 'one' },
      { role: 'user', content: 'two', id: '01J00000000000000000000000' },
    ]);
    expect(sent).toHaveLength(3);
    const ids = sent.map((s) =>
      (JSON.parse(s.body!) as { messages: { id: string }[] }).messages.map((m) => m.id),
    );
    expect(ids[0]![0]).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(ids[0]![1]).toBe('01J00000000000000000000000'); // a given id is kept
    expect(ids[1]).toEqual(ids[0]);
    expect(ids[2]).toEqual(ids[0]);
  });

  it('gives up after the attempts, or at once when Retry-After is over maxDelayMs', async () => {
    const busy = apiError(429, 'BACKPRESSURE', { 'retry-after': '0' });
    const twice = scripted(busy, busy);
    const limited = new MemqHttpClient({
      baseUrl: 'http://memq.test',
      apiKey: 'key',
      fetch: twice.fetch,
      retry: { attempts: 1 },
    });
    expect(await rejection(() => limited.health('r', 'k'))).toMatchObject({ status: 429 });
    expect(twice.sent).toHaveLength(2);

    const long = scripted(apiError(429, 'RATE_LIMITED', { 'retry-after': '30' }));
    const impatient = new MemqHttpClient({
      baseUrl: 'http://memq.test',
      apiKey: 'key',
      fetch: long.fetch,
      retry: { attempts: 5, maxDelayMs: 1_000 },
    });
    expect(await rejection(() => impatient.health('r', 'k'))).toMatchObject({
      status: 429,
      code: 'RATE_LIMITED',
      retryAfterMs: 30_000,
    });
    expect(long.sent).toHaveLength(1);
  });

  it('reports a fetch that rejects as MemqNetworkError with the cause', async () => {
    const cause = new TypeError('fetch failed');
    const client = new MemqHttpClient({
      baseUrl: 'http://memq.test',
      apiKey: 'key',
      fetch: () => Promise.reject(cause),
    });
    const error = await rejection(() => client.job('memory-flush', '12'));
    expect(error).toBeInstanceOf(MemqNetworkError);
    expect((error as MemqNetworkError).cause).toBe(cause);
    expect((error as MemqNetworkError).path).toBe('/v1/jobs/memory-flush/12');
  });

  it('refuses bad options before sending anything', () => {
    const fetch: FetchLike = () => Promise.reject(new Error('not called'));
    expect(() => new MemqHttpClient({ baseUrl: 'memq.test', apiKey: 'k', fetch })).toThrow(
      /baseUrl/,
    );
    expect(() => new MemqHttpClient({ baseUrl: 'ftp://memq.test', apiKey: 'k', fetch })).toThrow(
      /baseUrl/,
    );
    expect(() => new MemqHttpClient({ baseUrl: 'http://memq.test', apiKey: '', fetch })).toThrow(
      /apiKey/,
    );
    expect(
      () =>
        new MemqHttpClient({
          baseUrl: 'http://memq.test',
          apiKey: 'k',
          fetch,
          retry: { attempts: -1 },
        }),
    ).toThrow(/retry\.attempts/);
  });

  it('sends the query where URLSearchParams has no size (Node < 18.16, Safari < 17)', async () => {
    const descriptor = Object.getOwnPropertyDescriptor(URLSearchParams.prototype, 'size');
    expect(descriptor).toBeDefined();
    Reflect.deleteProperty(URLSearchParams.prototype, 'size');
    try {
      expect(new URLSearchParams('a=1').size).toBeUndefined();
      const { fetch, sent } = scripted(OK_APPEND, json(200, { total: 0 }));
      const client = new MemqHttpClient({ baseUrl: 'http://memq.test', apiKey: 'key', fetch });
      await client.append('r', 'k', [{ role: 'user', content: 'hi' }], { wait: true });
      await client.read('r', 'k', { offset: 100, limit: 100 });
      expect(sent.map((s) => s.url)).toEqual([
        'http://memq.test/v1/memories/r/k/messages?wait=true',
        'http://memq.test/v1/memories/r/k/messages?offset=100&limit=100',
      ]);
    } finally {
      Object.defineProperty(URLSearchParams.prototype, 'size', descriptor!);
    }
  });

  it('refuses retries where crypto.getRandomValues is missing, before sending anything', () => {
    const fetch: FetchLike = () => Promise.reject(new Error('not called'));
    vi.stubGlobal('crypto', undefined);
    try {
      expect(
        () =>
          new MemqHttpClient({
            baseUrl: 'http://memq.test',
            apiKey: 'k',
            fetch,
            retry: { attempts: 2 },
          }),
      ).toThrow(/getRandomValues/);
      // Without retries the server assigns ids: no crypto needed.
      expect(
        () => new MemqHttpClient({ baseUrl: 'http://memq.test', apiKey: 'k', fetch }),
      ).not.toThrow();
    } finally {
      vi.unstubAllGlobals();
    }
  });
});

describe('MemqHttpClient retry backoff', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('caps the backoff at maxDelayMs and makes every configured attempt', async () => {
    vi.useFakeTimers();
    const unavailable = apiError(503, 'REDIS_UNAVAILABLE');
    const { fetch, sent } = scripted(...Array.from({ length: 9 }, () => unavailable));
    const client = new MemqHttpClient({
      baseUrl: 'http://memq.test',
      apiKey: 'key',
      fetch,
      retry: { attempts: 8, maxDelayMs: 2_000 },
    });
    const call = rejection(() => client.health('r', 'k'));
    await vi.runAllTimersAsync();
    expect(await call).toMatchObject({ status: 503, code: 'REDIS_UNAVAILABLE' });
    // The first request and 8 retries (waits 250, 500, 1000, then 2000 ms capped).
    expect(sent).toHaveLength(9);
  });
});

describe('MemqHttpClient body failures', () => {
  /** A response whose body sends `first` then errors with `failure`. */
  const failingBody = (status: number, failure: Error) => () =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"total":'));
          controller.error(failure);
        },
      }),
      { status, headers: { 'content-type': 'application/json' } },
    );

  it('reports a body that fails mid-read as MemqNetworkError with the cause', async () => {
    for (const status of [200, 503]) {
      const cause = new TypeError('terminated');
      const { fetch, sent } = scripted(failingBody(status, cause));
      const client = new MemqHttpClient({
        baseUrl: 'http://memq.test',
        apiKey: 'key',
        fetch,
        retry: { attempts: 3 },
      });
      const error = await rejection(() => client.stats('r', 'k'));
      expect(error).toBeInstanceOf(MemqNetworkError);
      expect(error).toMatchObject({
        method: 'GET',
        path: '/v1/memories/r/k/stats',
        aborted: false,
      });
      expect((error as MemqNetworkError).cause).toBe(cause);
      expect(sent).toHaveLength(1); // no answer is not retried
    }
  });

  it('reports an abort while the body is read as MemqNetworkError with aborted true', async () => {
    const controller = new AbortController();
    // Like a real fetch: the answer's headers arrive, its body stalls, aborting errors the stream.
    const fetch: FetchLike = (_url, init) =>
      Promise.resolve(
        new Response(
          new ReadableStream<Uint8Array>({
            start(stream) {
              stream.enqueue(new TextEncoder().encode('{"total":'));
              init.signal?.addEventListener('abort', () => stream.error(init.signal?.reason));
            },
          }),
          { status: 200 },
        ),
      );
    const client = new MemqHttpClient({ baseUrl: 'http://memq.test', apiKey: 'key', fetch });
    const reason = new Error('user left');
    const call = rejection(() => client.read('r', 'k', { signal: controller.signal }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort(reason);
    const error = await call;
    expect(error).toBeInstanceOf(MemqNetworkError);
    expect(error).toMatchObject({ aborted: true, path: '/v1/memories/r/k/messages' });
    expect((error as MemqNetworkError).cause).toBe(reason);
  });

  it('marks an abort during a retry wait as aborted', async () => {
    const controller = new AbortController();
    const { fetch } = scripted(apiError(429, 'RATE_LIMITED', { 'retry-after': '5' }));
    const client = new MemqHttpClient({
      baseUrl: 'http://memq.test',
      apiKey: 'key',
      fetch,
      retry: { attempts: 1 },
    });
    const call = rejection(() => client.health('r', 'k', { signal: controller.signal }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    expect(await call).toMatchObject({ name: 'MemqNetworkError', aborted: true });
  });
});
