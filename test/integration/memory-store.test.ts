import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { monotonicFactory } from 'ulid';
import type { Message } from '../../src/core/message.js';
import { estimateTokens } from '../../src/tokens/counter.js';
import { memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/memory-store.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const ref: MemoryRef = { project: 'p1', resource: 'customer-support', key: 'support:42' };

function messages(n: number, role: Message['role'] = 'user'): Message[] {
  return Array.from({ length: n }, (_, i) => ({
    id: nextId(),
    role: i % 2 === 0 ? role : 'assistant',
    content: `Message ${i + 1}`,
    created_at: new Date().toISOString(),
  }));
}

describe('MemoryStore on real Redis', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;

  beforeEach(() => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  it('reads back appended messages with the same order, role and content', async () => {
    const batch = [
      {
        id: nextId(),
        role: 'system' as const,
        content: 'You are helpful.',
        created_at: new Date().toISOString(),
      },
      {
        id: nextId(),
        role: 'user' as const,
        content: 'Hello',
        created_at: new Date().toISOString(),
      },
      {
        id: nextId(),
        role: 'assistant' as const,
        content: 'Hi! How can I help?',
        created_at: new Date().toISOString(),
      },
    ];
    const result = await store.append(ref, batch, 3600);
    expect(result).toEqual({
      added: 3,
      duplicates: 0,
      needsTokenCount: true,
      messageCount: 3,
      erased: 0,
    });
    const window = await store.read(ref);
    expect(window.messages.map((m) => m.message)).toEqual(batch);
    expect(window.total).toBe(3);
    expect(window.messageCount).toBe(3);
    expect(window.estimatedTokens).toBe(batch.reduce((s, m) => s + estimateTokens(m), 0));
    expect(window.exact).toBe(false);
  });

  it('stores a resubmitted message id once and reports it as a duplicate', async () => {
    const batch = messages(4);
    await store.append(ref, batch, 3600);
    const again = await store.append(ref, [batch[1]!, batch[3]!, ...messages(1)], 3600);
    expect(again.added).toBe(1);
    expect(again.duplicates).toBe(2);
    const window = await store.read(ref);
    expect(window.total).toBe(5);
    expect(window.messageCount).toBe(5);
    expect(window.acceptedCount).toBe(5);
  });

  it('treats an id at or below the watermark as a duplicate once it was accepted', async () => {
    const [folded, fresh] = messages(2);
    await store.append(ref, [folded!], 3600);
    await ns.redis.hset(memoryKeys(ns.keyPrefix, ref).meta, 'watermark', folded!.id);
    await ns.redis.zrem(memoryKeys(ns.keyPrefix, ref).ord, folded!.id); // as a flush would
    expect(await store.append(ref, [folded!, fresh!], 3600)).toMatchObject({
      added: 1,
      duplicates: 1,
    });
  });

  it('stores a late first-time id below the watermark instead of dropping it', async () => {
    const [late, folded] = messages(2);
    await ns.redis.hset(memoryKeys(ns.keyPrefix, ref).meta, 'watermark', folded!.id);
    expect(await store.append(ref, [late!], 3600)).toMatchObject({ added: 1, duplicates: 0 });
    expect((await store.read(ref)).messages.map((m) => m.message.id)).toEqual([late!.id]);
  });

  it('treats an id below the watermark and older than the pruned idempotency window as a duplicate', async () => {
    const [old, folded] = messages(2);
    const meta = memoryKeys(ns.keyPrefix, ref).meta;
    await ns.redis.hset(
      meta,
      'watermark',
      folded!.id,
      'seen_floor_ms',
      String(Date.now() + 60_000),
    );
    expect(await store.append(ref, [old!], 3600)).toMatchObject({ added: 0, duplicates: 1 });
  });

  it('keeps the log in id order whatever order batches commit in', async () => {
    const batch = messages(30);
    const shuffled = [...batch].sort(() => Math.random() - 0.5);
    await Promise.all(shuffled.map((m) => store.append(ref, [m], 3600)));
    const window = await store.read(ref, { limit: 100 });
    expect(window.messages.map((m) => m.message.id)).toEqual(batch.map((m) => m.id));
    expect(window.messageCount).toBe(30);
  });

  it('paginates with total and has_more, including an offset past the end', async () => {
    const batch = messages(10);
    await store.append(ref, batch, 3600);
    const contents = async (offset: number, limit: number) => {
      const w = await store.read(ref, { offset, limit });
      return {
        contents: w.messages.map((m) => m.message.content),
        total: w.total,
        hasMore: w.hasMore,
      };
    };
    expect(await contents(0, 3)).toEqual({
      contents: ['Message 1', 'Message 2', 'Message 3'],
      total: 10,
      hasMore: true,
    });
    expect(await contents(3, 3)).toEqual({
      contents: ['Message 4', 'Message 5', 'Message 6'],
      total: 10,
      hasMore: true,
    });
    expect(await contents(8, 5)).toEqual({
      contents: ['Message 9', 'Message 10'],
      total: 10,
      hasMore: false,
    });
    expect(await contents(15, 5)).toEqual({ contents: [], total: 10, hasMore: false });
  });

  it('reads a missing instance as empty with zero counts', async () => {
    const window = await store.read({ ...ref, key: 'never-written' });
    expect(window).toMatchObject({
      messages: [],
      total: 0,
      messageCount: 0,
      tokenCount: 0,
      estimatedTokens: 0,
      exact: true,
    });
  });

  it('slides the TTL of every key family on append, and sets none for ttl 0', async () => {
    await store.append(ref, messages(2), 120);
    await store.commitTokens(ref, [], 120);
    const k = memoryKeys(ns.keyPrefix, ref);
    for (const key of [k.ord, k.msg, k.unc, k.meta, k.seen]) {
      const ttl = await ns.redis.ttl(key);
      expect(ttl, key).toBeGreaterThan(100);
      expect(ttl, key).toBeLessThanOrEqual(120);
    }
    const forever = { ...ref, key: 'forever' };
    await store.append(forever, messages(1), 0);
    const f = memoryKeys(ns.keyPrefix, forever);
    for (const key of [f.ord, f.msg, f.meta, f.seen]) expect(await ns.redis.ttl(key), key).toBe(-1);
  });

  it('commits exact token counts only for ids still uncounted and present', async () => {
    const batch = messages(3);
    await store.append(ref, batch, 3600);
    const first = await store.commitTokens(
      ref,
      [
        { id: batch[0]!.id, tokens: 11 },
        { id: batch[1]!.id, tokens: 7 },
      ],
      3600,
    );
    expect(first).toEqual({
      committed: 2,
      tokenCount: 18,
      estimatedTokens: estimateTokens(batch[2]!),
      messageCount: 3,
    });
    const repeat = await store.commitTokens(ref, [{ id: batch[0]!.id, tokens: 99 }], 3600);
    expect(repeat.committed).toBe(0);
    expect(repeat.tokenCount).toBe(18);
    const unknown = await store.commitTokens(ref, [{ id: nextId(), tokens: 5 }], 3600);
    expect(unknown.committed).toBe(0);
    const window = await store.read(ref);
    expect(window.messages.map((m) => m.tokens)).toEqual([11, 7, undefined]);
    expect((await store.uncounted(ref, 10)).messages.map((m) => m.id)).toEqual([batch[2]!.id]);
  });

  it('opens one token-count burst per pending window', async () => {
    expect((await store.append(ref, messages(1), 3600)).needsTokenCount).toBe(true);
    expect((await store.append(ref, messages(1), 3600)).needsTokenCount).toBe(false);
    // Reading the uncounted messages leaves the burst open unless the reader takes it.
    expect((await store.uncounted(ref, 10)).scanned).toBe(2);
    expect((await store.append(ref, messages(1), 3600)).needsTokenCount).toBe(false);
    const taken = await store.uncounted(ref, 10, { takeBurst: true });
    expect(taken.messages).toHaveLength(3);
    expect((await store.append(ref, messages(1), 3600)).needsTokenCount).toBe(true);
    expect((await store.append(ref, messages(1), 3600)).needsTokenCount).toBe(false);
    await expect(store.uncounted(ref, 0)).rejects.toThrow(/max: expected an integer >= 1, got 0/);
  });

  it('keeps instances of different keys and projects apart', async () => {
    await store.append(ref, messages(2), 3600);
    await store.append({ ...ref, project: 'p2' }, messages(1), 3600);
    await store.append({ ...ref, key: 'support:43' }, messages(3), 3600);
    expect((await store.read(ref)).total).toBe(2);
    expect((await store.read({ ...ref, project: 'p2' })).total).toBe(1);
    expect((await store.read({ ...ref, key: 'support:43' })).total).toBe(3);
  });
});
