import { Queue } from 'bullmq';
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { queueJobKeys } from '../../processors/cleanup.js';
import { DEFAULT_JOB_OPTIONS } from '../../queues/job-options.js';
import { JOBS, QUEUES } from '../../queues/names.js';
import type { Message } from '../../src/core/message.js';
import { memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import {
  ERASURE_TOMBSTONE_TTL_SECONDS,
  createMemoryStore,
  type MemoryStore,
} from '../../src/store/memory-store.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const ref: MemoryRef = { project: 'p1', resource: 'agent-memory', key: 'agent:erase' };
const TTL = 3600;
const T = 1_800_000_000_000; // a fixed enqueue time, ms

function messages(n: number, prefix = 'secret'): Message[] {
  return Array.from({ length: n }, (_, i) => ({
    id: nextId(),
    role: 'user' as const,
    content: `${prefix} ${i + 1}`,
    created_at: new Date().toISOString(),
  }));
}

/** The erasure tombstone in the store (a delete or clear is final). */
describe('erasure tombstone and job scrubbing in Redis', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;

  beforeEach(() => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  const tombstone = () => ns.redis.get(memoryKeys(ns.keyPrefix, ref).erased);

  it('refuses an append enqueued at or before a delete (same millisecond included), stores one after it', async () => {
    expect(await store.delete(ref, { requestedAtMs: T })).toEqual({ removed: 0, erasedAtMs: T });
    for (const enqueuedAtMs of [T - 60_000, T]) {
      expect(await store.append(ref, messages(2), TTL, { enqueuedAtMs })).toEqual({
        added: 0,
        duplicates: 0,
        needsTokenCount: false,
        messageCount: 0,
        erased: 2,
      });
    }
    // A refused append creates no key: the deleted instance stays gone.
    expect((await store.stats(ref)).exists).toBe(false);
    expect(await ns.allText()).not.toContain('secret');

    const later = await store.append(ref, messages(1, 'later'), TTL, { enqueuedAtMs: T + 1 });
    expect(later).toMatchObject({ added: 1, erased: 0 });
    // A direct call (not a queued job) is ordered by its own execution: no tombstone applies.
    expect(await store.append(ref, messages(1, 'direct'), TTL)).toMatchObject({ added: 1 });
    expect((await store.read(ref)).total).toBe(2);
  });

  it('keeps the tombstone through the delete that sets it, with a bounded TTL, and never lowers it', async () => {
    await store.append(ref, messages(3), TTL);
    expect(await store.delete(ref, { requestedAtMs: T })).toEqual({ removed: 3, erasedAtMs: T });
    expect(await tombstone()).toBe(String(T));
    const ttl = await ns.redis.ttl(memoryKeys(ns.keyPrefix, ref).erased);
    expect(ttl).toBeGreaterThan(ERASURE_TOMBSTONE_TTL_SECONDS - 60);
    expect(ttl).toBeLessThanOrEqual(ERASURE_TOMBSTONE_TTL_SECONDS);
    // It outlives the dead letters a dashboard could retry.
    const failedRetention = DEFAULT_JOB_OPTIONS.removeOnFail as { age: number };
    expect(ERASURE_TOMBSTONE_TTL_SECONDS).toBeGreaterThan(failedRetention.age);

    // An older clear (a retried or slow job) runs later: the tombstone stays at the newest time.
    expect(await store.clear(ref, { requestedAtMs: T - 5_000 })).toMatchObject({
      erasedAtMs: T,
    });
    expect(await tombstone()).toBe(String(T));
    expect(await store.clear(ref, { requestedAtMs: T + 5_000 })).toMatchObject({
      erasedAtMs: T + 5_000,
    });
  });

  it('refuses a write enqueued at or before a clear and changes nothing', async () => {
    await store.append(ref, messages(2, 'kept'), TTL, { enqueuedAtMs: T + 10 });
    await store.clear(ref, { requestedAtMs: T });
    // The clear removed them (it committed after they did), the epoch moved.
    const before = await store.stats(ref);
    expect(before).toMatchObject({ messageCount: 0, epoch: 1 });
    await store.append(ref, messages(1, 'after'), TTL, { enqueuedAtMs: T + 20 });

    const refused = await store.write(ref, messages(2), TTL, { enqueuedAtMs: T });
    expect(refused).toEqual({ messageCount: 1, epoch: 1, refused: true });
    const page = await store.read(ref);
    expect(page.messages.map((m) => m.message.content)).toEqual(['after 1']);

    const applied = await store.write(ref, messages(1, 'new'), TTL, { enqueuedAtMs: T + 30 });
    expect(applied).toEqual({ messageCount: 1, epoch: 2, refused: false });
  });

  it('rejects an enqueue or request time that is not an integer ms before touching anything', async () => {
    await expect(store.append(ref, messages(1), TTL, { enqueuedAtMs: 1.5 })).rejects.toThrow(
      'append: enqueuedAtMs: expected an integer >= 0 (ms since epoch), got 1.5',
    );
    await expect(store.delete(ref, { requestedAtMs: -1 })).rejects.toThrow(
      'delete: requestedAtMs: expected an integer >= 0',
    );
    expect(await ns.keys()).toEqual([]);
  });

  it('scrubs only the jobs of the instance enqueued at or before the tombstone', async () => {
    const append = new Queue(QUEUES.append, { connection: ns.redis, prefix: ns.queuePrefix });
    const cleanup = new Queue(QUEUES.cleanup, { connection: ns.redis, prefix: ns.queuePrefix });
    try {
      const other: MemoryRef = { ...ref, key: 'agent:keep' };
      const old = messages(2, 'old secret');
      const before = await append.add(JOBS.append, { ref, messages: old }, { timestamp: T });
      const written = messages(1, 'old write');
      const write = await cleanup.add(
        JOBS.write,
        { ref, messages: written },
        { timestamp: T - 1, delay: 60_000 },
      );
      const after = await append.add(
        JOBS.append,
        { ref, messages: messages(1, 'new message') },
        { timestamp: T + 1 },
      );
      const elsewhere = await append.add(
        JOBS.append,
        { ref: other, messages: messages(1, 'other instance') },
        { timestamp: T - 1 },
      );
      const maintenance = createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
      const queues = [queueJobKeys(append), queueJobKeys(cleanup)];

      expect(await maintenance.scrubJobs(ref, T, queues)).toBe(2);
      expect((await append.getJob(before.id!))!.data).toEqual({
        ref,
        erased_ids: old.map((m) => m.id),
      });
      expect((await cleanup.getJob(write.id!))!.data).toEqual({
        ref,
        erased_ids: [written[0]!.id],
      });
      expect(JSON.stringify((await append.getJob(after.id!))!.data)).toContain('new message');
      expect(JSON.stringify((await append.getJob(elsewhere.id!))!.data)).toContain(
        'other instance',
      );
      const text = await ns.allText();
      expect(text).not.toContain('old secret');
      expect(text).not.toContain('old write');
      // Idempotent: scrubbed data has no messages left to scrub.
      expect(await maintenance.scrubJobs(ref, T, queues)).toBe(0);
    } finally {
      await append.close();
      await cleanup.close();
    }
  });
});
