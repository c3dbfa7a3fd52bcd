/**
 * Bull Board's write guard: every route bull-board 9.10.x registers is
 * classified here (read, memq-allowed job action, refused), and each refused route is tried with
 * every writing method and with its literal segments in lower, upper and mixed case, a trailing
 * slash and percent-encoding. What Redis holds must not change, and the read routes must still work.
 */
import { appRoutes } from '@bull-board/api/dist/routes.js';
import type { JobType, Queue } from 'bullmq';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOBS, QUEUES } from '../../queues/names.js';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { BOARD, appOver, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const BASE = '/admin/queues';

/** Bull Board's GET routes (pages and API): they read, never write. */
const READ_ROUTES = [
  'get /',
  'get /metrics-history',
  'get /job-schedulers',
  'get /queue/:queueName',
  'get /queue/:queueName/:jobId',
  'get /api/redis/stats',
  'get /api/queues',
  'get /api/job-schedulers',
  'get /api/queues/:queueName/metrics',
  'get /api/queues/:queueName/default-job-options',
  'get /api/queues/:queueName/workers',
  'get /api/queues/:queueName/rate-limit',
  'get /api/queues/:queueName/job-data-schema',
  'get /api/queues/:queueName/:jobId/logs',
  'get /api/queues/:queueName/:jobId/flow',
  'get /api/queues/:queueName/:jobId',
];

/** The job actions memq allows on a writable board (none on a read-only one). */
const ACTION_ROUTES = [
  'put /api/queues/pause',
  'put /api/queues/resume',
  'put /api/queues/:queueName/retry/:queueStatus',
  'put /api/queues/:queueName/promote',
  'put /api/queues/:queueName/clean/:queueStatus',
  'put /api/queues/:queueName/pause',
  'put /api/queues/:queueName/resume',
  'put /api/queues/:queueName/:jobId/retry',
  'put /api/queues/:queueName/:jobId/clean',
  'put /api/queues/:queueName/:jobId/promote',
];

/**
 * Everything else bull-board registers: adding or duplicating a job, editing its data, delay or
 * priority, running or editing a scheduler (which creates jobs from a template), and the queue
 * settings and bulk deletions memq does not offer.
 */
const REFUSED_ROUTES = [
  'post /api/queues/:queueName/add',
  'patch /api/queues/:queueName/:jobId/update-data',
  'patch /api/queues/:queueName/:jobId/delay',
  'patch /api/queues/:queueName/:jobId/priority',
  'put /api/queues/:queueName/:jobId/remove-unprocessed-children',
  'put /api/queues/:queueName/concurrency',
  'put /api/queues/:queueName/rate-limit',
  'put /api/queues/:queueName/rate-limit/release',
  'put /api/queues/:queueName/job-schedulers/:schedulerId/remove',
  'patch /api/queues/:queueName/job-schedulers/:schedulerId',
  'put /api/queues/:queueName/job-schedulers/:schedulerId/run',
  'put /api/queues/:queueName/empty',
  'put /api/queues/:queueName/obliterate',
];

/** Methods a write could come with. */
const WRITE_METHODS = ['post', 'put', 'patch', 'delete'] as const;

const SCHEDULER_ID = 'board-guard-scheduler';
const rawMessage = (content: string) => ({
  id: '01JC0000000000000000000009',
  role: 'user',
  content,
  created_at: new Date().toISOString(),
});

/** A body each refused route would act on (the add body injects into project `beta`). */
const BODIES: Record<string, object> = {
  add: {
    name: JOBS.append,
    data: {
      ref: { project: 'beta', resource: 'customer-support', key: 'injected' },
      messages: [rawMessage('bob@example.org')],
    },
  },
  'update-data': { jobData: { raw: 'bob@example.org' } },
  delay: { runAt: Date.now() + 60_000 },
  priority: { priority: 7 },
  concurrency: { concurrency: 1 },
  'rate-limit': { max: 1, duration: 60_000 },
  obliterate: { force: true },
  [SCHEDULER_ID]: { every: 1_000 },
};

/** `route` with its parameters filled in; literal segments passed through `literal`. */
function fill(
  route: string,
  params: Record<string, string>,
  literal: (segment: string, index: number) => string = (s) => s,
): string {
  return route
    .split('/')
    .map((segment, i) => {
      if (!segment.startsWith(':')) return literal(segment, i);
      const value = params[segment.slice(1)];
      if (value === undefined) throw new Error(`no value for ${segment} in ${route}`);
      return encodeURIComponent(value);
    })
    .join('/');
}

const mixed = (s: string) =>
  [...s].map((c, i) => (i % 2 === 0 ? c.toUpperCase() : c.toLowerCase())).join('');

/**
 * The spellings of one route a guard must see through: as registered, upper case, mixed case,
 * trailing slash(es), the last literal segment percent-encoded, and the board's own prefix in
 * upper case.
 */
function spellings(route: string, params: Record<string, string>): string[] {
  const segments = route.split('/');
  let lastLiteral = -1;
  segments.forEach((s, i) => {
    if (s !== '' && !s.startsWith(':')) lastLiteral = i;
  });
  const encodeFirst = (s: string, i: number) =>
    i === lastLiteral ? `%${s.charCodeAt(0).toString(16).toUpperCase()}${s.slice(1)}` : s;
  const plain = fill(route, params);
  return [
    `${BASE}${plain}`,
    `${BASE}${fill(route, params, (s) => s.toUpperCase())}`,
    `${BASE}${fill(route, params, mixed)}`,
    `${BASE}${plain}/`,
    `${BASE}${plain}//`,
    `${BASE}${fill(route, params, encodeFirst)}`,
    `${BASE.toUpperCase()}${fill(route, params, (s) => s.toUpperCase())}`,
  ];
}

/** Every job id of `queue` by state, its pause flag, schedulers, concurrency and rate limit. */
async function queueState(queue: Queue): Promise<unknown> {
  const states: JobType[] = [
    'waiting',
    'delayed',
    'active',
    'completed',
    'failed',
    'prioritized',
    'waiting-children',
  ];
  const ids: Record<string, string[]> = {};
  for (const state of states) {
    ids[state] = (await queue.getJobs([state])).map((j) => j.id ?? '').sort();
  }
  return {
    ids,
    paused: await queue.isPaused(),
    schedulers: (await queue.getJobSchedulers()).map((s) => ({ ...s, next: undefined })),
    concurrency: await queue.getGlobalConcurrency(),
    rateLimit: await queue.getGlobalRateLimit(),
  };
}

describe('Bull Board write guard', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let http: TestHttp;
  let params: Record<string, string>;
  let jobHashKey: string;
  let delayedId: string;

  /** Everything the refused routes could change: every queue's jobs, and the target job's hash. */
  const snapshot = async () => ({
    queues: await Promise.all(
      Object.values(QUEUES).map((name) => queueState(http.pipeline.workers.queues.byName(name))),
    ),
    job: await ns.redis.hgetall(jobHashKey),
    delayedJob: await ns.redis.hgetall(`${ns.queuePrefix}:memory-append:${delayedId}`),
  });

  beforeAll(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
    http = await startHttp(ns, registry);
    const append = http.pipeline.workers.queues.append;
    // Paused: the jobs stay where the test put them.
    await append.pause();
    const job = await append.add(JOBS.append, {
      ref: { project: 'acme', resource: 'customer-support', key: 'board-guard' },
      messages: [rawMessage('hello')],
    });
    const delayed = await append.add(
      JOBS.append,
      {
        ref: { project: 'acme', resource: 'customer-support', key: 'board-guard-later' },
        messages: [rawMessage('later')],
      },
      { delay: 3_600_000 },
    );
    await append.upsertJobScheduler(
      SCHEDULER_ID,
      { pattern: '0 0 1 1 *' },
      { name: 'board-guard-noop', data: { ref: { project: 'acme' } } },
    );
    jobHashKey = `${ns.queuePrefix}:memory-append:${job.id}`;
    delayedId = delayed.id!;
    params = {
      queueName: 'memory-append',
      jobId: job.id!,
      queueStatus: 'waiting',
      schedulerId: SCHEDULER_ID,
    };
  });
  afterAll(async () => {
    await http?.close();
    await ns?.cleanup();
  });

  it('classifies every route bull-board registers (a new route must be classified here first)', () => {
    const entry = appRoutes.entryPoint;
    const registered = [
      ...(Array.isArray(entry.route) ? entry.route : [entry.route]).map(
        (r) => `${entry.method} ${r}`,
      ),
      ...appRoutes.api.flatMap((r) =>
        (Array.isArray(r.method) ? r.method : [r.method]).flatMap((m) =>
          (Array.isArray(r.route) ? r.route : [r.route]).map((p) => `${m} ${p}`),
        ),
      ),
    ].sort();
    expect(registered).toEqual([...READ_ROUTES, ...ACTION_ROUTES, ...REFUSED_ROUTES].sort());
  });

  it('refuses every refused route with every writing method and spelling; Redis is unchanged', async () => {
    const before = await snapshot();
    const passed: string[] = [];
    for (const route of REFUSED_ROUTES) {
      const path = route.slice(route.indexOf(' ') + 1);
      const routeParams = path.endsWith('/delay') ? { ...params, jobId: delayedId } : params;
      const last = fill(path, routeParams).split('/').pop()!;
      const body = BODIES[last] ?? {};
      for (const url of spellings(path, routeParams)) {
        for (const method of WRITE_METHODS) {
          const agent = request(http.app);
          const res = await agent[method](url).auth(BOARD.user, BOARD.password).send(body);
          if (res.status !== 403 && res.status !== 404)
            passed.push(`${method} ${url}: ${res.status}`);
        }
      }
    }
    expect(passed).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });

  it('PATCH update-data and POST ADD (the reported bypasses) answer 403 with memq error body', async () => {
    const before = await snapshot();
    const update = await request(http.app)
      .patch(`${BASE}/api/queues/memory-append/${params.jobId}/update-data`)
      .auth(BOARD.user, BOARD.password)
      .send(BODIES['update-data']);
    expect(update.status).toBe(403);
    expect(update.body).toMatchObject({ error: { code: 'FORBIDDEN' } });
    const add = await request(http.app)
      .post(`${BASE}/api/queues/memory-append/ADD`)
      .auth(BOARD.user, BOARD.password)
      .send(BODIES.add);
    expect(add.status).toBe(403);
    expect(add.body).toMatchObject({ error: { code: 'FORBIDDEN' } });
    const after = await snapshot();
    expect(after).toEqual(before);
    expect(JSON.stringify(after)).not.toContain('bob@example.org');
  });

  it('still answers every read route (200)', async () => {
    const failed: string[] = [];
    for (const route of READ_ROUTES) {
      const path = route.slice(route.indexOf(' ') + 1);
      const url = `${BASE}${fill(path, params)}`;
      const res = await request(http.app).get(url).auth(BOARD.user, BOARD.password);
      if (res.status !== 200) failed.push(`GET ${url}: ${res.status}`);
    }
    expect(failed).toEqual([]);
    const job = await request(http.app)
      .get(`${BASE}/api/queues/memory-append/${params.jobId}`)
      .auth(BOARD.user, BOARD.password);
    expect(job.body).toMatchObject({ job: { id: params.jobId } });
  });

  it('a read-only board refuses the job actions too; Redis is unchanged', async () => {
    const readOnly = appOver(http, ns, registry, ns.connect({ producer: true }));
    try {
      const before = await snapshot();
      const passed: string[] = [];
      for (const route of ACTION_ROUTES) {
        const path = route.slice(route.indexOf(' ') + 1);
        for (const url of spellings(path, {
          ...params,
          jobId: delayedId,
          queueStatus: 'delayed',
        })) {
          const res = await request(readOnly.app).put(url).auth(BOARD.user, BOARD.password);
          if (![403, 404, 405].includes(res.status)) passed.push(`PUT ${url}: ${res.status}`);
        }
      }
      expect(passed).toEqual([]);
      expect(await snapshot()).toEqual(before);
      const page = await request(readOnly.app)
        .get(`${BASE}/api/queues?activeQueue=memory-append&status=waiting`)
        .auth(BOARD.user, BOARD.password);
      expect(page.status).toBe(200);
    } finally {
      await readOnly.close();
    }
  });

  it('a writable board still runs the allowed job actions, in any case', async () => {
    const flush = http.pipeline.workers.queues.flush;
    const asBoard = (url: string) =>
      request(http.app).put(`${BASE}${url}`).auth(BOARD.user, BOARD.password);
    expect((await asBoard('/api/queues/memory-flush/Pause')).status).toBe(200);
    expect(await flush.isPaused()).toBe(true);
    expect((await asBoard('/api/queues/memory-flush/resume/')).status).toBe(200);
    expect(await flush.isPaused()).toBe(false);
    expect((await asBoard(`/api/queues/memory-append/${delayedId}/promote`)).status).toBe(204);
    expect(await http.pipeline.workers.queues.append.getJobState(delayedId)).toBe('waiting');
    expect((await asBoard(`/api/queues/memory-append/${delayedId}/clean`)).status).toBe(204);
    expect(await http.pipeline.workers.queues.append.getJob(delayedId)).toBeUndefined();
    expect((await asBoard('/api/queues/memory-append/retry/failed')).status).toBe(200);
    // Retrying completed jobs would re-run completed clears, deletes and writes.
    expect((await asBoard('/api/queues/memory-cleanup/retry/completed')).status).toBe(403);
    expect((await asBoard('/api/queues/memory-append/clean/completed')).status).toBe(200);
    expect((await asBoard('/api/queues/memory-append/promote')).status).toBe(200);
  });
});
