/**
 * `connect()` (src/runtime/connect.ts, the `memq` entry) on the suite's Redis or Redis Cluster
 * (`MEMQ_TEST_REDIS=cluster`): in-process workers; a producer-only connect beside a workers
 * connect (as `memq serve` + `memq work`); options refused before any connection opens; `close()`
 * idempotent, leaving no handle (the leak guard of test/setup fails the file otherwise); an
 * unreachable Redis refused promptly; the caller's metrics registry left clean by `close()` and by
 * a failed connect; `forProject` views that cannot close the client.
 */
import { readFile } from 'node:fs/promises';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigError,
  connect,
  createMemoryRegistry,
  loadMemoryResources,
  parseMemoryResource,
  RedisUnavailableError,
  type ConnectRedis,
} from '../../src/index.js';
import { freePort } from '../../src/runtime/embedded-redis.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const RESOURCE = 'customer-support';

/** The `redis` option for the suite's Redis: the cluster shape on a cluster, else the URL. */
const redisOption = (ns: RedisNamespace): ConnectRedis =>
  ns.clusterNodes ? { cluster: ns.clusterNodes } : ns.url;

/** What `fn` rejects with (fails the test when it resolves). */
async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** `promise`, or a rejection naming `what` after `ms` (a hang guard, not a speed check). */
async function settlesWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** Names of the `memq_*` metrics `registry` exposes (scraping it, so collectors run). */
async function memqMetricNames(registry: Registry): Promise<string[]> {
  const text = await registry.metrics();
  return [...new Set(text.match(/^memq_[a-z_]+/gm) ?? [])];
}

describe('connect', () => {
  let ns: RedisNamespace;
  const opened: { close(): Promise<void> }[] = [];

  beforeEach(() => {
    ns = createRedisNamespace();
  });
  afterEach(async () => {
    for (const memq of opened.splice(0)) await memq.close();
    await ns.cleanup();
  });

  const options = (extra: Partial<Parameters<typeof connect>[0]> = {}) => ({
    redis: redisOption(ns),
    memories: 'memories',
    project: 'acme',
    keyPrefix: ns.keyPrefix,
    queuePrefix: ns.queuePrefix,
    ...extra,
  });

  it('with workers: appends through the key template, waits for the job and reads it back', async () => {
    const memq = await connect(options({ workers: true }));
    opened.push(memq);
    expect(memq.project).toBe('acme');

    const receipt = await memq.append(
      {
        resource: RESOURCE,
        keyTemplate: 'support:{{ .conversation_id }}',
        context: { conversation_id: '42' },
      },
      [
        { role: 'user', content: 'my order is late' },
        { role: 'assistant', content: 'let me check' },
      ],
    );
    expect(receipt.ref).toEqual({ project: 'acme', resource: RESOURCE, key: 'support:42' });
    expect(await memq.waitFor(receipt.jobId!)).toEqual({ added: 2, duplicates: 0 });

    const page = await memq.read({ resource: RESOURCE, key: 'support:42' });
    expect(page.messages.map((m) => m.message.content)).toEqual([
      'my order is late',
      'let me check',
    ]);
    expect(page.messages.map((m) => m.message.id)).toEqual(receipt.messageIds);
    const job = await memq.job('memory-append', receipt.jobId!);
    expect(job?.state).toBe('completed');
    // Another project through the same connections sees nothing of acme's.
    const other = memq.forProject('beta');
    expect((await other.read({ resource: RESOURCE, key: 'support:42' })).total).toBe(0);
  });

  it('a producer-only connect enqueues; a connect with workers in the same process runs the jobs', async () => {
    const producer = await connect(options());
    opened.push(producer);
    const receipt = await producer.append({ resource: RESOURCE, key: 'support:7' }, [
      { role: 'user', content: 'hello' },
    ]);
    // No worker yet: the job waits in its queue.
    expect((await producer.job('memory-append', receipt.jobId!))?.state).toBe('waiting');

    const worker = await connect(options({ workers: true, project: 'unused' }));
    opened.push(worker);
    expect(await producer.waitFor(receipt.jobId!, { timeoutMs: 20_000 })).toEqual({
      added: 1,
      duplicates: 0,
    });
    const cleared = await producer.clear(
      { resource: RESOURCE, key: 'support:7' },
      { confirm: true },
    );
    await producer.waitFor(cleared, { timeoutMs: 20_000 });
    expect((await producer.read({ resource: RESOURCE, key: 'support:7' })).total).toBe(0);
  });

  it('refuses invalid options with a ConfigError naming each option, before connecting', async () => {
    // Nothing listens at this URL: a connection attempt would fail with a Redis error instead.
    const nowhere = `redis://127.0.0.1:${await freePort()}`;
    const refused = await rejection(() =>
      connect({
        ...options(),
        redis: nowhere,
        project: 'no spaces allowed',
        keyPrefix: '{braces}',
        backpressure: { highWaterMessages: 10, lowWaterMessages: 10 },
        workers: 'yes' as unknown as boolean,
      }),
    );
    expect(refused).toBeInstanceOf(ConfigError);
    const config = refused as ConfigError;
    expect(config.details.options).toEqual([
      'project',
      'keyPrefix',
      'backpressure.lowWaterMessages',
      'workers',
    ]);
    expect(config.message).toContain('connect: keyPrefix: expected 1-64 characters without braces');

    const secret = 'http://user:s3cret-pass@example.com';
    const badUrl = (await rejection(() => connect({ ...options(), redis: secret }))) as ConfigError;
    expect(badUrl).toBeInstanceOf(ConfigError);
    expect(badUrl.message).toMatch(/^connect: redis: expected a redis:\/\/ or rediss:\/\/ URL/);
    expect(badUrl.message).not.toContain('s3cret');

    const unknownOption = await rejection(() =>
      connect({ ...options(), redisUrl: ns.url } as unknown as Parameters<typeof connect>[0]),
    );
    expect((unknownOption as ConfigError).message).toContain('redisUrl');

    const missingDir = await rejection(() => connect({ ...options(), memories: 'no-such-dir' }));
    expect(missingDir).toBeInstanceOf(ConfigError);
  });

  it('close() is idempotent, stops the workers and closes the connections', async () => {
    const memq = await connect(options({ workers: true }));
    const first = memq.close();
    expect(memq.close()).toBe(first);
    await first;
    await memq.close();
    // Everything is stopped: a call fails at once instead of waiting for a connection.
    const after = await rejection(() =>
      memq.append({ resource: RESOURCE, key: 'support:9' }, [{ role: 'user', content: 'late' }]),
    );
    expect(after).toBeInstanceOf(Error);
  });

  it('an unreachable Redis: RedisUnavailableError naming host and port, nothing left open or registered', async () => {
    const printed = vi.spyOn(console, 'error');
    const metricsRegistry = new Registry();
    try {
      const port = await freePort(); // nothing listens there
      const refused = await rejection(() =>
        settlesWithin(
          connect({ ...options(), redis: `redis://127.0.0.1:${port}`, metricsRegistry }),
          20_000,
          'connect to a dead port',
        ),
      );
      expect(refused).toBeInstanceOf(RedisUnavailableError);
      expect((refused as RedisUnavailableError).code).toBe('REDIS_UNAVAILABLE');
      expect((refused as Error).message).toBe(
        `Redis at 127.0.0.1:${port} did not answer PING: connect ECONNREFUSED 127.0.0.1:${port}`,
      );
      // ioredis printed nothing: every connection memq opened has an error listener.
      expect(printed.mock.calls.filter((call) => String(call[0]).includes('[ioredis]'))).toEqual(
        [],
      );
      // The metrics registered before the failure are gone again: a retry can use the registry.
      expect(await memqMetricNames(metricsRegistry)).toEqual([]);
    } finally {
      printed.mockRestore();
    }
    // The leak guard (test/setup/leak-guard.ts) fails the file if a socket is left open.
  });

  it("removes its metrics from the caller's registry on close: scrape, then connect again", async () => {
    const metricsRegistry = new Registry();
    const first = await connect(options({ metricsRegistry }));
    opened.push(first);
    expect(await memqMetricNames(metricsRegistry)).toContain('memq_queue_jobs');
    // One open connect per registry: a second one is refused naming the option, opening nothing.
    const twice = await rejection(() => connect(options({ metricsRegistry })));
    expect(twice).toBeInstanceOf(ConfigError);
    expect((twice as ConfigError).details.options).toEqual(['metricsRegistry']);
    await first.close();

    // The queue-depth collector pointed at the closed queues: a scrape must not reach them.
    expect(await memqMetricNames(metricsRegistry)).toEqual([]);

    const second = await connect(options({ metricsRegistry }));
    opened.push(second);
    await second.append({ resource: RESOURCE, key: 'support:m' }, [
      { role: 'user', content: 'hi' },
    ]);
    const text = await metricsRegistry.metrics();
    expect(text).toMatch(/^memq_queue_jobs\{queue="memory-append",state="waiting"\} 1$/m);
    await second.close();
    expect(await memqMetricNames(metricsRegistry)).toEqual([]);
  });

  it("forProject: the client's own project is the client; a view's close() releases nothing", async () => {
    const memq = await connect(options({ workers: true }));
    opened.push(memq);
    expect(memq.forProject('acme')).toBe(memq);
    const beta = memq.forProject('beta');
    expect(beta.project).toBe('beta');
    expect(memq.forProject('beta')).toBe(beta);
    expect(beta.forProject('acme')).toBe(memq);

    await beta.close();
    // Everything still runs: the view's close() did nothing.
    const receipt = await beta.append({ resource: RESOURCE, key: 'support:v' }, [
      { role: 'user', content: 'still here' },
    ]);
    expect(await beta.waitFor(receipt.jobId!)).toEqual({ added: 1, duplicates: 0 });
    const mine = await memq.append({ resource: RESOURCE, key: 'support:v' }, [
      { role: 'user', content: 'acme too' },
    ]);
    expect(await memq.waitFor(mine.jobId!)).toEqual({ added: 1, duplicates: 0 });
    expect((await memq.read({ resource: RESOURCE, key: 'support:v' })).total).toBe(1);

    // Only the root close() stops everything (the leak guard checks nothing is left open).
    await memq.close();
    expect(
      await rejection(() =>
        beta.append({ resource: RESOURCE, key: 'support:v' }, [{ role: 'user', content: 'late' }]),
      ),
    ).toBeInstanceOf(Error);
  });

  it('takes resources parsed with the exported parseMemoryResource and createMemoryRegistry', async () => {
    const file = 'memories/customer-support.yaml';
    const parsed = parseMemoryResource(await readFile(file, 'utf8'), file);
    expect(parsed.problems).toEqual([]);
    const fromArray = await connect(options({ memories: [parsed.resource!] }));
    opened.push(fromArray);
    expect((await fromArray.read({ resource: RESOURCE, key: 'support:p' })).total).toBe(0);

    const registry = createMemoryRegistry([parsed.resource!]);
    expect(registry.list().map((r) => r.id)).toEqual([RESOURCE]);
    expect((await loadMemoryResources('memories')).has(RESOURCE)).toBe(true);
    const fromRegistry = await connect(options({ memories: registry, project: 'beta' }));
    opened.push(fromRegistry);
    expect(fromRegistry.project).toBe('beta');
  });
});
