import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PayloadError } from '../../src/core/errors.js';
import type { Message } from '../../src/core/message.js';
import { indexKey, memoryId, memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import {
  MAX_DATA_ENTRIES,
  MAX_DATA_KEY_CHARS,
  MAX_DATA_VALUE_BYTES,
  createMemoryStore,
  type MemoryStore,
} from '../../src/store/memory-store.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const ref: MemoryRef = { project: 'p1', resource: 'agent-memory', key: 'agent:data' };
const TTL = 3600;

function messages(n: number): Message[] {
  return Array.from({ length: n }, (_, i) => ({
    id: nextId(),
    role: 'user' as const,
    content: `message ${i + 1}`,
    created_at: new Date().toISOString(),
  }));
}

describe('session data on real Redis', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;
  let clock: number;
  const dataKey = () => memoryKeys(ns.keyPrefix, ref).data;

  beforeEach(() => {
    ns = createRedisNamespace();
    clock = Date.now();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix, now: () => clock });
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  it('reads back what was put; a put replaces the whole map and an empty put deletes it', async () => {
    expect(await store.getData(ref)).toEqual({});
    await store.putData(ref, { locale: 'fr-FR', task: 'refund #42', empty: '' }, TTL);
    expect(await store.getData(ref)).toEqual({ locale: 'fr-FR', task: 'refund #42', empty: '' });
    await store.putData(ref, { task: 'closed' }, TTL);
    expect(await store.getData(ref)).toEqual({ task: 'closed' });

    // Keys are data, never object machinery.
    const tricky = JSON.parse('{"__proto__": "x", "constructor": "y"}') as Record<string, string>;
    await store.putData(ref, tricky, TTL);
    const read = await store.getData(ref);
    expect(Object.keys(read).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getPrototypeOf(read)).toBe(Object.prototype);
    expect(read.__proto__).toBe('x');

    await store.putData(ref, {}, TTL);
    expect(await store.getData(ref)).toEqual({});
    expect(await ns.redis.exists(dataKey())).toBe(0);
  });

  it('refuses data over the limits before writing anything, naming the field', async () => {
    await store.putData(ref, { kept: 'yes' }, TTL);
    const refused = async (entries: unknown, ttl = TTL) => {
      const error = await store
        .putData(ref, entries as Record<string, string>, ttl)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PayloadError);
      return (error as PayloadError).message;
    };
    const many = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    expect(await refused(many(MAX_DATA_ENTRIES + 1))).toMatch(/^data: expected at most 64 entries/);
    expect(await refused({ ['k'.repeat(MAX_DATA_KEY_CHARS + 1)]: 'v' })).toMatch(
      /^data: entry key .*expected 1-128 characters, got 129/,
    );
    expect(await refused({ '': 'v' })).toMatch(/^data: entry key "": expected 1-128 characters/);
    // 2,049 two-byte characters: 4,098 UTF-8 bytes, though only 2,049 characters.
    expect(await refused({ note: 'é'.repeat(MAX_DATA_VALUE_BYTES / 2 + 1) })).toMatch(
      /^data\.note: expected at most 4096 UTF-8 bytes, got 4098/,
    );
    expect(await refused({ n: 42 })).toMatch(/^data\.n: expected a string, got number/);
    expect(await refused(['a'])).toMatch(/^data: expected an object/);
    expect(await refused(null)).toMatch(/^data: expected an object/);
    expect(await refused({ ok: 'v' }, -1)).toMatch(/ttlSeconds/);
    expect(await store.getData(ref)).toEqual({ kept: 'yes' });

    // At the bounds: accepted.
    const atBounds = {
      ...many(MAX_DATA_ENTRIES - 1),
      ['k'.repeat(MAX_DATA_KEY_CHARS)]: 'é'.repeat(MAX_DATA_VALUE_BYTES / 2),
    };
    await store.putData(ref, atBounds, TTL);
    expect(await store.getData(ref)).toEqual(atBounds);
  });

  it('takes the TTL given, slides with appends, and never outlives the end of the instance lifetime', async () => {
    await store.putData(ref, { a: '1' }, 100);
    expect(await ns.redis.ttl(dataKey())).toBeGreaterThan(90);
    expect(await ns.redis.ttl(dataKey())).toBeLessThanOrEqual(100);
    await store.append(ref, messages(1), TTL);
    expect(await ns.redis.ttl(dataKey())).toBeGreaterThan(TTL - 10);

    // With a lifetime: capped at meta.expires_at, whatever the TTL.
    const other: MemoryRef = { ...ref, key: 'agent:lifetime' };
    await store.append(other, messages(1), TTL, { expirationSeconds: 60 });
    const expiresAt = Number(
      await ns.redis.hget(memoryKeys(ns.keyPrefix, other).meta, 'expires_at'),
    );
    await store.putData(other, { a: '1' }, TTL);
    const dataExpiry = await ns.redis.pexpiretime(memoryKeys(ns.keyPrefix, other).data);
    expect(dataExpiry).toBeGreaterThan(0);
    expect(dataExpiry).toBeLessThanOrEqual(expiresAt);

    // TTL 0: never expires.
    const forever: MemoryRef = { ...ref, key: 'agent:forever' };
    await store.putData(forever, { a: '1' }, 0);
    expect(await ns.redis.ttl(memoryKeys(ns.keyPrefix, forever).data)).toBe(-1);
  });

  it('a put on an instance past its lifetime starts a new instance', async () => {
    await store.append(ref, messages(2), TTL, { expirationSeconds: 60 });
    clock += 61_000; // past the end of the lifetime; Redis has not expired the keys yet
    await store.putData(ref, { fresh: 'yes' }, TTL);
    const stats = await store.stats(ref);
    expect(stats.messageCount).toBe(0);
    expect(stats.dataEntries).toBe(1);
    expect(await store.getData(ref)).toEqual({ fresh: 'yes' });
    expect(await ns.redis.ttl(dataKey())).toBeGreaterThan(TTL - 10);
  });

  it('a clear keeps it, a delete removes it', async () => {
    await store.append(ref, messages(3), TTL);
    clock += 1;
    await store.putData(ref, { locale: 'de' }, TTL);
    clock += 1;
    await store.clear(ref, { requestedAtMs: clock });
    expect((await store.read(ref)).total).toBe(0);
    expect(await store.getData(ref)).toEqual({ locale: 'de' });

    clock += 1;
    await store.delete(ref, { requestedAtMs: clock });
    expect(await store.getData(ref)).toEqual({});
    expect((await store.stats(ref)).exists).toBe(false);
  });

  it('a delete requested before a put and run after it keeps the newer data and the instance indexed', async () => {
    await store.append(ref, messages(2), TTL);
    await store.touchIndex(ref, clock);
    const requestedAtMs = clock; // the delete is enqueued ...
    clock += 5;
    await store.putData(ref, { after: 'the delete was asked for' }, TTL); // ... a put lands ...
    await store.delete(ref, { requestedAtMs }); // ... then the delete job runs

    expect(await store.getData(ref)).toEqual({ after: 'the delete was asked for' });
    const stats = await store.stats(ref);
    expect(stats).toMatchObject({ exists: true, messageCount: 0, dataEntries: 1 });
    expect(await ns.redis.zscore(indexKey(ns.keyPrefix, ref), memoryId(ref))).not.toBeNull();
    const listed = await store.listInstances('p1', 'agent-memory', { limit: 10 });
    expect(listed.items.map((item) => [item.key, item.messageCount])).toEqual([[ref.key, 0]]);

    // A delete requested at the put's millisecond or later removes it (erasure wins a tie).
    await store.delete(ref, { requestedAtMs: clock });
    expect(await store.getData(ref)).toEqual({});
    expect((await store.stats(ref)).exists).toBe(false);
    expect(await ns.redis.zscore(indexKey(ns.keyPrefix, ref), memoryId(ref))).toBeNull();
    expect((await store.listInstances('p1', 'agent-memory', { limit: 10 })).items).toEqual([]);
  });

  it('an instance holding only session data exists, is listed with 0 messages and survives the sweep', async () => {
    await store.putData(ref, { a: '1', b: '2' }, TTL);
    expect(await store.stats(ref)).toMatchObject({
      exists: true,
      messageCount: 0,
      tokenCount: 0,
      dataEntries: 2,
      consistent: true,
    });
    expect(await store.listInstances('p1', 'agent-memory', { limit: 10 })).toEqual({
      items: [{ key: ref.key, messageCount: 0, tokens: 0, lastActivityMs: clock, exact: true }],
      nextCursor: undefined,
    });
    const maintenance = createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    expect(await maintenance.dropStaleIndexEntry(ref)).toBe(false);
    expect((await store.listInstances('p1', 'agent-memory', { limit: 10 })).items).toHaveLength(1);

    // Appending to it makes an ordinary instance; the data stays.
    await store.append(ref, messages(1), TTL);
    expect(await store.getData(ref)).toEqual({ a: '1', b: '2' });
    expect((await store.stats(ref)).messageCount).toBe(1);
  });
});
