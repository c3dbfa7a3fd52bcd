import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PayloadError } from '../../src/core/errors.js';
import type { Message } from '../../src/core/message.js';
import { indexKey, memoryId, memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import {
  MAX_DATA_ENTRIES,
  MAX_DATA_KEY_CHARS,
  MAX_STORED_DATA_VALUE_BYTES,
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
    // Entries are named by position, never by key: a key is data too.
    const longKey = `jane.doe@example.com${'k'.repeat(MAX_DATA_KEY_CHARS)}`;
    const longKeyError = await refused({ ok: 'v', [longKey]: 'v' });
    expect(longKeyError).toMatch(/^data\[1\]: the key: expected 1-128 characters, got 148/);
    expect(longKeyError).not.toContain('jane');
    expect(await refused({ '': 'v' })).toMatch(/^data\[0\]: the key: expected 1-128 characters/);
    // Values after the privacy policy may be longer than what a caller sends (4096 bytes), up
    // to the stored bound; 32,769 two-byte characters are one byte over it.
    const overStored = await refused({
      'jane.doe@example.com': 'é'.repeat(MAX_STORED_DATA_VALUE_BYTES / 2 + 1),
    });
    expect(overStored).toMatch(
      /^data\[0\]: the value: expected at most 65536 UTF-8 bytes, got 65538/,
    );
    expect(overStored).not.toContain('jane');
    expect(await refused({ a: 'x', 'jane.doe@example.com': 42 })).toBe(
      'data[1]: the value: expected a string, got number',
    );
    expect(await refused(['a'])).toMatch(/^data: expected an object/);
    expect(await refused(null)).toMatch(/^data: expected an object/);
    expect(await refused({ ok: 'v' }, -1)).toMatch(/ttlSeconds/);
    expect(await store.getData(ref)).toEqual({ kept: 'yes' });

    // At the bounds: accepted (a value as long as the privacy policy may make it).
    const atBounds = {
      ...many(MAX_DATA_ENTRIES - 1),
      ['k'.repeat(MAX_DATA_KEY_CHARS)]: 'é'.repeat(MAX_STORED_DATA_VALUE_BYTES / 2),
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
  it('a put that starts an instance starts its lifetime: the data ends with it, even with ttl 0', async () => {
    const meta = () => memoryKeys(ns.keyPrefix, ref).meta;
    await store.putData(ref, { locale: 'fr' }, 0, { expirationSeconds: 60 });
    expect(await ns.redis.hmget(meta(), 'created_at', 'expires_at')).toEqual([
      String(clock),
      String(clock + 60_000),
    ]);
    expect(await ns.redis.pexpiretime(dataKey())).toBe(clock + 60_000);
    expect(await ns.redis.pexpiretime(meta())).toBe(clock + 60_000);
    // A later put keeps the end the instance has (a put is not a new lifetime).
    clock += 30_000;
    await store.putData(ref, { locale: 'de' }, 0, { expirationSeconds: 60 });
    expect(await ns.redis.pexpiretime(dataKey())).toBe(clock - 30_000 + 60_000);
    // An append to it keeps that end too: the lifetime began with the put.
    await store.append(ref, messages(1), 0, { expirationSeconds: 60 });
    expect(await ns.redis.pexpiretime(memoryKeys(ns.keyPrefix, ref).ord)).toBe(
      clock - 30_000 + 60_000,
    );
  });

  it('data put after a delete gets the lifetime of the instance it starts', async () => {
    await store.append(ref, messages(2), 0, { expirationSeconds: 60 });
    clock += 1;
    await store.delete(ref, { requestedAtMs: clock });
    clock += 1;
    await store.putData(ref, { after: 'the delete' }, 0, { expirationSeconds: 60 });
    expect(await ns.redis.pexpiretime(dataKey())).toBe(clock + 60_000);
  });

  it('a put every hour never keeps session data past the expiration (ttl 1h, expiration 24h)', async () => {
    const HOUR = 3_600_000;
    // The instance's clock starts 23 h 50 min in the past, so its end (created + 24 h) is 10
    // minutes from Redis's now: a cap below the 1 h TTL, which Redis shows.
    clock = Date.now() - 24 * HOUR + 10 * 60_000;
    const end = clock + 24 * HOUR;
    for (let put = 0; put < 24; put++) {
      await store.putData(ref, { step: String(put) }, 3600, { expirationSeconds: 86_400 });
      expect(await ns.redis.pexpiretime(dataKey())).toBe(end);
      clock += HOUR - 60_000;
    }
    // Past the end: the next put starts a new instance, with a new end.
    clock = end;
    await store.putData(ref, { step: 'new' }, 3600, { expirationSeconds: 86_400 });
    expect(await ns.redis.hget(memoryKeys(ns.keyPrefix, ref).meta, 'expires_at')).toBe(
      String(end + 24 * HOUR),
    );
    expect(await store.getData(ref)).toEqual({ step: 'new' });
  });

  it('a put is activity: the log and the map take the same TTL, so they expire together', async () => {
    await store.append(ref, messages(2), 100);
    await store.putData(ref, { a: '1' }, TTL);
    const k = memoryKeys(ns.keyPrefix, ref);
    for (const key of [k.ord, k.msg, k.meta, k.seen, k.data]) {
      expect(await ns.redis.ttl(key), key).toBeGreaterThan(TTL - 10);
    }
  });

  it('an empty put on an instance holding only session data removes the instance', async () => {
    await store.putData(ref, { a: '1' }, TTL, { expirationSeconds: 60 });
    expect((await store.stats(ref)).exists).toBe(true);
    await store.putData(ref, {}, TTL, { expirationSeconds: 60 });
    expect((await store.stats(ref)).exists).toBe(false);
    expect(await ns.redis.exists(memoryKeys(ns.keyPrefix, ref).meta)).toBe(0);

    // An instance with a log keeps its meta (and its counters).
    await store.append(ref, messages(1), TTL);
    await store.putData(ref, { a: '1' }, TTL);
    await store.putData(ref, {}, TTL);
    expect(await store.stats(ref)).toMatchObject({ exists: true, messageCount: 1 });
  });

  it('refuses an expirationSeconds that is not an integer >= 0, before writing anything', async () => {
    await expect(store.putData(ref, { a: '1' }, TTL, { expirationSeconds: -1 })).rejects.toThrow(
      /putData: expirationSeconds/,
    );
    expect((await store.stats(ref)).exists).toBe(false);
  });

  it('writes the index entries before the data: a put lost half-way leaves entries the sweep removes, never unindexed data', async () => {
    // Real Redis; the put's script call fails as if the connection dropped just before it.
    const lost = new Proxy(ns.redis, {
      get(target, name) {
        if (name === 'memqPutData') {
          return () => Promise.reject(new Error('Connection is closed.'));
        }
        const value: unknown = Reflect.get(target, name, target);
        return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
      },
    });
    const failing = createMemoryStore({ redis: lost, keyPrefix: ns.keyPrefix, now: () => clock });
    await expect(failing.putData(ref, { a: '1' }, TTL)).rejects.toThrow('Connection is closed.');
    expect(await ns.redis.zscore(indexKey(ns.keyPrefix, ref), memoryId(ref))).toBe(String(clock));
    const maintenance = createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    expect(await maintenance.dropStaleIndexEntry(ref)).toBe(true);
    expect((await store.listInstances('p1', 'agent-memory', { limit: 10 })).items).toEqual([]);
  });

  it('a delete that runs between the index writes and the script leaves the new data indexed', async () => {
    await store.append(ref, messages(1), TTL);
    await store.touchIndex(ref, clock);
    const requestedAtMs = clock;
    clock += 5;
    const racing = new Proxy(ns.redis, {
      get(target, name) {
        if (name === 'memqPutData') {
          return async (...args: (string | number)[]) => {
            await store.delete(ref, { requestedAtMs }); // removes both index entries
            return (target as unknown as Record<string, (...a: unknown[]) => unknown>)[
              'memqPutData'
            ]!(...args);
          };
        }
        const value: unknown = Reflect.get(target, name, target);
        return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
      },
    });
    const putting = createMemoryStore({ redis: racing, keyPrefix: ns.keyPrefix, now: () => clock });
    await putting.putData(ref, { after: 'the delete was asked for' }, TTL);
    expect(await store.getData(ref)).toEqual({ after: 'the delete was asked for' });
    const listed = await store.listInstances('p1', 'agent-memory', { limit: 10 });
    expect(listed.items.map((item) => [item.key, item.messageCount])).toEqual([[ref.key, 0]]);
  });
});
