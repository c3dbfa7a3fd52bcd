/**
 * Fairness between tenants: dry-run flushes were never deduplicated and `?wait=true`
 * calls hold server resources, so one project could flood the flush queue and hold every
 * connection. Now each project may have a few of each running at once per serve process; the
 * next one is refused with 429 RATE_LIMITED before anything is enqueued. The queues are paused so
 * the first call stays in flight until the test resumes them.
 */
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import type { ErrorBody } from '../../src/http/http-errors.js';
import { KEYS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const auth = (key: string) => ({ Authorization: `Bearer ${key}` });
/** The error of an error answer. */
const errorOf = (res: request.Response) => (res.body as ErrorBody).error;
const M = '/v1/memories/agent-memory';
const hello = { messages: [{ role: 'user', content: 'hello' }] };

describe('concurrent ?wait=true calls and dry-run flushes per project', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let http: TestHttp | undefined;

  beforeEach(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
    http = await startHttp(ns, registry, {
      limits: { keyPrefix: ns.keyPrefix, waitsPerProject: 1, dryRunsPerProject: 1 },
    });
  });
  afterEach(async () => {
    await http?.close();
    http = undefined;
    await ns.cleanup();
  });

  /** Jobs of `queue` not finished (a paused queue's are waiting). */
  const pending = async (queue: 'append' | 'flush') => {
    const counts = await http!.pipeline.workers.queues[queue].getJobCounts(
      'waiting',
      'active',
      'delayed',
      'prioritized',
    );
    return Object.values(counts).reduce((sum, n) => sum + n, 0);
  };
  /** Sends a request now; resolves with its answer. */
  const inFlight = (test: request.Test) =>
    new Promise<request.Response>((resolve, reject) => {
      test.end((error: Error | null, res) => (error ? reject(error) : resolve(res)));
    });

  it('answers 429 to the second concurrent dry-run flush of a project and enqueues nothing for it', async () => {
    const { app, pipeline } = http!;
    await pipeline.workers.queues.flush.pause();
    const dryRun = (key: string, memory: string) =>
      request(app)
        .post(`${M}/${memory}/flush?timeout_ms=60000`)
        .set(auth(key))
        .send({ dry_run: true });

    const first = inFlight(dryRun(KEYS.acme, 'd1'));
    await eventually(async () => (await pending('flush')) === 1, 'the first dry run enqueued');

    const refused = await dryRun(KEYS.acme, 'd2');
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(errorOf(refused)).toMatchObject({
      code: 'RATE_LIMITED',
      details: { limit: 'concurrent_dry_runs', max: 1, retry_after_ms: 1000 },
    });
    expect(errorOf(refused).message).toContain('MEMQ_MAX_CONCURRENT_DRY_RUNS');
    expect(await pending('flush')).toBe(1);
    // Another project has its own slots.
    const other = inFlight(dryRun(KEYS.beta, 'd1'));
    await eventually(async () => (await pending('flush')) === 2, "the other project's dry run");

    await pipeline.workers.queues.flush.resume();
    expect((await first).status).toBe(200);
    expect((await other).status).toBe(200);
    // The slot is free again once the call finished.
    expect((await dryRun(KEYS.acme, 'd2')).status).toBe(200);
  });

  it('answers 429 to the second concurrent ?wait=true append of a project; appends that do not wait still pass', async () => {
    const { app, pipeline } = http!;
    await pipeline.workers.queues.append.pause();
    const append = (key: string, query: string) =>
      request(app).post(`${M}/w/messages${query}`).set(auth(key)).send(hello);

    const first = inFlight(append(KEYS.acme, '?wait=true&timeout_ms=60000'));
    await eventually(async () => (await pending('append')) === 1, 'the first append enqueued');

    const refused = await append(KEYS.acme, '?wait=true');
    expect(refused.status).toBe(429);
    expect(errorOf(refused)).toMatchObject({
      code: 'RATE_LIMITED',
      details: { limit: 'concurrent_waits', max: 1 },
    });
    expect(refused.headers['retry-after']).toBe('1');
    expect(await pending('append')).toBe(1);
    // A clear or delete that waits counts the same; one that does not wait is not capped.
    const clear = await request(app)
      .post(`${M}/w/clear?wait=true`)
      .set(auth(KEYS.acme))
      .send({ confirm: true });
    expect(clear.status).toBe(429);
    expect((await append(KEYS.acme, '')).status).toBe(202);
    expect(await pending('append')).toBe(2);

    await pipeline.workers.queues.append.resume();
    expect((await first).status).toBe(200);
    expect((await append(KEYS.acme, '?wait=true')).status).toBe(200);
    expect(
      await pipeline.metrics.registry.getSingleMetricAsString('memq_rate_limited_total'),
    ).toContain('memq_rate_limited_total{limit="concurrent_waits"} 2');
  });
});
