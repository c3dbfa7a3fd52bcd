import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { monotonicFactory } from 'ulid';
import type { Message, Summary } from '../../src/core/message.js';
import { memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import {
  createMemoryStore,
  type MemoryStats,
  type MemoryStore,
} from '../../src/store/memory-store.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const ref: MemoryRef = { project: 'p1', resource: 'agent-memory', key: 'agent:1' };
const TTL = 3600;

function messages(n: number, prefix = 'Message'): Message[] {
  return Array.from({ length: n }, (_, i) => ({
    id: nextId(),
    role: i % 2 === 0 ? ('user' as const) : ('assistant' as const),
    content: `${prefix} ${i + 1}`,
    created_at: new Date().toISOString(),
  }));
}

/** Stats without the TTL, which ticks down between two reads. */
async function snapshot(store: MemoryStore) {
  const stats: MemoryStats = await store.stats(ref, { deep: true });
  return Object.fromEntries(Object.entries(stats).filter(([field]) => field !== 'ttlSeconds'));
}

function summaryThrough(id: string, covered: number, tokens = 40): Summary {
  return {
    content: `summary of ${covered}`,
    tokens,
    covers_through_id: id,
    message_count_covered: covered,
    updated_at: new Date().toISOString(),
  };
}

describe('MemoryStore writes: replace, clear, delete, flush commit, stats', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;
  let lockKey: string;

  beforeEach(() => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    lockKey = memoryKeys(ns.keyPrefix, ref).lock;
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  const countAll = async (batch: readonly Message[], tokensEach = 10) =>
    store.commitTokens(
      ref,
      batch.map((m) => ({ id: m.id, tokens: tokensEach })),
      TTL,
    );

  it('replaces the log atomically and keeps a TTL on every family', async () => {
    await store.append(ref, messages(3), TTL);
    const replacement = messages(2, 'Replacement');
    const written = await store.write(ref, replacement, TTL);
    expect(written.messageCount).toBe(2);
    const window = await store.read(ref);
    expect(window.messages.map((m) => m.message.content)).toEqual([
      'Replacement 1',
      'Replacement 2',
    ]);
    expect(window).toMatchObject({ total: 2, messageCount: 2, tokenCount: 0, exact: false });
    const k = memoryKeys(ns.keyPrefix, ref);
    for (const key of [k.ord, k.msg, k.unc, k.meta, k.seen])
      expect(await ns.redis.ttl(key), key).toBeGreaterThan(TTL - 10);
    expect((await store.stats(ref)).consistent).toBe(true);
  });

  it('slides the TTL back to full on the next append', async () => {
    await store.append(ref, messages(1), TTL);
    const k = memoryKeys(ns.keyPrefix, ref);
    for (const key of [k.ord, k.msg, k.meta, k.seen]) await ns.redis.expire(key, 100);
    await store.append(ref, messages(1), TTL);
    for (const key of [k.ord, k.msg, k.meta, k.seen])
      expect(await ns.redis.ttl(key), key).toBeGreaterThan(TTL - 10);
  });

  it('keeps counters exact after append, count, flush, write, clear and delete', async () => {
    const batch = messages(10);
    const expectConsistent = async (messagesInLog: number, tokens: number) => {
      const stats = await store.stats(ref);
      expect(stats.messageCount).toBe(messagesInLog);
      expect(stats.countedMessages).toBe(messagesInLog);
      expect(stats.tokenCount).toBe(tokens);
      expect(stats.consistent).toBe(true);
    };
    await store.append(ref, batch, TTL);
    await expectConsistent(10, 0);
    await countAll(batch);
    await expectConsistent(10, 100);
    await ns.redis.set(lockKey, 'token-1');
    const { epoch } = await store.read(ref);
    await store.applyFlush(
      ref,
      {
        lockToken: 'token-1',
        epoch,
        foldedIds: batch.slice(0, 4).map((m) => m.id),
        evictedIds: [batch[4]!.id],
        summary: summaryThrough(batch[3]!.id, 4, 25),
      },
      TTL,
    );
    await expectConsistent(5, 50 + 25);
    const stats = await store.stats(ref);
    expect(stats).toMatchObject({
      acceptedCount: 10,
      foldedCount: 4,
      evictedCount: 1,
      summaryTokens: 25,
      watermark: batch[3]!.id,
      epoch: epoch + 1,
    });
    await store.write(ref, messages(3), TTL);
    await expectConsistent(3, 0);
    expect(await store.clear(ref)).toMatchObject({ removed: 3 });
    await expectConsistent(0, 0);
    await store.append(ref, messages(2), TTL);
    expect(await store.delete(ref)).toMatchObject({ removed: 2 });
    expect((await store.stats(ref)).exists).toBe(false);
    const k = memoryKeys(ns.keyPrefix, ref);
    expect(await ns.redis.exists(k.ord, k.msg, k.tok, k.unc, k.meta, k.seen)).toBe(0);
  });

  it('rejects a write with repeated ids before touching anything', async () => {
    await store.append(ref, messages(2), TTL);
    const [a, b] = messages(2);
    await expect(store.write(ref, [a!, b!, a!], TTL)).rejects.toThrow(
      `write: message ids must be unique; repeated: ${a!.id}`,
    );
    expect((await store.read(ref)).total).toBe(2);
  });

  it('rejects a flush commit with a malformed summary before touching anything', async () => {
    const batch = messages(3);
    await store.append(ref, batch, TTL);
    await ns.redis.set(lockKey, 't');
    const bad = { ...summaryThrough(batch[0]!.id, 1), tokens: 2.5 };
    await expect(
      store.applyFlush(
        ref,
        { lockToken: 't', epoch: 0, foldedIds: [batch[0]!.id], evictedIds: [], summary: bad },
        TTL,
      ),
    ).rejects.toThrow();
    expect((await store.stats(ref, { deep: true })).consistent).toBe(true);
    expect((await store.read(ref)).total).toBe(3);
  });

  it('a cleared message cannot come back through a late retry', async () => {
    const batch = messages(2);
    await store.append(ref, batch, TTL);
    await store.clear(ref);
    expect(await store.append(ref, batch, TTL)).toMatchObject({ added: 0, duplicates: 2 });
  });

  it('rejects a flush with a stale lock token and changes nothing', async () => {
    const batch = messages(6);
    await store.append(ref, batch, TTL);
    await countAll(batch);
    await ns.redis.set(lockKey, 'someone-else');
    const before = await snapshot(store);
    await expect(
      store.applyFlush(
        ref,
        { lockToken: 'my-old-token', epoch: 0, foldedIds: [], evictedIds: [batch[0]!.id] },
        TTL,
      ),
    ).rejects.toThrow(/lock is no longer held/);
    expect(await snapshot(store)).toEqual(before);
    await ns.redis.del(lockKey);
    await expect(
      store.applyFlush(
        ref,
        { lockToken: 'my-old-token', epoch: 0, foldedIds: [], evictedIds: [batch[0]!.id] },
        TTL,
      ),
    ).rejects.toThrow(/lock is no longer held/);
    expect(await snapshot(store)).toEqual({ ...before, locked: false });
  });

  it('rejects a flush planned before a write or clear (stale epoch) and changes nothing', async () => {
    const batch = messages(6);
    await store.append(ref, batch, TTL);
    const planned = await store.read(ref);
    await store.clear(ref);
    const kept = messages(2);
    await store.append(ref, kept, TTL);
    await ns.redis.set(lockKey, 't');
    const before = await snapshot(store);
    await expect(
      store.applyFlush(
        ref,
        { lockToken: 't', epoch: planned.epoch, foldedIds: [], evictedIds: kept.map((m) => m.id) },
        TTL,
      ),
    ).rejects.toThrow(/epoch changed from 0 to 1/);
    expect(await snapshot(store)).toEqual(before);
    expect((await store.read(ref)).total).toBe(2);
  });

  it('rejects folding a message above the summary watermark', async () => {
    const batch = messages(3);
    await store.append(ref, batch, TTL);
    await ns.redis.set(lockKey, 't');
    await expect(
      store.applyFlush(
        ref,
        {
          lockToken: 't',
          epoch: 0,
          foldedIds: [batch[2]!.id],
          evictedIds: [],
          summary: summaryThrough(batch[1]!.id, 1),
        },
        TTL,
      ),
    ).rejects.toThrow(/INVALID_PLAN: folded id above the watermark/);
    expect((await store.read(ref)).total).toBe(3);
  });

  it('keeps every message appended while a flush is planned and committed', async () => {
    const old = messages(20, 'old');
    await store.append(ref, old, TTL);
    await countAll(old);
    await ns.redis.set(lockKey, 'flush-token');
    const planned = await store.read(ref, { limit: 1000 });
    const folded = planned.messages.slice(0, 15).map((m) => m.message.id);
    const fresh = messages(30, 'fresh');
    const appends = fresh.map(
      (m, i) =>
        new Promise<void>((resolve) =>
          setTimeout(() => void store.append(ref, [m], TTL).then(() => resolve()), i % 5),
        ),
    );
    const commit = store.applyFlush(
      ref,
      {
        lockToken: 'flush-token',
        epoch: planned.epoch,
        foldedIds: folded,
        evictedIds: [],
        summary: summaryThrough(folded.at(-1)!, 15),
      },
      TTL,
    );
    await Promise.all([...appends, commit]);
    const window = await store.read(ref, { limit: 1000 });
    expect(window.messages.map((m) => m.message.id)).toEqual(
      [...old.slice(15), ...fresh].map((m) => m.id),
    );
    expect(window.summary?.covers_through_id).toBe(folded.at(-1));
    const stats = await store.stats(ref);
    expect(stats).toMatchObject({
      messageCount: 35,
      countedMessages: 35,
      acceptedCount: 50,
      foldedCount: 15,
      consistent: true,
    });
  });

  it('stores exactly the unique messages, in id order, from 16 concurrent writers resubmitting duplicates', async () => {
    const all = messages(16 * 200);
    const writers = Array.from({ length: 16 }, (_, w) => all.filter((_, i) => i % 16 === w));
    const writerStores = writers.map(() =>
      createMemoryStore({ redis: ns.connect(), keyPrefix: ns.keyPrefix }),
    );
    await Promise.all(
      writers.map(async (own, w) => {
        for (let i = 0; i < own.length; i += 1) {
          const batch = [own[i]!];
          // Random resubmits: of this writer's earlier messages and of other writers' messages.
          if (Math.random() < 0.3 && i > 0) batch.push(own[Math.floor(Math.random() * i)]!);
          if (Math.random() < 0.2) batch.push(all[Math.floor(Math.random() * all.length)]!);
          batch.sort((a, b) => (a.id < b.id ? -1 : 1));
          const unique = batch.filter((m, j) => j === 0 || m.id !== batch[j - 1]!.id);
          await writerStores[w]!.append(ref, unique, TTL);
        }
      }),
    );
    const ids: string[] = [];
    for (let offset = 0; ; offset += 1000) {
      const page = await store.read(ref, { offset, limit: 1000 });
      ids.push(...page.messages.map((m) => m.message.id));
      if (!page.hasMore) break;
    }
    expect(ids).toEqual(all.map((m) => m.id));
    const stats = await store.stats(ref);
    expect(stats).toMatchObject({
      messageCount: 3200,
      countedMessages: 3200,
      acceptedCount: 3200,
      consistent: true,
    });
  });

  it('reports stats with role counts, lock state and TTL', async () => {
    await store.append(
      ref,
      [
        ...messages(3),
        { id: nextId(), role: 'system', content: 's', created_at: new Date().toISOString() },
      ],
      TTL,
    );
    await ns.redis.set(lockKey, 'x');
    const stats = await store.stats(ref, { deep: true });
    expect(stats.roles).toEqual({ user: 2, assistant: 1, system: 1 });
    expect(stats.locked).toBe(true);
    expect(stats.ttlSeconds).toBeGreaterThan(TTL - 10);
    expect((await store.health(ref)).healthy).toBe(true);
    expect((await store.stats({ ...ref, key: 'nothing-here' })).exists).toBe(false);
  });
});
