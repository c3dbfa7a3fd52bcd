import { describe, expect, it } from 'vitest';
import { BackpressureError } from '../../../src/core/errors.js';
import {
  backlogRefusal,
  hasBacklogBounds,
  RETRY_AFTER_DEFAULT_MS,
  type BacklogUsage,
} from '../../../queues/backpressure.js';

const usage = (over: Partial<BacklogUsage> = {}): BacklogUsage => ({
  messages: 0,
  bytes: 0,
  projectMessages: 0,
  projectBytes: 0,
  ...over,
});

describe('backlogRefusal (per-project and byte bounds)', () => {
  it('admits below every bound and when every bound is off', () => {
    const bounds = { projectHighWaterMessages: 3, projectMaxBytes: 100, maxBytes: 1000 };
    expect(
      backlogRefusal(
        'memory-append',
        'acme',
        usage({ projectMessages: 2, projectBytes: 99, bytes: 999 }),
        bounds,
      ),
    ).toBeUndefined();
    const huge = usage({ projectMessages: 1e9, projectBytes: 1e12, bytes: 1e12 });
    expect(backlogRefusal('memory-append', 'acme', huge, {})).toBeUndefined();
    expect(
      backlogRefusal('memory-append', 'acme', huge, {
        projectHighWaterMessages: 0,
        projectMaxBytes: 0,
        maxBytes: 0,
      }),
    ).toBeUndefined();
  });

  it('refuses a project at its own message mark, naming the bound, the project and the variable', () => {
    const error = backlogRefusal('memory-append', 'acme', usage({ projectMessages: 3 }), {
      projectHighWaterMessages: 3,
    });
    expect(error).toBeInstanceOf(BackpressureError);
    expect(error).toMatchObject({
      code: 'BACKPRESSURE',
      retryAfterMs: RETRY_AFTER_DEFAULT_MS,
      details: {
        queue: 'memory-append',
        bound: 'project_messages',
        project: 'acme',
        usage: 3,
        limit: 3,
      },
    });
    expect(error!.message).toBe(
      'project acme has 3 messages of append and write jobs waiting, at or above its high-water mark 3 (MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER); other projects are still admitted; retry after 1000 ms',
    );
  });

  it("checks the project's own bounds before the global one", () => {
    const all = { projectHighWaterMessages: 3, projectMaxBytes: 100, maxBytes: 1000 };
    const bound = (u: BacklogUsage) =>
      backlogRefusal('memory-cleanup', 'acme', u, all)?.details.bound;
    expect(bound(usage({ projectMessages: 3, projectBytes: 100, bytes: 1000 }))).toBe(
      'project_messages',
    );
    expect(bound(usage({ projectMessages: 2, projectBytes: 100, bytes: 1000 }))).toBe(
      'project_bytes',
    );
    expect(bound(usage({ projectMessages: 2, projectBytes: 99, bytes: 1000 }))).toBe('bytes');
    expect(backlogRefusal('memory-cleanup', 'acme', usage({ bytes: 1500 }), all)?.message).toBe(
      '1500 bytes of append and write jobs are waiting, at or above the bound 1000 (MEMQ_BACKPRESSURE_MAX_BYTES); retry after 1000 ms',
    );
  });

  it('needs the ledger only when a bound is on', () => {
    expect(hasBacklogBounds({})).toBe(false);
    expect(hasBacklogBounds({ projectHighWaterMessages: 0, maxBytes: 0, projectMaxBytes: 0 })).toBe(
      false,
    );
    expect(hasBacklogBounds({ maxBytes: 1 })).toBe(true);
    expect(hasBacklogBounds({ projectMaxBytes: 1 })).toBe(true);
    expect(hasBacklogBounds({ projectHighWaterMessages: 1 })).toBe(true);
  });
});
