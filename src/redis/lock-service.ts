import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisConnection } from './connection.js';
import {
  createLock,
  IoredisAdapter,
  LockAcquisitionError,
  type Lock,
  type LockHandle,
} from 'redlock-universal';
import type { LockingConfig } from '../core/memory-resource.js';
import { LockBusyError, LockLostError } from '../core/errors.js';
import { memoryId, memoryKeys, type MemoryRef } from './keys.js';

/**
 * The instance lock (docs/architecture.md, "Redis layout", "Jobs" and invariant 5): one Redis STRING per memory instance at
 * `memoryKeys(prefix, ref).lock`, holding a random token, taken with redlock-universal's
 * single-instance lock (docs/decisions.md "Locks"). The key shares the instance's hash tag, so a
 * commit script can compare `GET <lock key>` with {@link HeldLock.token} (fencing) in the same
 * slot as the data it writes.
 *
 * Why redlock-universal's `acquire`/`extend`/`release` and not its `using()` (checked in 0.8.5's
 * `dist/index.js`, `executeWithAutoExtension`):
 * - `using()` aborts its signal with no `reason` (the error sits on a non-standard `signal.error`)
 *   and still resolves with the routine's result after a loss, so callers cannot tell;
 * - it extends when 80 % of the TTL is consumed but never sooner than 1 000 ms
 *   (`MIN_EXTENSION_INTERVAL`), which for a TTL under 1.25 s turns into back-to-back extensions;
 * - a single failed extension command (a Redis blip) aborts at once, with no second try;
 * - release errors are only logged, and extensions are not reported.
 * This module keeps the library's token generation and its compare-and-set Lua scripts and owns
 * the schedule, the loss detection and the reporting.
 */

/**
 * Operations that take the instance lock; each has its own TTL in {@link LockingConfig}. Appends
 * take none: each commits in one atomic Lua script.
 */
export const LOCK_OPERATIONS = ['clear', 'flush'] as const;

/** One of {@link LOCK_OPERATIONS}. */
export type LockOperation = (typeof LOCK_OPERATIONS)[number];

/** Kinds of {@link LockEvent}, for metrics and logs. */
export const LOCK_EVENT_TYPES = [
  'acquired',
  'contended',
  'extended',
  'lost',
  'released',
  'release_failed',
] as const;

/**
 * One of {@link LOCK_EVENT_TYPES}:
 * - `acquired`: the lock was taken (`waitedMs` > 0 when it had to wait for another holder);
 * - `contended`: the lock stayed held by another holder for the whole wait; `withLock` throws
 *   {@link LockBusyError} right after this event;
 * - `extended`: an automatic extension reset the TTL;
 * - `lost`: the lock is no longer ours: detected during `run` (signal aborted) or, once `run`
 *   has settled, by a release that found another token or none (then `run`'s outcome stands);
 * - `released`: the lock key was deleted after `run` settled;
 * - `release_failed`: the release command failed (Redis error or timeout); the key expires by
 *   its TTL.
 */
export type LockEventType = (typeof LOCK_EVENT_TYPES)[number];

/** What {@link LockServiceDeps.onEvent} receives. Carries no message content. */
export interface LockEvent {
  /** What happened; see {@link LockEventType}. */
  readonly type: LockEventType;
  /** The memory instance whose lock this is (an id: never use it as a metric label). */
  readonly ref: MemoryRef;
  /** The operation holding or wanting the lock. */
  readonly operation: LockOperation;
  /** `acquired` and `contended`: ms from the first attempt to acquisition or giving up. */
  readonly waitedMs?: number;
  /** `lost` and `release_failed`: the underlying error, for logs. */
  readonly error?: unknown;
}

/** The lock as seen by the code running under it. */
export interface HeldLock {
  /** The lock key, `memoryKeys(prefix, ref).lock`. */
  readonly key: string;
  /**
   * The value stored at {@link HeldLock.key} while the lock is ours: 32 hex characters (128 random
   * bits from `crypto.randomFillSync`, redlock-universal's `generateLockValue`). Commit scripts
   * compare `GET key` with it (fencing).
   */
  readonly token: string;
  /**
   * Aborts, with a {@link LockLostError} as `reason`, when the lock is lost while `run` is in
   * progress: an extension found another token or no key, or the TTL elapsed since the last
   * successful extension (Redis unreachable or slow). Never aborts after `run` has settled.
   */
  readonly signal: AbortSignal;
}

/** Options of {@link LockService.withLock}. */
export interface WithLockOptions {
  /**
   * How long to keep retrying while another holder has the lock, ms; 0 = try once. Default
   * {@link DEFAULT_LOCK_WAIT_MS}. Retries are {@link LOCK_RETRY_DELAY_MS} apart, jittered.
   */
  readonly waitMs?: number;
}

/** Instance locks for the processors (docs/architecture.md, "Jobs": flush, clear, delete, write). */
export interface LockService {
  /**
   * Acquires the lock of `ref` with the TTL `locking` gives `operation`, runs `run` while
   * extending the lock automatically, and releases it in `finally`.
   *
   * Extension: every third of the TTL (so one failed extension command can be retried before
   * the key expires). The lock counts as lost when an extension finds another token or no key,
   * or when a full TTL passes since the last successful extension was sent; then
   * `lock.signal` aborts with a {@link LockLostError}. Loss is detected within about one
   * extension interval (TTL / 3) of the key being deleted or overwritten.
   *
   * Outcome: resolves with `run`'s value only if the lock was not lost before `run` settled.
   * If it was lost, `withLock` waits for `run` to settle (it is never abandoned), releases, and
   * rejects with a {@link LockLostError}: the signal's reason itself when `run` resolved or
   * threw that reason (or an `AbortError` caused by it), otherwise a new one whose `cause` is `run`'s error. Without a loss,
   * `run`'s error is rethrown unchanged. Release problems (`lost` at release,
   * `release_failed`) are reported through `onEvent` and never change the outcome.
   *
   * @param ref Memory instance whose lock to take.
   * @param locking The resource's lock TTLs, ms (`MemoryResource.locking`).
   * @param operation Selects the TTL: `clearTtlMs` or `flushTtlMs`.
   * @param run Work to do under the lock; should stop when `lock.signal` aborts.
   * @param options See {@link WithLockOptions}.
   * @throws {LockBusyError} another holder kept the lock for `waitMs` (retryable); the message
   *   names the memory id and the operation.
   * @throws {LockLostError} the lock was lost while `run` was in progress (retryable).
   * @throws {Error} redlock-universal's `LockAcquisitionError` when Redis fails while acquiring
   *   (each command is bounded by the adapter's 5 000 ms timeout), or when the service is closed.
   */
  withLock<T>(
    ref: MemoryRef,
    locking: LockingConfig,
    operation: LockOperation,
    run: (lock: HeldLock) => Promise<T>,
    options?: WithLockOptions,
  ): Promise<T>;
  /**
   * Refuses new `withLock` calls and waits for the ones in progress to release. Does not close
   * the Redis connection (the caller owns it). Idempotent.
   */
  close(): Promise<void>;
}

/** Dependencies of {@link createLockService}. */
export interface LockServiceDeps {
  /**
   * Connection for lock commands; owned by the caller. A worker-role connection
   * (`maxRetriesPerRequest: null`) is fine: every lock command has its own 5 000 ms timeout.
   */
  readonly redis: RedisConnection;
  /** Key prefix, e.g. `memq:` (the same one the store uses). */
  readonly keyPrefix: string;
  /** Observer for metrics/logs; an exception it throws is swallowed (it must not break locking). */
  readonly onEvent?: (event: LockEvent) => void;
}

/**
 * Default {@link WithLockOptions.waitMs}: 200 ms, about four attempts. Long enough to ride out a
 * holder that is just releasing, short enough that a worker does not sit on a busy instance:
 * on `LockBusyError` the job wrapper moves the job back to delayed for about 2 s without spending
 * an attempt (`LOCK_BUSY_RECHECK_MS` in processors/job-wrapper.ts), which does the long waiting.
 */
export const DEFAULT_LOCK_WAIT_MS = 200;

/** Base delay between acquisition attempts, ms; each wait is jittered to 50-150 % of it. */
export const LOCK_RETRY_DELAY_MS = 50;

/**
 * Fraction of the TTL between extensions. BullMQ renews its job locks at half the lock duration
 * (`lockRenewTime`); a third leaves room for one failed extension before the key expires.
 */
const EXTENSION_INTERVAL_RATIO = 1 / 3;

/**
 * The connection as redlock-universal's `IoredisAdapter` sees it: the same client, except that
 * the adapter's scripts run on the node that owns their key. The adapter (0.8.x) loads a script
 * with a keyless `SCRIPT LOAD`, which an ioredis `Cluster` sends to a random master, then runs
 * `EVALSHA` on the key's master: `NOSCRIPT` whenever the two differ, and its one retry loads the
 * same way, so extensions and releases failed at random on a cluster (ioredis#58; found when the
 * cluster suite lost a lock with "Script execution failed after 1 NOSCRIPT retries"). Here
 * `SCRIPT LOAD` only computes the script's SHA1, which is what Redis would return, and `EVALSHA`
 * that meets `NOSCRIPT` runs `EVAL` with the body instead: routed by key, and it caches the
 * script on that node, so later calls there are `EVALSHA` hits. Standalone Redis pays one
 * `NOSCRIPT` per script and connection, on first use.
 */
export function withKeyRoutedScripts(redis: RedisConnection): RedisConnection {
  const bodies = new Map<string, string>();
  const script = (subcommand: string, ...args: string[]): Promise<unknown> => {
    const body = args[0];
    if (subcommand.toUpperCase() !== 'LOAD' || body === undefined) {
      return (redis.script as (...a: string[]) => Promise<unknown>)(subcommand, ...args);
    }
    const sha = createHash('sha1').update(body).digest('hex');
    bodies.set(sha, body);
    return Promise.resolve(sha);
  };
  const evalsha = async (
    sha: string,
    numberOfKeys: number,
    ...keysAndArgs: string[]
  ): Promise<unknown> => {
    try {
      return await redis.evalsha(sha, numberOfKeys, ...keysAndArgs);
    } catch (error) {
      const body = bodies.get(sha);
      if (body === undefined || !(error instanceof Error) || !error.message.includes('NOSCRIPT')) {
        throw error;
      }
      return redis.eval(body, numberOfKeys, ...keysAndArgs);
    }
  };
  return new Proxy(redis, {
    get(target, property) {
      if (property === 'script') return script;
      if (property === 'evalsha') return evalsha;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function'
        ? (value as (...a: unknown[]) => unknown).bind(target)
        : value;
    },
  });
}

/**
 * Creates the {@link LockService}.
 *
 * redlock-universal's built-in circuit breaker (on by default: 5 consecutive failures open it
 * for 60 s) is turned off: its state lives in one `Lock` object, and a lock object is bound to
 * one key and TTL, so we create one per call and the breaker would never accumulate failures,
 * while its health check would add a `PING` to every acquisition. A process-wide breaker would
 * be worse: one Redis blip would fail every lock for a minute after Redis recovered. Redis
 * outages are handled by ioredis reconnection and BullMQ's retry backoff instead (breakers are kept
 * for paid APIs: docs/architecture.md, "Jobs").
 */
export function createLockService(deps: LockServiceDeps): LockService {
  // One adapter per service: it caches the SHAs of the compare-and-set scripts. It owns no
  // connection of its own; never call its disconnect(), which would quit the shared client.
  const adapter = new IoredisAdapter(withKeyRoutedScripts(deps.redis));
  const active = new Set<Promise<unknown>>();
  let closed = false;

  const emit = (event: LockEvent): void => {
    try {
      deps.onEvent?.(event);
    } catch {
      // An observer's bug must not turn a held lock into a failed job or leak the lock.
    }
  };

  async function acquire(
    lock: Lock,
    ref: MemoryRef,
    operation: LockOperation,
    key: string,
    waitMs: number,
  ): Promise<{ handle: LockHandle; sentAt: number }> {
    const startedAt = performance.now();
    for (let attempt = 1; ; attempt++) {
      const sentAt = performance.now();
      try {
        const handle = await lock.acquire();
        emit({ type: 'acquired', ref, operation, waitedMs: Math.round(sentAt - startedAt) });
        return { handle, sentAt };
      } catch (error) {
        if (!isHeldByAnother(error, key)) throw error;
      }
      const waitedMs = performance.now() - startedAt;
      if (waitedMs >= waitMs) {
        emit({ type: 'contended', ref, operation, waitedMs: Math.round(waitedMs) });
        throw new LockBusyError(
          `memory ${memoryId(ref)}: the ${operation} lock is held by another holder; ` +
            `gave up after ${Math.round(waitedMs)} ms (${attempt} attempt(s), waitMs ${waitMs})`,
          {
            details: { ...ref, operation, waitedMs: Math.round(waitedMs), attempts: attempt },
          },
        );
      }
      const delayMs = LOCK_RETRY_DELAY_MS * (0.5 + Math.random());
      await sleep(Math.min(delayMs, waitMs - waitedMs));
    }
  }

  async function withLockInner<T>(
    ref: MemoryRef,
    locking: LockingConfig,
    operation: LockOperation,
    run: (lock: HeldLock) => Promise<T>,
    options: WithLockOptions,
  ): Promise<T> {
    const key = memoryKeys(deps.keyPrefix, ref).lock;
    const ttlMs = ttlFor(locking, operation);
    // retryAttempts 0: this module owns the wait loop, so it can tell contention from errors.
    const lock = createLock({ adapter, key, ttl: ttlMs, retryAttempts: 0, circuitBreaker: false });
    const { handle, sentAt } = await acquire(
      lock,
      ref,
      operation,
      key,
      options.waitMs ?? DEFAULT_LOCK_WAIT_MS,
    );

    const controller = new AbortController();
    const intervalMs = Math.max(1, Math.floor(ttlMs * EXTENSION_INTERVAL_RATIO));
    let settled = false;
    let lost: LockLostError | undefined;
    let lastExtensionError: unknown;
    let extendTimer: NodeJS.Timeout | undefined;
    let expiryTimer: NodeJS.Timeout | undefined;

    const stopTimers = (): void => {
      clearTimeout(extendTimer);
      clearTimeout(expiryTimer);
    };
    const markLost = (reason: string, cause?: unknown): void => {
      if (settled || lost) return;
      stopTimers();
      lost = new LockLostError(
        `memory ${memoryId(ref)}: the ${operation} lock was lost while the ${operation} was ` +
          `in progress (${reason}; TTL ${ttlMs} ms)`,
        { details: { ...ref, operation, ttlMs }, cause },
      );
      emit({ type: 'lost', ref, operation, error: cause ?? lost });
      controller.abort(lost);
    };
    // Valid until a full TTL after the last successful SET/PEXPIRE was *sent* (conservative).
    const armExpiry = (validFrom: number): void => {
      clearTimeout(expiryTimer);
      const remainingMs = Math.max(0, validFrom + ttlMs - performance.now());
      expiryTimer = setTimeout(
        () => markLost('no extension succeeded within the TTL', lastExtensionError),
        remainingMs,
      );
      expiryTimer.unref();
    };
    const scheduleExtension = (): void => {
      extendTimer = setTimeout(() => void extend(), intervalMs);
      extendTimer.unref();
    };
    const extend = async (): Promise<void> => {
      const extendSentAt = performance.now();
      try {
        const stillOurs = await lock.extend(handle, ttlMs);
        if (settled || lost) return;
        if (!stillOurs) {
          markLost('the lock key no longer holds this token');
          return;
        }
        lastExtensionError = undefined;
        armExpiry(extendSentAt);
        emit({ type: 'extended', ref, operation });
      } catch (error) {
        // Maybe a blip: keep extending; the expiry timer declares the loss if none succeeds.
        lastExtensionError = error;
      }
      if (!settled && !lost) scheduleExtension();
    };

    armExpiry(sentAt);
    scheduleExtension();
    const held: HeldLock = { key, token: handle.value, signal: controller.signal };
    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await run(held) };
    } catch (error) {
      outcome = { ok: false, error };
    } finally {
      settled = true;
      stopTimers();
    }

    // An extension still in flight was sent before the release on the same connection, so Redis
    // runs it first and the release still deletes the key.
    await release(lock, handle, ref, operation, lost !== undefined);

    if (lost) {
      if (outcome.ok || isCausedBy(outcome.error, lost)) throw lost;
      throw new LockLostError(lost.message, {
        details: lost.details,
        cause: outcome.error,
      });
    }
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  async function release(
    lock: Lock,
    handle: LockHandle,
    ref: MemoryRef,
    operation: LockOperation,
    alreadyLost: boolean,
  ): Promise<void> {
    try {
      if (await lock.release(handle)) emit({ type: 'released', ref, operation });
      else if (!alreadyLost) emit({ type: 'lost', ref, operation });
    } catch (error) {
      emit({ type: 'release_failed', ref, operation, error });
    }
  }

  return {
    withLock<T>(
      ref: MemoryRef,
      locking: LockingConfig,
      operation: LockOperation,
      run: (lock: HeldLock) => Promise<T>,
      options: WithLockOptions = {},
    ): Promise<T> {
      if (closed) return Promise.reject(new Error('LockService is closed'));
      const call = withLockInner(ref, locking, operation, run, options);
      const tracked = call.then(
        () => undefined,
        () => undefined,
      );
      active.add(tracked);
      void tracked.then(() => active.delete(tracked));
      return call;
    },
    async close(): Promise<void> {
      closed = true;
      await Promise.all(active);
    },
  };
}

/** The TTL `locking` gives `operation`, ms. */
function ttlFor(locking: LockingConfig, operation: LockOperation): number {
  switch (operation) {
    case 'clear':
      return locking.clearTtlMs;
    case 'flush':
      return locking.flushTtlMs;
  }
}

/**
 * True when `acquire()` failed only because the key holds another token. redlock-universal
 * 0.8.5 (pinned) reports that as a `LockAcquisitionError` whose cause reads
 * `Lock "<key>" is already held`; Redis errors carry the client's error as cause instead.
 */
function isHeldByAnother(error: unknown, key: string): boolean {
  return (
    error instanceof LockAcquisitionError &&
    error.cause instanceof Error &&
    error.cause.message === `Lock "${key}" is already held`
  );
}

/** True when `error` is `reason` or an error (e.g. Node's `AbortError`) whose cause it is. */
function isCausedBy(error: unknown, reason: Error): boolean {
  return error === reason || (error instanceof Error && error.cause === reason);
}
