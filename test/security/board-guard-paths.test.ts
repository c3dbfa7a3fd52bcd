/**
 * The board guard's two checks on their own: the path allowlist (spellings express would route,
 * malformed encoding) and the bull-board hook that sees the matched route pattern.
 */
import { appRoutes } from '@bull-board/api/dist/routes.js';
import { describe, expect, it } from 'vitest';
import { boardAllows, boardRouteHook } from '../../src/http/board.js';

/** Every API route bull-board 9.10.x registers, as `method route`. */
const registered = appRoutes.api.flatMap((r) =>
  (Array.isArray(r.method) ? r.method : [r.method]).flatMap((m) =>
    (Array.isArray(r.route) ? r.route : [r.route]).map((p) => ({ method: m, route: p })),
  ),
);

describe('board path allowlist', () => {
  it('lets reads and the allowed actions through, whatever the case or trailing slashes', () => {
    expect(boardAllows('GET', '/', false)).toBe(true);
    expect(boardAllows('GET', '/static/js/main.js', true)).toBe(true);
    expect(boardAllows('HEAD', '/api/queues', true)).toBe(true);
    expect(boardAllows('PUT', '/API/Queues/memory-flush/PAUSE//', false)).toBe(true);
    expect(boardAllows('PUT', '/api/queues/memory-append/42%3Aa/retry', false)).toBe(true);
    expect(boardAllows('PUT', '/api/queues/memory-append/clean/completed', false)).toBe(true);
  });

  it('refuses every other method, path, and malformed or smuggled spelling', () => {
    expect(boardAllows('POST', '/api/queues/memory-append/add', false)).toBe(false);
    expect(boardAllows('post', '/API/QUEUES/memory-append/ADD/', false)).toBe(false);
    expect(boardAllows('PATCH', '/api/queues/memory-append/1/update-data', false)).toBe(false);
    expect(boardAllows('PUT', '/api/queues/memory-append/1/update-data', false)).toBe(false);
    expect(boardAllows('PUT', '/api/queues/memory-append/1/%75pdate-data', false)).toBe(false);
    expect(boardAllows('DELETE', '/api/queues/memory-append/1', false)).toBe(false);
    expect(boardAllows('OPTIONS', '/api/queues', false)).toBe(false);
    expect(boardAllows('PUT', '/api/queues/memory-append/empty', false)).toBe(false);
    // `retry/:queueStatus` takes only a job state, so it cannot pose as `:jobId/<another action>`.
    expect(
      boardAllows('PUT', '/api/queues/memory-append/retry/remove-unprocessed-children', false),
    ).toBe(false);
    expect(boardAllows('PUT', '/api/queues/memory-append//retry', false)).toBe(false);
    expect(boardAllows('PUT', '/api/queues/memory-append/%E0/retry', false)).toBe(false);
    expect(boardAllows('GET', '/api/queues/%E0', false)).toBe(false);
    expect(boardAllows('GET', '/no/such/page', false)).toBe(false);
  });

  it('a read-only board allows reads only', () => {
    expect(boardAllows('GET', '/api/queues/memory-append/1', true)).toBe(true);
    expect(boardAllows('PUT', '/api/queues/memory-append/1/retry', true)).toBe(false);
    expect(boardAllows('PUT', '/api/queues/pause', true)).toBe(false);
  });
});

describe('board route hook (the route pattern bull-board matched)', () => {
  const decide = (readOnly: boolean) => {
    const hook = boardRouteHook(readOnly);
    return registered
      .filter(({ method, route }) => {
        const result = hook({ method, route });
        return !(result && result.allow === false);
      })
      .map(({ method, route }) => `${method} ${route}`)
      .sort();
  };

  it('lets through only GET routes and the allowed PUT actions', () => {
    expect(decide(false)).toEqual(
      [
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
      ].sort(),
    );
  });

  it('read-only: GET routes only', () => {
    expect(decide(true).every((r) => r.startsWith('get '))).toBe(true);
    expect(decide(true)).toHaveLength(11);
  });

  it('refuses with 403 and says what the board allows', () => {
    const result = boardRouteHook(false)({
      method: 'patch',
      route: '/api/queues/:queueName/:jobId/update-data',
    });
    expect(result).toMatchObject({ allow: false, status: 403 });
    expect(result && result.message).toMatch(/retry, promote, clean/);
  });
});
