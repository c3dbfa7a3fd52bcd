import { describe, expect, it } from 'vitest';
import { loadEnvConfig } from '../../../src/config/env.js';
import { RateLimitedError, toErrorResponse } from '../../../src/http/http-errors.js';
import {
  CONCURRENCY_RETRY_AFTER_MS,
  checkRateLimitSpec,
  createConcurrencyCaps,
  keyIdentity,
  retryAfterMs,
} from '../../../src/http/rate-limit.js';
import { tenantLimitSettings } from '../../../src/runtime/runtime.js';

describe('retryAfterMs', () => {
  it("is the main window's reset without a burst window", () => {
    expect(retryAfterMs(1, 10, { msBeforeNext: 420 })).toBe(420);
  });

  it('is whichever window resets first when the main window alone could admit the count', () => {
    expect(retryAfterMs(3, 10, { msBeforeNext: 800 }, { msBeforeNext: 9000 })).toBe(800);
    expect(retryAfterMs(3, 10, { msBeforeNext: 800 }, { msBeforeNext: 300 })).toBe(300);
  });

  it("is the burst window's reset when the count is more than the main window ever admits", () => {
    expect(retryAfterMs(11, 10, { msBeforeNext: 800 }, { msBeforeNext: 9000 })).toBe(9000);
  });

  it('is a whole number of ms, at least 1', () => {
    expect(retryAfterMs(1, 10, { msBeforeNext: 0 })).toBe(1);
    expect(retryAfterMs(1, 10, { msBeforeNext: 12.2 })).toBe(13);
  });
});

describe('keyIdentity', () => {
  it('names the project and a digest, never the key, the same way every time', () => {
    const key = 'a-secret-api-key-0123456789';
    const grant = { project: 'acme', readOnly: false };
    const id = keyIdentity(key, grant);
    expect(id).toMatch(/^acme:[0-9a-f]{16}$/);
    expect(id).not.toContain(key);
    expect(keyIdentity(key, grant)).toBe(id);
    expect(keyIdentity(`${key}x`, grant)).not.toBe(id);
  });
});

describe('checkRateLimitSpec', () => {
  it('takes whole numbers: points >= 1, windows >= 1 s, burst >= 0', () => {
    expect(() => checkRateLimitSpec('requests', { points: 1, windowSeconds: 1 })).not.toThrow();
    expect(() =>
      checkRateLimitSpec('requests', {
        points: 5,
        windowSeconds: 60,
        burstPoints: 0,
        burstWindowSeconds: 10,
      }),
    ).not.toThrow();
    expect(() => checkRateLimitSpec('requests', { points: 0, windowSeconds: 1 })).toThrow(
      'rate limit requests: points: expected an integer >= 1, got 0',
    );
    expect(() => checkRateLimitSpec('messages', { points: 5, windowSeconds: 0.5 })).toThrow(
      'rate limit messages: windowSeconds: expected an integer >= 1, got 0.5',
    );
    expect(() =>
      checkRateLimitSpec('messages', { points: 5, windowSeconds: 1, burstPoints: -1 }),
    ).toThrow('burstPoints: expected an integer >= 0, got -1');
  });
});

describe('createConcurrencyCaps', () => {
  it('refuses the (N+1)th slot of a project and kind, with a 429 and Retry-After', () => {
    const caps = createConcurrencyCaps({ waits: 2, dryRuns: 1 });
    caps.acquire('acme', 'wait');
    caps.acquire('acme', 'wait');
    let refused: unknown;
    try {
      caps.acquire('acme', 'wait');
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(RateLimitedError);
    expect(refused).toMatchObject({
      code: 'RATE_LIMITED',
      retryAfterMs: CONCURRENCY_RETRY_AFTER_MS,
      details: { limit: 'concurrent_waits', max: 2 },
    });
    expect((refused as Error).message).toBe(
      'project acme already has 2 ?wait=true calls running on this server, the most allowed (MEMQ_MAX_CONCURRENT_WAITS); retry once one has finished, or call without waiting',
    );
    expect(toErrorResponse(refused)).toMatchObject({
      status: 429,
      retryAfterSeconds: 1,
      body: {
        error: {
          code: 'RATE_LIMITED',
          details: { limit: 'concurrent_waits', max: 2, retry_after_ms: 1000 },
        },
      },
    });
    expect(caps.held('acme', 'wait')).toBe(2);
  });

  it('keeps projects and kinds apart', () => {
    const caps = createConcurrencyCaps({ waits: 1, dryRuns: 1 });
    caps.acquire('acme', 'wait');
    caps.acquire('acme', 'dry_run');
    caps.acquire('beta', 'wait');
    expect(() => caps.acquire('acme', 'dry_run')).toThrow(
      /already has 1 dry-run flushes running .*MEMQ_MAX_CONCURRENT_DRY_RUNS/,
    );
    expect(caps.held('beta', 'dry_run')).toBe(0);
  });

  it('frees a slot on release, once however often release is called', () => {
    const caps = createConcurrencyCaps({ waits: 1 });
    const release = caps.acquire('acme', 'wait');
    release();
    release();
    expect(caps.held('acme', 'wait')).toBe(0);
    const again = caps.acquire('acme', 'wait');
    expect(() => caps.acquire('acme', 'wait')).toThrow(RateLimitedError);
    again();
    expect(caps.held('acme', 'wait')).toBe(0);
  });

  it('caps nothing when a cap is absent or 0', () => {
    const caps = createConcurrencyCaps({ waits: 0 });
    for (let i = 0; i < 100; i++) {
      caps.acquire('acme', 'wait');
      caps.acquire('acme', 'dry_run');
    }
    expect(caps.held('acme', 'wait')).toBe(0);
  });
});

describe('toErrorResponse of a RateLimitedError', () => {
  it('answers 429 with Retry-After in whole seconds rounded up and details.retry_after_ms', () => {
    const error = new RateLimitedError('over', 1001, { limit: 'requests', max: 3 });
    expect(toErrorResponse(error)).toEqual({
      status: 429,
      retryAfterSeconds: 2,
      body: {
        error: {
          code: 'RATE_LIMITED',
          message: 'over',
          details: { limit: 'requests', max: 3, retry_after_ms: 1001 },
        },
      },
    });
    expect(toErrorResponse(new RateLimitedError('over', 1)).retryAfterSeconds).toBe(1);
  });
});

describe('tenantLimitSettings (the environment as HTTP limits)', () => {
  it('counts per 1 s windows with the burst per 10 s, and turns a rate off at 0 per second', () => {
    expect(tenantLimitSettings(loadEnvConfig({}))).toEqual({
      keyPrefix: 'memq:',
      requests: { points: 100, windowSeconds: 1, burstPoints: 1000, burstWindowSeconds: 10 },
      messages: { points: 1000, windowSeconds: 1, burstPoints: 10_000, burstWindowSeconds: 10 },
      waitsPerProject: 32,
      dryRunsPerProject: 4,
    });
    expect(
      tenantLimitSettings(
        loadEnvConfig({
          MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND: '0',
          MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND: '0',
          MEMQ_MAX_CONCURRENT_WAITS: '0',
        }),
      ),
    ).toEqual({ keyPrefix: 'memq:', waitsPerProject: 0, dryRunsPerProject: 4 });
  });
});
