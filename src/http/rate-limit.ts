/**
 * Per-tenant limits of the `/v1` API (docs/decisions.md, "Fairness between tenants"):
 * - a request rate and a message rate per API key, counted in Redis by rate-limiter-flexible
 *   (`RateLimiterRedis`: one single-key Lua script per count, so every `memq serve` process on the
 *   same Redis or Redis Cluster shares the count); while Redis is not ready each process counts
 *   on its own (`RateLimiterMemory` as the insurance limiter), and once a key is over its limit
 *   the process answers from memory until the window ends (`inMemoryBlockOnConsumed`), so a
 *   flooding client costs Redis nothing more;
 * - a cap on concurrent `?wait=true` calls and dry-run flushes per project, per process.
 *
 * The rates are rate-limiter-flexible's fixed windows, not a token bucket: `points` per
 * `windowSeconds` window (starting at the window's first count), and, once those are used up,
 * `burstPoints` more per `burstWindowSeconds` window (its `BurstyRateLimiter` composition, written
 * out here so `Retry-After` can say which window a retry waits for).
 *
 * API keys are identified by {@link keyIdentity}: the project and a digest, never the key.
 */
import { createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RATE_LIMIT_BURST_WINDOW_SECONDS, type ApiKeyGrant } from '../config/env.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import type { RedisConnection } from '../redis/connection.js';
import { grantOf } from './auth.js';
import { PayloadTooLargeError, RateLimitedError } from './http-errors.js';

/** One rate: `points` per window, then `burstPoints` more per burst window. */
export interface RateLimitSpec {
  /** Requests or messages per window, an integer >= 1 (`MEMQ_RATE_LIMIT_*_PER_SECOND`). */
  readonly points: number;
  /** Window, whole seconds >= 1 (1 for the `_PER_SECOND` variables). */
  readonly windowSeconds: number;
  /** More per burst window once `points` are used up, an integer >= 0. Default 0 (no burst). */
  readonly burstPoints?: number;
  /** Burst window, whole seconds >= 1. Default {@link RATE_LIMIT_BURST_WINDOW_SECONDS} (10). */
  readonly burstWindowSeconds?: number;
}

/** Which limit refused a request (`details.limit`, and the `limit` label of `memq_rate_limited_total`). */
export type LimitName = 'requests' | 'messages' | 'concurrent_waits' | 'concurrent_dry_runs';

/** What a call holds while it runs: a `?wait=true` call, or a dry-run flush (which always waits). */
export type HoldKind = 'wait' | 'dry_run';

/** Settings of {@link createTenantLimits}; each limit is off when absent or 0. */
export interface TenantLimitSettings {
  /** Prefix of the rate limits' Redis keys, e.g. `memq:` (`MEMQ_KEY_PREFIX`). */
  readonly keyPrefix: string;
  /** `/v1` requests per API key (every route, counted after authentication, before the body is read). */
  readonly requests?: RateLimitSpec;
  /** Messages per API key of appends and writes, counted after validation, before the enqueue. */
  readonly messages?: RateLimitSpec;
  /** `?wait=true` calls per project at once in this process (`MEMQ_MAX_CONCURRENT_WAITS`). */
  readonly waitsPerProject?: number;
  /** Dry-run flushes per project at once in this process (`MEMQ_MAX_CONCURRENT_DRY_RUNS`). */
  readonly dryRunsPerProject?: number;
}

/** The limits the `/v1` routes apply (see the module comment). */
export interface TenantLimits {
  /**
   * Middleware counting one request for the request's API key (mount after authentication).
   * @throws RateLimitedError (429) over the request rate.
   */
  readonly requests: RequestHandler;
  /**
   * Counts `messages` for the API key of `grant`.
   * @throws RateLimitedError (429) over the message rate.
   * @throws PayloadTooLargeError (413) when `messages` is more than the limit ever lets through
   *   at once (its points and its burst are both smaller).
   */
  consumeMessages(grant: ApiKeyGrant, messages: number): Promise<void>;
  /**
   * Takes a slot of `kind` for `project` (none when `kind` is undefined or its cap is off).
   * @returns Releases the slot; idempotent.
   * @throws RateLimitedError (429) when the project holds the cap's number of slots already.
   */
  hold(project: string, kind: HoldKind | undefined): () => void;
}

/** Dependencies of {@link createTenantLimits}. */
export interface TenantLimitsDeps {
  /** The limits; absent = none. */
  readonly settings?: TenantLimitSettings;
  /** Connection the rate limits count on (the producer connection). */
  readonly redis: RedisConnection;
  /** API key -> grant, as authentication uses them: each grant object identifies one key. */
  readonly apiKeys: ReadonlyMap<string, ApiKeyGrant>;
  /** Records `memq_rate_limited_total{limit}`; absent = not recorded. */
  readonly metrics?: MemqMetrics;
}

/**
 * How an API key is named in the rate limits' Redis keys: `<project>:<16 hex>`, the first 64 bits
 * of SHA-256 over `memq-rate-limit`, a NUL and the key. Stable across processes and key-list
 * order; the key itself is never stored or logged.
 */
export function keyIdentity(key: string, grant: ApiKeyGrant): string {
  const digest = createHash('sha256').update(`memq-rate-limit\0${key}`).digest('hex');
  return `${grant.project}:${digest.slice(0, 16)}`;
}

/**
 * How long until a refused count of `requested` can pass, ms (an integer >= 1): the window that
 * can admit it next. Without a burst window, the main window's reset; when `requested` exceeds the
 * main window's `points`, only the burst window can admit it, so its reset; otherwise whichever
 * resets first. Pure.
 * @param main The main window's refusal (`msBeforeNext`: ms until it resets).
 * @param burst The burst window's refusal; undefined without a burst allowance.
 */
export function retryAfterMs(
  requested: number,
  points: number,
  main: { readonly msBeforeNext: number },
  burst?: { readonly msBeforeNext: number },
): number {
  const ms =
    burst === undefined
      ? main.msBeforeNext
      : requested > points
        ? burst.msBeforeNext
        : Math.min(main.msBeforeNext, burst.msBeforeNext);
  return Math.max(1, Math.ceil(ms));
}

/**
 * Checks `spec` (integers, windows of whole seconds: rate-limiter-flexible's Redis windows are
 * whole seconds).
 * @throws RangeError naming the field and what is allowed.
 */
export function checkRateLimitSpec(name: string, spec: RateLimitSpec): void {
  const check = (field: string, value: number | undefined, min: number) => {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= min)) {
      throw new RangeError(
        `rate limit ${name}: ${field}: expected an integer >= ${min}, got ${value}`,
      );
    }
  };
  check('points', spec.points, 1);
  check('windowSeconds', spec.windowSeconds, 1);
  check('burstPoints', spec.burstPoints, 0);
  check('burstWindowSeconds', spec.burstWindowSeconds, 1);
}

/** A rate of one {@link LimitName}: counts points for an identity or throws. */
type Rate = (identity: string, points: number) => Promise<void>;

/** Which environment variables set each rate (for messages). */
const RATE_VARIABLES: Record<'requests' | 'messages', string> = {
  requests: 'MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND / _BURST',
  messages: 'MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND / _BURST',
};

function createRate(
  name: 'requests' | 'messages',
  spec: RateLimitSpec,
  redis: RedisConnection,
  keyPrefix: string,
): Rate {
  checkRateLimitSpec(name, spec);
  const burstPoints = spec.burstPoints ?? 0;
  const burstWindowSeconds = spec.burstWindowSeconds ?? RATE_LIMIT_BURST_WINDOW_SECONDS;
  const window = (prefix: string, points: number, duration: number) =>
    new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: prefix,
      points,
      duration,
      rejectIfRedisNotReady: true,
      inMemoryBlockOnConsumed: points,
      insuranceLimiter: new RateLimiterMemory({ keyPrefix: prefix, points, duration }),
    });
  const main = window(`${keyPrefix}rl:${name}`, spec.points, spec.windowSeconds);
  const burst =
    burstPoints > 0
      ? window(`${keyPrefix}rl:${name}-burst`, burstPoints, burstWindowSeconds)
      : undefined;
  const most = Math.max(spec.points, burstPoints);
  /** The refusal of `consume`, or undefined when it passed; other errors are thrown. */
  const refusal = async (limiter: RateLimiterRedis, identity: string, points: number) => {
    try {
      await limiter.consume(identity, points);
      return undefined;
    } catch (error) {
      if (error instanceof RateLimiterRes) return error;
      throw error;
    }
  };
  return async (identity, points) => {
    if (points > most) {
      throw new PayloadTooLargeError(
        `messages: this API key may send at most ${most} ${name} at once (${RATE_VARIABLES[name]}), got ${points}; send them in smaller requests`,
        { limit: name, limit_messages: most },
      );
    }
    const mainRefusal = await refusal(main, identity, points);
    if (!mainRefusal) return;
    const burstRefusal = burst ? await refusal(burst, identity, points) : undefined;
    if (burst && !burstRefusal) return;
    const waitMs = retryAfterMs(points, spec.points, mainRefusal, burstRefusal);
    const allowance =
      `${spec.points} ${name} per ${spec.windowSeconds} s` +
      (burst ? ` and ${burstPoints} more per ${burstWindowSeconds} s` : '');
    throw new RateLimitedError(
      `this API key is over its ${name} rate (${allowance}; ${RATE_VARIABLES[name]}); retry after ${waitMs} ms`,
      waitMs,
      {
        limit: name,
        max: spec.points,
        window_seconds: spec.windowSeconds,
        ...(burst ? { burst: burstPoints, burst_window_seconds: burstWindowSeconds } : {}),
      },
    );
  };
}

/** Suggested wait before retrying a call refused by a concurrency cap, ms: no finish time is known. */
export const CONCURRENCY_RETRY_AFTER_MS = 1_000;

/** Concurrency caps per project and {@link HoldKind}, in this process. */
export interface ConcurrencyCaps {
  /**
   * Takes a slot (see {@link TenantLimits.hold}).
   * @throws RateLimitedError with `details` `{ limit, max }` when `project` holds `max` already.
   */
  acquire(project: string, kind: HoldKind): () => void;
  /** Slots of `kind` `project` holds now. */
  held(project: string, kind: HoldKind): number;
}

/**
 * Creates {@link ConcurrencyCaps}: at most `caps.waits` `?wait=true` calls and `caps.dryRuns`
 * dry-run flushes per project at once (absent or 0: no cap). In-process only.
 */
export function createConcurrencyCaps(caps: {
  readonly waits?: number;
  readonly dryRuns?: number;
}): ConcurrencyCaps {
  const counts = new Map<string, number>();
  const slot = (project: string, kind: HoldKind) => `${kind}\0${project}`;
  return {
    acquire(project, kind) {
      const max = kind === 'wait' ? caps.waits : caps.dryRuns;
      if (!max) return () => undefined;
      const key = slot(project, kind);
      const held = counts.get(key) ?? 0;
      if (held >= max) {
        const [limit, what, variable] =
          kind === 'wait'
            ? (['concurrent_waits', '?wait=true calls', 'MEMQ_MAX_CONCURRENT_WAITS'] as const)
            : (['concurrent_dry_runs', 'dry-run flushes', 'MEMQ_MAX_CONCURRENT_DRY_RUNS'] as const);
        throw new RateLimitedError(
          `project ${project} already has ${held} ${what} running on this server, the most allowed (${variable}); retry once one has finished, or call without waiting`,
          CONCURRENCY_RETRY_AFTER_MS,
          { limit, max },
        );
      }
      counts.set(key, held + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (counts.get(key) ?? 1) - 1;
        if (left > 0) counts.set(key, left);
        else counts.delete(key);
      };
    },
    held(project, kind) {
      return counts.get(slot(project, kind)) ?? 0;
    },
  };
}

/** {@link TenantLimits} that limit nothing. */
export const NO_TENANT_LIMITS: TenantLimits = Object.freeze({
  requests: (_req, _res, next) => next(),
  consumeMessages: () => Promise.resolve(),
  hold: () => () => undefined,
} satisfies TenantLimits);

/** Creates the {@link TenantLimits} of `deps.settings` (every limit off without settings). */
export function createTenantLimits(deps: TenantLimitsDeps): TenantLimits {
  const settings = deps.settings;
  const identities = new Map<ApiKeyGrant, string>();
  for (const [key, grant] of deps.apiKeys) identities.set(grant, keyIdentity(key, grant));
  const identityOf = (grant: ApiKeyGrant) => identities.get(grant) ?? `${grant.project}:unknown`;
  const counted = (rate: Rate | undefined): Rate | undefined =>
    rate &&
    (async (identity, points) => {
      try {
        await rate(identity, points);
      } catch (error) {
        if (error instanceof RateLimitedError) {
          deps.metrics?.rateLimited.inc({ limit: String(error.details.limit) });
        }
        throw error;
      }
    });
  const requests = counted(
    settings?.requests
      ? createRate('requests', settings.requests, deps.redis, settings.keyPrefix)
      : undefined,
  );
  const messages = counted(
    settings?.messages
      ? createRate('messages', settings.messages, deps.redis, settings.keyPrefix)
      : undefined,
  );
  const caps = createConcurrencyCaps({
    ...(settings?.waitsPerProject !== undefined ? { waits: settings.waitsPerProject } : {}),
    ...(settings?.dryRunsPerProject !== undefined ? { dryRuns: settings.dryRunsPerProject } : {}),
  });
  return {
    requests: requests
      ? async (_req, res, next) => {
          await requests(identityOf(grantOf(res)), 1);
          next();
        }
      : (_req, _res, next) => next(),
    async consumeMessages(grant, count) {
      if (messages && count > 0) await messages(identityOf(grant), count);
    },
    hold(project, kind) {
      if (kind === undefined) return () => undefined;
      try {
        return caps.acquire(project, kind);
      } catch (error) {
        if (error instanceof RateLimitedError) {
          deps.metrics?.rateLimited.inc({ limit: String(error.details.limit) });
        }
        throw error;
      }
    },
  };
}
