import { Queue, Worker } from 'bullmq';
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import type { Message } from '../../src/core/message.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/memory-store.js';
import { createAppendProcessor } from '../../processors/append.js';
import { appendErasureDeps } from '../../processors/workers.js';
import { JOBS, QUEUES } from '../../queues/names.js';
import { eventually, quietLog } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits until the clock is past `ms` (ms since epoch). */
const untilPast = (ms: number) => sleep(Math.max(0, ms - Date.now() + 1));
const message = (content: string): Message => ({
  id: nextId(),
  role: 'user',
  content,
  created_at: new Date().toISOString(),
});

/** `expiration: 2s`, the lifetime every test here checks. */
const EXPIRATION_S = 2;
const HOUR_S = 3600;

describe('expiration: an instance ends at created_at + expiration, whatever slides its TTL', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;
  const ref: MemoryRef = { project: 'p', resource: 'r', key: 'expiring' };

  beforeEach(() => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  const families = () => {
    const k = memoryKeys(ns.keyPrefix, ref);
    return [k.ord, k.msg, k.tok, k.unc, k.meta, k.seen, k.acc];
  };
  const meta = async () => ns.redis.hgetall(memoryKeys(ns.keyPrefix, ref).meta);
  /** Every existing key family with its expiry time (ms since epoch; -1 = none). */
  const expiries = async () => {
    const out: Record<string, number> = {};
    for (const key of families()) {
      const at = (await ns.redis.call('PEXPIRETIME', key)) as number;
      if (at !== -2) out[key.slice(key.lastIndexOf(':') + 1)] = at;
    }
    return out;
  };
  const existing = async () => {
    const left: string[] = [];
    for (const key of families()) if ((await ns.redis.exists(key)) === 1) left.push(key);
    return left;
  };

  /**
   * Appends, counts tokens, flushes and reads with access recorded (every script that sets a
   * TTL) until 1.5 s after creation, checking after each round that no key family expires after
   * created_at + 2 s; then waits for that moment.
   */
  async function keepWritingUntilNearTheEnd(ttlSeconds: number) {
    const lifetime = { expirationSeconds: EXPIRATION_S };
    await store.append(ref, [message('first')], ttlSeconds, lifetime);
    const createdAt = Number((await meta()).created_at);
    const end = createdAt + EXPIRATION_S * 1000;
    expect(Number((await meta()).expires_at)).toBe(end);
    let rounds = 0;
    while (Date.now() < createdAt + 1500) {
      const batch = [message(`round ${rounds}`), message(`round ${rounds} again`)];
      await store.append(ref, batch, ttlSeconds, lifetime);
      await store.commitTokens(ref, [{ id: batch[0]!.id, tokens: 5 }], ttlSeconds);
      const window = await store.read(ref, { recordAccess: true });
      const k = memoryKeys(ns.keyPrefix, ref);
      await ns.redis.set(k.lock, 'token', 'PX', 10_000);
      await store.applyFlush(
        ref,
        { lockToken: 'token', epoch: window.epoch, foldedIds: [], evictedIds: [batch[1]!.id] },
        ttlSeconds,
      );
      await ns.redis.del(k.lock);
      const at = await expiries();
      expect(Object.keys(at).sort(), `round ${rounds}`).toEqual(
        ['acc', 'meta', 'msg', 'ord', 'seen', 'tok', 'unc'].sort(),
      );
      for (const [family, expiry] of Object.entries(at)) {
        expect(expiry, `${family} in round ${rounds}`).toBeGreaterThan(0);
        expect(expiry, `${family} in round ${rounds}`).toBeLessThanOrEqual(end);
      }
      rounds += 1;
      await sleep(150);
    }
    expect(rounds).toBeGreaterThan(0);
    return end;
  }

  it('with a sliding ttl of an hour, appends never keep the instance past 2 s', async () => {
    const end = await keepWritingUntilNearTheEnd(HOUR_S);
    // Without the expiration every family would live an hour from the last round.
    await untilPast(end + 50);
    expect(await existing()).toEqual([]);
    const window = await store.read(ref);
    expect(window.total).toBe(0);
    expect(window.messages).toEqual([]);
    expect((await store.stats(ref)).exists).toBe(false);
  });

  it('with ttl 0 (never expires), the expiration alone ends the instance', async () => {
    const end = await keepWritingUntilNearTheEnd(0);
    await untilPast(end + 50);
    expect(await existing()).toEqual([]);
    expect((await store.read(ref)).total).toBe(0);
  });

  it('an append after the end starts a new instance holding only the new messages', async () => {
    const old = message('before the end');
    await store.append(ref, [old], HOUR_S, { expirationSeconds: EXPIRATION_S });
    const firstCreated = Number((await meta()).created_at);
    // Keep appending across the end of the lifetime.
    const after: Message[] = [];
    while (Date.now() <= firstCreated + EXPIRATION_S * 1000 + 300) {
      const m = message('keeps coming');
      await store.append(ref, [m], HOUR_S, { expirationSeconds: EXPIRATION_S });
      if (Date.now() > firstCreated + EXPIRATION_S * 1000 + 50) after.push(m);
      await sleep(100);
    }
    const window = await store.read(ref, { limit: 1000 });
    const ids = window.messages.map((m) => m.message.id);
    expect(ids).not.toContain(old.id);
    for (const m of after) expect(ids).toContain(m.id);
    const created = Number((await meta()).created_at);
    expect(created).toBeGreaterThanOrEqual(firstCreated + EXPIRATION_S * 1000);
    expect(Number((await meta()).expires_at)).toBe(created + EXPIRATION_S * 1000);
  });

  it('a shortened expiration ends an instance already past it; the append starts a new one', async () => {
    const old = message('under a long expiration');
    await store.append(ref, [old], HOUR_S, { expirationSeconds: HOUR_S });
    const firstCreated = Number((await meta()).created_at);
    await untilPast(firstCreated + 1100);
    const fresh = message('under expiration 1s');
    const result = await store.append(ref, [fresh], HOUR_S, { expirationSeconds: 1 });
    expect(result).toMatchObject({ added: 1, messageCount: 1 });
    const window = await store.read(ref);
    expect(window.messages.map((m) => m.message.id)).toEqual([fresh.id]);
    const created = Number((await meta()).created_at);
    expect(created).toBeGreaterThan(firstCreated);
    expect(Number((await meta()).expires_at)).toBe(created + 1000);
  });

  it('a write to an instance past its shortened expiration starts a new one', async () => {
    await store.append(ref, [message('under a long expiration')], HOUR_S, {
      expirationSeconds: HOUR_S,
    });
    const firstCreated = Number((await meta()).created_at);
    await untilPast(firstCreated + 1100);
    const written = message('written under expiration 1s');
    await store.write(ref, [written], HOUR_S, { expirationSeconds: 1 });
    expect((await store.read(ref)).messages.map((m) => m.message.id)).toEqual([written.id]);
    const created = Number((await meta()).created_at);
    expect(created).toBeGreaterThan(firstCreated);
    expect(Number((await meta()).expires_at)).toBe(created + 1000);
  });

  it('a write keeps created_at and is capped the same way', async () => {
    await store.append(ref, [message('appended')], HOUR_S, { expirationSeconds: EXPIRATION_S });
    const end = Number((await meta()).expires_at);
    await store.write(ref, [message('written')], HOUR_S, { expirationSeconds: EXPIRATION_S });
    expect(Number((await meta()).expires_at)).toBe(end);
    for (const expiry of Object.values(await expiries())) expect(expiry).toBeLessThanOrEqual(end);
    await untilPast(end + 50);
    expect(await existing()).toEqual([]);
  });

  it('expiration 0 removes the end, and then the ttl alone applies', async () => {
    await store.append(ref, [message('a')], HOUR_S, { expirationSeconds: EXPIRATION_S });
    await store.append(ref, [message('b')], HOUR_S, { expirationSeconds: 0 });
    expect((await meta()).expires_at).toBeUndefined();
    for (const expiry of Object.values(await expiries())) {
      expect(expiry).toBeGreaterThan(Date.now() + (HOUR_S - 60) * 1000);
    }
  });
});

describe('expiration through the append processor', () => {
  let ns: RedisNamespace;

  beforeEach(() => {
    ns = createRedisNamespace();
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  it('an append job commits under the resource expiration', async () => {
    const resource = parseMemoryResource(
      `resource: memory\nid: expiring\ntype: token_based\nmax_tokens: 1000\npersistence:\n  type: redis\n  ttl: 1h\nexpiration: ${EXPIRATION_S}s\n`,
      'memories/expiring.yaml',
    ).resource!;
    const registry = createMemoryRegistry([resource]);
    const store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    const queue = new Queue(QUEUES.append, { connection: ns.connect(), prefix: ns.queuePrefix });
    const worker = new Worker(
      QUEUES.append,
      createAppendProcessor({
        store,
        registry,
        enqueueTokenCount: async () => {},
        ...appendErasureDeps(
          createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix }),
          queue,
        ),
        log: quietLog,
        metrics: createMetrics(),
      }),
      { connection: ns.connect(), prefix: ns.queuePrefix },
    );
    try {
      const ref: MemoryRef = { project: 'p', resource: 'expiring', key: 'k' };
      const job = await queue.add(JOBS.append, { ref, messages: [message('hello')] });
      await eventually(async () => (await job.isCompleted()) || (await job.isFailed()), 'the job');
      expect(await job.isCompleted()).toBe(true);
      const k = memoryKeys(ns.keyPrefix, ref);
      const meta = await ns.redis.hgetall(k.meta);
      const end = Number(meta.created_at) + EXPIRATION_S * 1000;
      expect(Number(meta.expires_at)).toBe(end);
      expect((await ns.redis.call('PEXPIRETIME', k.ord)) as number).toBe(end);
    } finally {
      await worker.close();
      await queue.close();
    }
  });
});
