/**
 * `MemqHttpClient` (src/client/http.ts) against a live memq server started as `memq start` does
 * (`startRuntime` with workers and HTTP) on the suite's Redis or cluster: every `/v1` operation
 * once, failures as typed errors, and a 429 retried after its `Retry-After` through a custom
 * `fetch`, with the same message ids on every attempt. A plain `node:http` server that breaks off
 * or stalls an answer's body checks the runtime's own `fetch` failures come out as
 * `MemqNetworkError`.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnvConfig } from '../../src/config/env.js';
import { startRuntime, type Runtime } from '../../src/runtime/runtime.js';
import {
  MemqHttpClient,
  MemqHttpError,
  MemqNetworkError,
  type FetchLike,
} from '../../src/client/http.js';
import { BOARD, KEYS, TEST_GRANTS } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually, quietLog } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';
import { freePort } from '../../src/runtime/embedded-redis.js';

const RESOURCE = 'customer-support';

/** Starts memq with workers and HTTP on `ns`, with extra environment variables `vars`. */
async function startServer(
  ns: RedisNamespace,
  vars: Record<string, string> = {},
): Promise<{ runtime: Runtime; baseUrl: string }> {
  const runtime = await startRuntime({
    env: loadEnvConfig({
      MEMQ_KEY_PREFIX: ns.keyPrefix,
      MEMQ_QUEUE_PREFIX: ns.queuePrefix,
      MEMQ_SHUTDOWN_GRACE_MS: '5000',
      ...vars,
    }),
    redisUrl: ns.url,
    ...(ns.clusterNodes ? { clusterNodes: ns.clusterNodes } : {}),
    registry: await shippedMemories(),
    log: quietLog,
    workers: true,
    http: { port: 0, apiKeys: TEST_GRANTS, board: { ...BOARD, readOnly: true } },
  });
  return { runtime, baseUrl: `http://127.0.0.1:${runtime.http!.port}` };
}

/** What `fn` rejects with (fails the test when it resolves). */
async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('MemqHttpClient', () => {
  let ns: RedisNamespace;
  let server: { runtime: Runtime; baseUrl: string };
  let client: MemqHttpClient;

  beforeAll(async () => {
    ns = createRedisNamespace();
    server = await startServer(ns);
    client = new MemqHttpClient({ baseUrl: server.baseUrl, apiKey: KEYS.acme });
  });
  afterAll(async () => {
    await server?.runtime.close();
    await ns?.cleanup();
  });

  it('calls every /v1 operation and returns the API answers', async () => {
    // A key with characters that must be encoded in a path (':' and '@').
    const key = 'c:1@shop';
    const appended = await client.append(RESOURCE, key, [{ role: 'user', content: 'hi, late' }]);
    expect(appended.job?.queue).toBe('memory-append');
    expect(appended.message_ids).toHaveLength(1);
    expect(appended).toMatchObject({ dropped: 0, redactions: 0 });

    const job = await client.job('memory-append', appended.job!.id);
    expect(job).toMatchObject({ queue: 'memory-append', id: appended.job!.id, name: 'append' });

    const waited = await client.append(
      RESOURCE,
      key,
      [{ role: 'assistant', content: 'sorry, let me check' }],
      { wait: true, timeoutMs: 20_000 },
    );
    expect(waited.result).toEqual({ added: 1, duplicates: 0 });

    await eventually(
      async () => (await client.read(RESOURCE, key)).total === 2,
      'both appends committed',
    );
    const window = await client.read(RESOURCE, key, { limit: 1 });
    expect(window).toMatchObject({ resource: RESOURCE, key, total: 2, has_more: true });
    expect(window.messages.map((m) => m.message.content)).toEqual(['hi, late']);
    const chat = await client.read(RESOURCE, key, { offset: 1, format: 'messages' });
    expect(chat.messages).toEqual([{ role: 'assistant', content: 'sorry, let me check' }]);

    const written = await client.write(
      RESOURCE,
      key,
      [
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'two' },
      ],
      { wait: true },
    );
    expect(written.job.queue).toBe('memory-cleanup');
    const plan = await client.flush(RESOURCE, key, { dryRun: true });
    expect(plan.result).toMatchObject({ applied: false, plan: { before: { messages: 2 } } });

    await eventually(
      async () => (await client.stats(RESOURCE, key)).uncounted_messages === 0,
      'exact counts',
    );
    const stats = await client.stats(RESOURCE, key, { deep: true });
    expect(stats).toMatchObject({ exists: true, message_count: 2, consistent: true });
    expect(stats.roles).toEqual({ user: 1, assistant: 1 });
    expect(await client.health(RESOURCE, key)).toMatchObject({ healthy: true, message_count: 2 });

    const cleared = await client.clear(RESOURCE, key, { wait: true });
    expect(cleared.job.queue).toBe('memory-cleanup');
    expect((await client.read(RESOURCE, key)).total).toBe(0);
    const deleted = await client.delete(RESOURCE, key, { wait: true });
    expect(deleted.job.queue).toBe('memory-cleanup');
    expect((await client.stats(RESOURCE, key)).exists).toBe(false);
  });

  it('throws MemqHttpError with the API code and details, and MemqNetworkError without an answer', async () => {
    const unknown = await rejection(() => client.read('no-such-memory', 'k'));
    expect(unknown).toBeInstanceOf(MemqHttpError);
    expect(unknown).toMatchObject({ status: 404, code: 'MEMORY_NOT_FOUND' });
    expect((unknown as MemqHttpError).details).toMatchObject({ id: 'no-such-memory' });

    const badLimit = await rejection(() => client.read(RESOURCE, 'k', { limit: 0 }));
    expect(badLimit).toMatchObject({ status: 400, code: 'PAYLOAD_INVALID' });
    expect((badLimit as MemqHttpError).message).toContain('limit');

    const noJob = await rejection(() => client.job('memory-append', '123456'));
    expect(noJob).toMatchObject({ status: 404, code: 'NOT_FOUND' });

    const reader = new MemqHttpClient({ baseUrl: server.baseUrl, apiKey: KEYS.acmeRead });
    const readOnly = await rejection(() =>
      reader.append(RESOURCE, 'k', [{ role: 'user', content: 'x' }]),
    );
    expect(readOnly).toMatchObject({ status: 403, code: 'FORBIDDEN' });

    const wrongKey = new MemqHttpClient({
      baseUrl: server.baseUrl,
      apiKey: 'not-a-known-key-0123456',
    });
    expect(await rejection(() => wrongKey.health(RESOURCE, 'k'))).toMatchObject({
      status: 401,
      code: 'UNAUTHENTICATED',
    });

    const nobody = new MemqHttpClient({
      baseUrl: `http://127.0.0.1:${await freePort()}`,
      apiKey: KEYS.acme,
    });
    expect(await rejection(() => nobody.health(RESOURCE, 'k'))).toBeInstanceOf(MemqNetworkError);
  });
});

describe('MemqHttpClient retries', () => {
  let ns: RedisNamespace;
  let server: { runtime: Runtime; baseUrl: string };

  beforeAll(async () => {
    ns = createRedisNamespace();
    // One request per second per API key, no burst: the second request in a second is a 429.
    server = await startServer(ns, {
      MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND: '1',
      MEMQ_RATE_LIMIT_REQUESTS_BURST: '0',
    });
  });
  afterAll(async () => {
    await server?.runtime.close();
    await ns?.cleanup();
  });

  it('without retry: a 429 is a MemqHttpError with retryAfterMs from Retry-After', async () => {
    const client = new MemqHttpClient({ baseUrl: server.baseUrl, apiKey: KEYS.beta });
    const errors: unknown[] = [];
    for (let i = 0; i < 3 && errors.length === 0; i += 1) {
      await client.health(RESOURCE, 'k').catch((error: unknown) => errors.push(error));
    }
    const [limited] = errors;
    expect(limited).toBeInstanceOf(MemqHttpError);
    expect(limited).toMatchObject({ status: 429, code: 'RATE_LIMITED' });
    expect((limited as MemqHttpError).retryAfterMs).toBeGreaterThanOrEqual(1000);
  });

  it('with retry and a custom fetch: waits out the 429 and sends the same message ids again', async () => {
    const sent: { status: number; body: string | undefined }[] = [];
    const recording: FetchLike = async (input, init) => {
      const response = await fetch(input, init);
      sent.push({ status: response.status, body: init.body as string | undefined });
      return response;
    };
    const client = new MemqHttpClient({
      baseUrl: server.baseUrl,
      apiKey: KEYS.acme,
      fetch: recording,
      retry: { attempts: 3, maxDelayMs: 5_000 },
    });
    await client.health(RESOURCE, 'r-1'); // uses this second's request
    const appended = await client.append(RESOURCE, 'r-1', [
      { role: 'user', content: 'first' },
      { role: 'user', content: 'second' },
    ]);

    const appends = sent.filter((s) => s.body !== undefined);
    expect(appends.map((s) => s.status)).toContain(429);
    expect(appends.at(-1)?.status).toBe(202);
    // Every attempt carried the ids the client assigned, and the answer names them.
    const ids = appends.map((s) =>
      (JSON.parse(s.body!) as { messages: { id: string }[] }).messages.map((m) => m.id),
    );
    for (const attempt of ids) expect(attempt).toEqual(appended.message_ids);
    expect(appended.message_ids).toHaveLength(2);
    expect(appended.message_ids[0]! < appended.message_ids[1]!).toBe(true);
  });
});

describe('MemqHttpClient with the runtime fetch and a body that breaks off', () => {
  let server: Server;
  let baseUrl: string;

  beforeAll(async () => {
    // Sends the status and part of a JSON body, then drops the connection (`/drop`) or stalls.
    server = createServer((request, response) => {
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      response.write('{"messages":[');
      if (request.url?.includes('/drop/')) setTimeout(() => response.destroy(), 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('reports a dropped body as MemqNetworkError, not aborted', async () => {
    const client = new MemqHttpClient({ baseUrl, apiKey: KEYS.acme });
    const error = await rejection(() => client.read(RESOURCE, 'drop'));
    expect(error).toBeInstanceOf(MemqNetworkError);
    expect(error).toMatchObject({ aborted: false, path: `/v1/memories/${RESOURCE}/drop/messages` });
    expect((error as MemqNetworkError).cause).toBeInstanceOf(Error);
  });

  it('reports an abort while the body is read as MemqNetworkError with aborted true', async () => {
    const client = new MemqHttpClient({ baseUrl, apiKey: KEYS.acme });
    const controller = new AbortController();
    const call = rejection(() => client.read(RESOURCE, 'stall', { signal: controller.signal }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    const error = await call;
    expect(error).toBeInstanceOf(MemqNetworkError);
    expect(error).toMatchObject({ aborted: true });
    expect((error as MemqNetworkError).cause).toMatchObject({ name: 'AbortError' });
  });
});
