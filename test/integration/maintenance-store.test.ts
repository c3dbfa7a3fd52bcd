import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { monotonicFactory, ulid } from 'ulid';
import { PayloadError } from '../../src/core/errors.js';
import type { Message } from '../../src/core/message.js';
import {
  indexKey,
  indexShardKey,
  memoryId,
  memoryKeys,
  type MemoryRef,
} from '../../src/redis/keys.js';
import {
  createMaintenanceStore,
  SCAN_DONE,
  type IndexEntry,
  type MaintenanceStore,
} from '../../src/store/maintenance-store.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/memory-store.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const ref: MemoryRef = { project: 'p1', resource: 'customer-support', key: 'support:42' };
const MINUTE = 60_000;
/** How the approximate counts below were made (as `approximationOf` names one). */
const APPROXIMATION = 'o200k_base (approximation for claude-sonnet-4-5)';

function message(id: string = nextId(), content = `Message ${id}`): Message {
  return { id, role: 'user', content, created_at: new Date().toISOString() };
}

function messages(n: number): Message[] {
  return Array.from({ length: n }, () => message());
}

describe('MaintenanceStore on real Redis', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;
  let maintenance: MaintenanceStore;

  beforeEach(() => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    maintenance = createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  /**
   * An instance with counted (exact, and approximate: the 2nd and 4th) and uncounted messages and
   * a summary from a real flush, which folds the 2nd: 1 approximate message of 13 tokens stays.
   */
  async function realisticInstance(): Promise<Message[]> {
    const batch = messages(8);
    await store.append(ref, batch, 3600);
    await store.commitTokens(
      ref,
      batch.slice(0, 5).map((m, i) => ({
        id: m.id,
        tokens: 10 + i,
        ...(i % 2 === 1 ? { approximatedBy: APPROXIMATION } : {}),
      })),
      3600,
    );
    const k = memoryKeys(ns.keyPrefix, ref);
    await ns.redis.set(k.lock, 'flush-token', 'PX', 60_000);
    const { epoch } = await store.read(ref);
    await store.applyFlush(
      ref,
      {
        lockToken: 'flush-token',
        epoch,
        foldedIds: [batch[0]!.id, batch[1]!.id],
        evictedIds: [],
        summary: {
          content: 'The user said hello twice.',
          tokens: 7,
          covers_through_id: batch[1]!.id,
          message_count_covered: 2,
          updated_at: new Date().toISOString(),
        },
      },
      3600,
    );
    await ns.redis.del(k.lock);
    return batch;
  }

  /**
   * Every key of the namespace with its value, hashes as objects: a hash in Redis's hashtable
   * encoding may list its fields in another order after a read (incremental rehashing), so
   * "unchanged" compares fields, not HGETALL's order.
   */
  async function contents(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const key of (await ns.keys()).sort()) {
      const type = await ns.redis.type(key);
      out[key] =
        type === 'hash'
          ? await ns.redis.hgetall(key)
          : type === 'zset'
            ? await ns.redis.zrange(key, '0', '-1', 'WITHSCORES')
            : type === 'string'
              ? await ns.redis.get(key)
              : type;
    }
    return out;
  }

  describe('reconcile', () => {
    it('leaves a consistent instance unchanged and reports no drift', async () => {
      await realisticInstance();
      expect((await store.stats(ref, { deep: true })).consistent).toBe(true);
      const before = await contents();

      const result = await maintenance.reconcile(ref);

      const estimated = (await store.stats(ref)).estimatedTokens;
      expect(estimated).toBeGreaterThan(0);
      expect(result).toEqual({
        exists: true,
        changed: false,
        messageCount: { before: 6, after: 6 },
        tokenCount: { before: 12 + 13 + 14 + 7, after: 12 + 13 + 14 + 7 },
        estimatedTokens: { before: estimated, after: estimated },
        approximateMessages: { before: 1, after: 1 },
        approximateTokens: { before: 13, after: 13 },
        orphansRemoved: { tok: 0, unc: 0, msg: 0 },
        missingBodies: 0,
      });
      expect(await contents()).toEqual(before);
    });

    it('repairs drifted counters and orphaned entries, reports them, and leaves stats consistent', async () => {
      await realisticInstance();
      const k = memoryKeys(ns.keyPrefix, ref);
      const healthy = await store.stats(ref, { deep: true });
      const orphan = nextId();
      await ns.redis.hincrby(k.meta, 'message_count', 3);
      await ns.redis.hset(k.meta, 'token_count', 999);
      await ns.redis.hset(k.tok, orphan, 50, `~${orphan}`, APPROXIMATION);
      await ns.redis.hincrby(k.meta, 'approximate_tokens', 50);
      await ns.redis.hset(k.msg, orphan, JSON.stringify(message(orphan)));
      await ns.redis.zadd(k.unc, 9, nextId());
      await ns.redis.hincrby(k.meta, 'estimated_tokens', 9);
      expect((await store.stats(ref, { deep: true })).consistent).toBe(false);

      const result = await maintenance.reconcile(ref);

      expect(result).toEqual({
        exists: true,
        changed: true,
        messageCount: { before: 9, after: 6 },
        tokenCount: { before: 999, after: healthy.tokenCount },
        estimatedTokens: {
          before: healthy.estimatedTokens + 9,
          after: healthy.estimatedTokens,
        },
        approximateMessages: { before: 1, after: 1 },
        approximateTokens: { before: 63, after: 13 },
        orphansRemoved: { tok: 2, unc: 1, msg: 1 },
        missingBodies: 0,
      });
      const repaired = await store.stats(ref, { deep: true });
      expect(repaired.consistent).toBe(true);
      expect(repaired).toMatchObject({
        countedMessages: 6,
        tokenCount: healthy.tokenCount,
        estimatedTokens: healthy.estimatedTokens,
        approximateTokens: 13,
        approximateMessagesBy: { [APPROXIMATION]: 1 },
        epoch: healthy.epoch,
      });
      expect((await maintenance.reconcile(ref)).changed).toBe(false);
    });

    it('reports log ids whose body is gone without inventing one', async () => {
      const batch = messages(3);
      await store.append(ref, batch, 3600);
      await ns.redis.hdel(memoryKeys(ns.keyPrefix, ref).msg, batch[1]!.id);
      const result = await maintenance.reconcile(ref);
      expect(result).toMatchObject({ changed: false, missingBodies: 1 });
      expect((await store.read(ref)).total).toBe(3);
    });

    it('does not touch or create keys of a missing instance', async () => {
      expect(await maintenance.reconcile(ref)).toMatchObject({ exists: false, changed: false });
      expect(await ns.keys()).toEqual([]);
    });

    it('keeps the TTL of an instance it repairs', async () => {
      await store.append(ref, messages(2), 3600);
      const k = memoryKeys(ns.keyPrefix, ref);
      await ns.redis.hincrby(k.meta, 'message_count', 1);
      await ns.redis.hset(k.tok, nextId(), 5);
      expect((await maintenance.reconcile(ref)).changed).toBe(true);
      expect(await ns.redis.ttl(k.meta)).toBeGreaterThan(3500);
      expect(await ns.redis.exists(k.tok)).toBe(0); // its only field was the orphan
    });
  });

  describe('pruneSeen', () => {
    const t0 = Date.now() - 30 * MINUTE;
    const idAt = (ms: number) => ulid(ms);

    it('prunes only old ids not in the log and raises the floor monotonically', async () => {
      let clock = t0;
      const timed = createMemoryStore({
        redis: ns.redis,
        keyPrefix: ns.keyPrefix,
        now: () => clock,
      });
      const folded = message(idAt(t0));
      const kept = message(idAt(t0 + 1));
      await timed.append(ref, [folded, kept], 3600);
      clock = t0 + 3 * MINUTE;
      const recentFolded = message(idAt(t0 + 3 * MINUTE));
      await timed.append(ref, [recentFolded], 3600);
      const k = memoryKeys(ns.keyPrefix, ref);
      await ns.redis.zrem(k.ord, folded.id, recentFolded.id); // as a flush would

      expect(await maintenance.pruneSeen(ref, t0 + 2 * MINUTE)).toBe(1);
      expect(await ns.redis.zrange(k.seen, '0', '-1')).toEqual([kept.id, recentFolded.id]);
      expect(await ns.redis.hget(k.meta, 'seen_floor_ms')).toBe(String(t0 + 2 * MINUTE));

      expect(await maintenance.pruneSeen(ref, t0 + MINUTE)).toBe(0);
      expect(await ns.redis.hget(k.meta, 'seen_floor_ms')).toBe(String(t0 + 2 * MINUTE));
    });

    it('keeps a folded id older than the floor a duplicate and stores a late first-time id newer than it', async () => {
      const timed = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix, now: () => t0 });
      const folded = message(idAt(t0));
      await timed.append(ref, [folded], 3600);
      const k = memoryKeys(ns.keyPrefix, ref);
      await ns.redis.zrem(k.ord, folded.id);
      await ns.redis.hset(k.meta, 'watermark', idAt(t0 + 5 * MINUTE));

      expect(await maintenance.pruneSeen(ref, t0 + 2 * MINUTE)).toBe(1);
      expect(await ns.redis.zscore(k.seen, folded.id)).toBeNull();

      const late = message(idAt(t0 + 3 * MINUTE));
      const result = await store.append(ref, [folded, late], 3600);
      expect(result).toMatchObject({ added: 1, duplicates: 1 });
      expect((await store.read(ref)).messages.map((m) => m.message.id)).toEqual([late.id]);
    });

    it('does not create keys for a missing instance', async () => {
      expect(await maintenance.pruneSeen(ref, Date.now() - MINUTE)).toBe(0);
      expect(await ns.keys()).toEqual([]);
    });

    it('rejects a floor in the future or not an integer', async () => {
      await expect(maintenance.pruneSeen(ref, Date.now() + MINUTE)).rejects.toBeInstanceOf(
        PayloadError,
      );
      await expect(maintenance.pruneSeen(ref, 1.5)).rejects.toBeInstanceOf(PayloadError);
    });
  });

  describe('dropStaleIndexEntry', () => {
    it('removes the entry of an expired instance and keeps a live one', async () => {
      const live: MemoryRef = { ...ref, key: 'support:live' };
      const gone: MemoryRef = { ...ref, key: 'support:gone' };
      for (const r of [live, gone]) {
        await store.append(r, messages(2), 3600);
        await store.touchIndex(r, Date.now());
      }
      const k = memoryKeys(ns.keyPrefix, gone);
      await ns.redis.del(k.ord, k.msg, k.tok, k.unc, k.meta, k.seen); // as TTL expiry would

      expect(await maintenance.dropStaleIndexEntry(gone)).toBe(true);
      expect(await maintenance.dropStaleIndexEntry(live)).toBe(false);
      expect(await ns.redis.zscore(indexKey(ns.keyPrefix, gone), memoryId(gone))).toBeNull();
      expect(await ns.redis.zscore(indexKey(ns.keyPrefix, live), memoryId(live))).not.toBeNull();
      expect(await maintenance.dropStaleIndexEntry(gone)).toBe(false); // already gone
    });

    it('restores the entry when an append recreates the instance between the check and the removal', async () => {
      await store.append(ref, messages(1), 3600);
      const k = memoryKeys(ns.keyPrefix, ref);
      await ns.redis.del(k.ord, k.msg, k.tok, k.unc, k.meta, k.seen);
      await store.touchIndex(ref, 1000);
      const touchedAt = Date.now();
      // Real Redis, with an append (script + touchIndex) landing just before the ZREM.
      const racing = new Proxy(ns.redis, {
        get(target, name) {
          if (name === 'zrem') {
            return async (...args: Parameters<typeof target.zrem>) => {
              await store.append(ref, messages(1), 3600);
              await store.touchIndex(ref, touchedAt);
              return target.zrem(...args);
            };
          }
          const value: unknown = Reflect.get(target, name, target);
          return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
        },
      });
      const racingMaintenance = createMaintenanceStore({ redis: racing, keyPrefix: ns.keyPrefix });

      expect(await racingMaintenance.dropStaleIndexEntry(ref)).toBe(false);
      const score = await ns.redis.zscore(indexKey(ns.keyPrefix, ref), memoryId(ref));
      expect(Number(score)).toBeGreaterThanOrEqual(touchedAt);
    });

    it('keeps the entry of a cleared instance: its meta is alive', async () => {
      await store.append(ref, messages(2), 3600);
      await store.touchIndex(ref, Date.now());
      await store.clear(ref);
      expect(await maintenance.dropStaleIndexEntry(ref)).toBe(false);
    });
  });

  describe('scanIndex', () => {
    /** `n` refs that all land in shard 0. */
    function refsInShard0(n: number): MemoryRef[] {
      const shard0 = indexShardKey(ns.keyPrefix, 0);
      const refs: MemoryRef[] = [];
      for (let i = 0; refs.length < n; i++) {
        const r = { ...ref, key: `support:${i}` };
        if (indexKey(ns.keyPrefix, r) === shard0) refs.push(r);
      }
      return refs;
    }

    async function scanAll(options: { olderThanMs?: number; count: number }) {
      const seen: IndexEntry[] = [];
      const malformed: string[] = [];
      let cursor: string = SCAN_DONE;
      let calls = 0;
      do {
        const page = await maintenance.scanIndex(0, { ...options, cursor });
        expect(page.refs.length + page.malformed.length).toBeLessThanOrEqual(options.count);
        seen.push(...page.refs);
        malformed.push(...page.malformed);
        cursor = page.cursor;
        calls++;
      } while (cursor !== SCAN_DONE);
      return { seen, malformed, calls };
    }

    it('pages through every entry once, oldest first, and filters by last activity', async () => {
      const refs = refsInShard0(130);
      const base = Date.now() - 60 * MINUTE;
      // Groups of 5 share a millisecond, so pages split inside equal scores.
      const scoreOf = (i: number) => base + Math.floor(i / 5) * 1000;
      for (const [i, r] of refs.entries()) await store.touchIndex(r, scoreOf(i));

      const all = await scanAll({ count: 23 });
      expect(all.calls).toBeGreaterThan(1);
      expect(all.malformed).toEqual([]);
      expect(all.seen).toHaveLength(130);
      expect(new Set(all.seen.map((e) => memoryId(e.ref))).size).toBe(130);
      const scores = all.seen.map((e) => e.lastActivityMs);
      expect(scores).toEqual([...scores].sort((a, b) => a - b));
      const byMid = new Map(refs.map((r, i) => [memoryId(r), scoreOf(i)]));
      for (const e of all.seen) expect(e.lastActivityMs).toBe(byMid.get(memoryId(e.ref)));

      const cutoff = scoreOf(100); // entries 0..99 are strictly older
      const idle = await scanAll({ count: 30, olderThanMs: cutoff });
      expect(idle.seen).toHaveLength(100);
      expect(idle.seen.every((e) => e.lastActivityMs < cutoff)).toBe(true);
    });

    it('does not skip entries when earlier ones are dropped between pages', async () => {
      const refs = refsInShard0(120);
      const base = Date.now() - 60 * MINUTE;
      for (const [i, r] of refs.entries()) await store.touchIndex(r, base + i);
      const first = await maintenance.scanIndex(0, { count: 50 });
      for (const e of first.refs) await maintenance.dropStaleIndexEntry(e.ref); // all expired
      const second = await maintenance.scanIndex(0, { count: 50, cursor: first.cursor });
      expect(second.refs.map((e) => memoryId(e.ref))).toEqual(
        refs.slice(50, 100).map((r) => memoryId(r)),
      );
    });

    it('reports malformed members instead of returning them as refs', async () => {
      const [good] = refsInShard0(1);
      await store.touchIndex(good!, 1000);
      const shard0 = indexShardKey(ns.keyPrefix, 0);
      await ns.redis.zadd(shard0, 2000, 'not-a-mid', 3000, 'a/b%ZZ/c', 4000, 'a/%61/c');
      const page = await maintenance.scanIndex(0, { count: 10 });
      expect(page.refs).toEqual([{ ref: good, lastActivityMs: 1000 }]);
      expect(page.malformed).toEqual(['not-a-mid', 'a/b%ZZ/c', 'a/%61/c']);
      expect(page.cursor).toBe(SCAN_DONE);
    });

    it('rejects a shard, count or cursor outside what it accepts', async () => {
      await expect(maintenance.scanIndex(16, { count: 10 })).rejects.toBeInstanceOf(PayloadError);
      await expect(maintenance.scanIndex(0, { count: 0 })).rejects.toBeInstanceOf(PayloadError);
      await expect(
        maintenance.scanIndex(0, { count: 10, cursor: 'garbage' }),
      ).rejects.toBeInstanceOf(PayloadError);
    });
  });
});
