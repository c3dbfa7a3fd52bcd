import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LockingConfig } from '../../src/core/memory-resource.js';
import { LockBusyError, LockLostError } from '../../src/core/errors.js';
import { memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import {
  createLockService,
  type LockEvent,
  type LockService,
} from '../../src/redis/lock-service.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const ref: MemoryRef = { project: 'p1', resource: 'customer-support', key: 'support:42' };
const otherRef: MemoryRef = { ...ref, key: 'support:43' };
const locking: LockingConfig = { clearTtlMs: 10_000, flushTtlMs: 300_000 };
const shortFlush: LockingConfig = { ...locking, flushTtlMs: 500 };
const mediumFlush: LockingConfig = { ...locking, flushTtlMs: 1500 };

/** A promise plus its resolver, to hold a lock until the test lets go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Resolves when `signal` aborts, with the ms it took from the call. */
function abortedAfter(signal: AbortSignal): Promise<number> {
  const start = performance.now();
  return new Promise((resolve) =>
    signal.addEventListener('abort', () => resolve(performance.now() - start), { once: true }),
  );
}

describe('LockService on real Redis', () => {
  let ns: RedisNamespace;
  let locks: LockService;
  let events: LockEvent[];
  let lockKey: string;

  beforeEach(() => {
    ns = createRedisNamespace();
    events = [];
    locks = createLockService({
      redis: ns.redis,
      keyPrefix: ns.keyPrefix,
      onEvent: (e) => events.push(e),
    });
    lockKey = memoryKeys(ns.keyPrefix, ref).lock;
  });
  afterEach(async () => {
    await locks.close();
    await ns.cleanup();
  });

  it('stores the returned token at the instance lock key while held and deletes it after', async () => {
    const result = await locks.withLock(ref, locking, 'clear', async (lock) => {
      expect(lock.key).toBe(lockKey);
      expect(lock.token).toMatch(/^[0-9a-f]{32}$/);
      expect(await ns.redis.get(lockKey)).toBe(lock.token);
      return 'done';
    });
    expect(result).toBe('done');
    expect(await ns.redis.exists(lockKey)).toBe(0);
    expect(events.map((e) => e.type)).toEqual(['acquired', 'released']);
    expect(events[0]).toMatchObject({ ref, operation: 'clear' });
  });

  it.each([
    ['clear', 10_000],
    ['flush', 300_000],
  ] as const)('sets the %s TTL from the resource on the lock key', async (operation, ttlMs) => {
    await locks.withLock(ref, locking, operation, async () => {
      const pttl = await ns.redis.pttl(lockKey);
      expect(pttl).toBeGreaterThan(ttlMs - 1000);
      expect(pttl).toBeLessThanOrEqual(ttlMs);
    });
  });

  it('throws LockBusyError naming the memory and operation while another call holds the lock, and locks another instance freely', async () => {
    const hold = gate();
    const first = locks.withLock(ref, locking, 'flush', () => hold.promise);
    try {
      await expect.poll(() => ns.redis.exists(lockKey)).toBe(1);

      const busy = await locks
        .withLock(ref, locking, 'clear', () => Promise.resolve('never'), { waitMs: 100 })
        .catch((e: unknown) => e);
      expect(busy).toBeInstanceOf(LockBusyError);
      expect((busy as LockBusyError).message).toContain('p1/customer-support/support:42');
      expect((busy as LockBusyError).message).toContain('clear');
      expect((busy as LockBusyError).retryable).toBe(true);
      expect(events.find((e) => e.type === 'contended')).toMatchObject({ operation: 'clear' });

      const other = await locks.withLock(otherRef, locking, 'clear', (lock) =>
        Promise.resolve(lock.key),
      );
      expect(other).toBe(memoryKeys(ns.keyPrefix, otherRef).lock);
    } finally {
      hold.open();
      await first;
    }
  });

  it('waits up to waitMs for a holder that releases, then acquires', async () => {
    const hold = gate();
    const first = locks.withLock(ref, locking, 'flush', () => hold.promise);
    await expect.poll(() => ns.redis.exists(lockKey)).toBe(1);
    setTimeout(hold.open, 150);

    const second = await locks.withLock(ref, locking, 'clear', () => Promise.resolve('second'), {
      waitMs: 2000,
    });
    await first;
    expect(second).toBe('second');
    const acquired = events.filter((e) => e.type === 'acquired');
    expect(acquired).toHaveLength(2);
    expect(acquired[1]!.waitedMs).toBeGreaterThan(0);
  });

  // A 1.5 s TTL leaves room for a loaded CI machine; what is tested is that a run three times
  // the TTL keeps the lock. Extensions on a cluster run on the key's node
  // (`withKeyRoutedScripts`, tested below).
  it('keeps a 1.5 s lock through a 4.5 s run by extending it', async () => {
    const result = await locks.withLock(ref, mediumFlush, 'flush', async (lock) => {
      await sleep(3000);
      expect(await ns.redis.get(lockKey)).toBe(lock.token);
      await sleep(1500);
      expect(lock.signal.aborted).toBe(false);
      return 'flushed';
    });
    expect(result).toBe('flushed');
    expect(events.filter((e) => e.type === 'extended').length).toBeGreaterThanOrEqual(4);
    expect(events.some((e) => e.type === 'lost')).toBe(false);
    expect(await ns.redis.exists(lockKey)).toBe(0);
  });

  // On a cluster the lock keys of different memories live on different masters (one hash tag per
  // memory): every extension and release must run on its key's node. Before withKeyRoutedScripts,
  // a dozen memories on a three-master cluster all but surely met a NOSCRIPT failure.
  it('extends and releases the locks of memories spread over the keyspace', async () => {
    const quickFlush: LockingConfig = { ...locking, flushTtlMs: 600 };
    const refs = Array.from({ length: 12 }, (_, i) => ({ ...ref, key: `support:spread-${i}` }));
    for (const r of refs) {
      // 350 ms > TTL / 3 (200 ms): each lock is extended at least once before it is released.
      expect(await locks.withLock(r, quickFlush, 'flush', () => sleep(350, r.key))).toBe(r.key);
    }
    const ofType = (type: LockEvent['type']) => events.filter((e) => e.type === type).length;
    expect(ofType('extended')).toBeGreaterThanOrEqual(refs.length);
    expect(ofType('released')).toBe(refs.length);
    expect(ofType('lost') + ofType('release_failed')).toBe(0);
    for (const r of refs) expect(await ns.redis.exists(memoryKeys(ns.keyPrefix, r).lock)).toBe(0);
  });

  it.each([
    ['deletes', (redis: RedisNamespace['redis'], key: string) => redis.del(key)],
    ['overwrites', (redis: RedisNamespace['redis'], key: string) => redis.set(key, 'intruder')],
  ] as const)(
    'aborts the signal with LockLostError and rejects when another client %s the lock key',
    async (_how, tamper) => {
      const intruder = ns.connect();
      let reason: unknown;
      let abortMs = -1;
      const outcome = await locks
        .withLock(ref, shortFlush, 'flush', async (lock) => {
          const aborted = abortedAfter(lock.signal);
          await tamper(intruder, lockKey);
          abortMs = await Promise.race([aborted, sleep(3000, -1)]);
          reason = lock.signal.reason;
          return 'committed anyway';
        })
        .catch((e: unknown) => e);

      // One extension interval is TTL / 3 (~167 ms); the bound leaves scheduling slack.
      expect(abortMs).toBeGreaterThanOrEqual(0);
      expect(abortMs).toBeLessThan(500);
      expect(reason).toBeInstanceOf(LockLostError);
      expect(outcome).toBe(reason);
      expect((outcome as LockLostError).message).toContain('p1/customer-support/support:42');
      expect(events.some((e) => e.type === 'lost')).toBe(true);
      expect(events.some((e) => e.type === 'released')).toBe(false);
      // The release must not delete another holder's key.
      const left = await ns.redis.get(lockKey);
      expect(left === null || left === 'intruder').toBe(true);
    },
  );

  it('rejects with the signal’s LockLostError when run stops on the abort', async () => {
    let reason: unknown;
    const outcome = await locks
      .withLock(ref, shortFlush, 'flush', async (lock) => {
        await ns.redis.del(lockKey);
        try {
          await sleep(3000, undefined, { signal: lock.signal });
        } finally {
          reason = lock.signal.reason;
        }
      })
      .catch((e: unknown) => e);
    expect(outcome).toBeInstanceOf(LockLostError);
    expect(outcome).toBe(reason);
  });

  it('rejects with LockLostError caused by the error run threw after the loss', async () => {
    const refused = new Error('commit refused: lock token mismatch');
    const outcome = await locks
      .withLock(ref, shortFlush, 'flush', async (lock) => {
        await ns.redis.del(lockKey);
        await abortedAfter(lock.signal);
        throw refused;
      })
      .catch((e: unknown) => e);
    expect(outcome).toBeInstanceOf(LockLostError);
    expect((outcome as LockLostError).cause).toBe(refused);
  });

  it('releases the lock when run throws and rethrows run’s error', async () => {
    const boom = new Error('boom');
    const outcome = await locks
      .withLock(ref, locking, 'clear', async () => {
        await sleep(10);
        throw boom;
      })
      .catch((e: unknown) => e);
    expect(outcome).toBe(boom);
    expect(await ns.redis.exists(lockKey)).toBe(0);
    expect(events.map((e) => e.type)).toEqual(['acquired', 'released']);
    const again = await locks.withLock(ref, locking, 'clear', () => Promise.resolve('free'), {
      waitMs: 0,
    });
    expect(again).toBe('free');
  });

  it('keeps run’s result when the key is found taken over only at release', async () => {
    const intruder = ns.connect();
    const result = await locks.withLock(ref, locking, 'clear', async () => {
      await intruder.set(lockKey, 'intruder');
      return 'cleared';
    });
    expect(result).toBe('cleared');
    expect(await ns.redis.get(lockKey)).toBe('intruder');
    expect(events.map((e) => e.type)).toEqual(['acquired', 'lost']);
  });

  it('refuses new calls after close, and close waits for a held lock to be released', async () => {
    const hold = gate();
    const first = locks.withLock(ref, locking, 'clear', () => hold.promise);
    await expect.poll(() => ns.redis.exists(lockKey)).toBe(1);
    const closing = locks.close();
    await expect(
      locks.withLock(otherRef, locking, 'clear', () => Promise.resolve(1)),
    ).rejects.toThrow(/closed/);
    hold.open();
    await closing;
    await first;
    expect(await ns.redis.exists(lockKey)).toBe(0);
    await locks.close();
  });
});
