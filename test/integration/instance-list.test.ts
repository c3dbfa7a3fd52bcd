import { Queue } from 'bullmq';
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MaintenanceResult } from '../../processors/maintenance.js';
import { QUEUES } from '../../queues/names.js';
import { PayloadError } from '../../src/core/errors.js';
import type { Message } from '../../src/core/message.js';
import {
  indexKey,
  memoryId,
  memoryKeys,
  resourceIndexKey,
  type MemoryRef,
} from '../../src/redis/keys.js';
import { encodeListCursor } from '../../src/store/instance-list.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/memory-store.js';
import { shippedMemories } from '../helpers/memories.js';
import { startPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const TTL = 3600;

function messages(n: number): Message[] {
  return Array.from({ length: n }, (_, i) => ({
    id: nextId(),
    role: i % 2 === 0 ? ('user' as const) : ('assistant' as const),
    content: `message ${i + 1}`,
    created_at: new Date().toISOString(),
  }));
}

describe('listing the instances of a resource', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;
  const ref = (key: string, project = 'p1', resource = 'agent-memory'): MemoryRef => ({
    project,
    resource,
    key,
  });
  /** An instance with `n` messages, active at `atMs` (as the append processor records it). */
  const instance = async (r: MemoryRef, n: number, atMs: number) => {
    await store.append(r, messages(n), TTL);
    await store.touchIndex(r, atMs);
  };

  beforeEach(() => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  it('lists newest activity first, with each instance messages, tokens and exactness', async () => {
    await instance(ref('a'), 1, 1_000);
    await instance(ref('b'), 2, 3_000);
    await instance(ref('c'), 3, 2_000);
    const counted = messages(2);
    await store.append(ref('d'), counted, TTL);
    await store.commitTokens(
      ref('d'),
      counted.map((m) => ({ id: m.id, tokens: 11 })),
      TTL,
    );
    await store.touchIndex(ref('d'), 500);

    const page = await store.listInstances('p1', 'agent-memory', { limit: 10 });
    const stats = async (key: string) => {
      const s = await store.stats(ref(key));
      return s.tokenCount + s.estimatedTokens;
    };
    expect(page).toEqual({
      items: [
        {
          key: 'b',
          messageCount: 2,
          tokens: await stats('b'),
          lastActivityMs: 3_000,
          exact: false,
        },
        {
          key: 'c',
          messageCount: 3,
          tokens: await stats('c'),
          lastActivityMs: 2_000,
          exact: false,
        },
        {
          key: 'a',
          messageCount: 1,
          tokens: await stats('a'),
          lastActivityMs: 1_000,
          exact: false,
        },
        { key: 'd', messageCount: 2, tokens: 22, lastActivityMs: 500, exact: true },
      ],
      nextCursor: undefined,
    });
    expect(page.items[0]!.tokens).toBeGreaterThan(0);
  });

  it('pages through every instance exactly once with the cursor, equal activity ordered by key', async () => {
    const scores = [5_000, 4_000, 4_000, 4_000, 3_000, 2_000, 2_000];
    for (const [i, score] of scores.entries()) await instance(ref(`k${i}`), 1, score);
    const all = await store.listInstances('p1', 'agent-memory', { limit: 100 });
    expect(all.items.map((item) => item.key)).toEqual(['k0', 'k3', 'k2', 'k1', 'k4', 'k6', 'k5']);

    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.listInstances('p1', 'agent-memory', {
        limit: 3,
        ...(cursor ? { cursor } : {}),
      });
      seen.push(...page.items.map((item) => item.key));
      sizes.push(page.items.length);
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(all.items.map((item) => item.key));
    expect(sizes).toEqual([3, 3, 1]);
  });

  it('keeps its place when entries before the cursor are removed or touched between pages', async () => {
    for (const [i, score] of [5_000, 4_000, 3_000, 2_000].entries())
      await instance(ref(`k${i}`), 1, score);
    const first = await store.listInstances('p1', 'agent-memory', { limit: 2 });
    expect(first.items.map((item) => item.key)).toEqual(['k0', 'k1']);
    await store.delete(ref('k0'));
    await store.touchIndex(ref('k1'), 9_000); // active again: moves to the front
    const second = await store.listInstances('p1', 'agent-memory', {
      limit: 2,
      cursor: first.nextCursor!,
    });
    expect(second.items.map((item) => item.key)).toEqual(['k2', 'k3']);
  });

  it('refuses a malformed cursor, a limit outside 1..100 and an invalid project or resource, naming the field', async () => {
    await instance(ref('a'), 1, 1_000);
    const refused = async (
      project: string,
      resource: string,
      options: { cursor?: string; limit: number },
    ) => {
      const error = await store.listInstances(project, resource, options).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PayloadError);
      return (error as PayloadError).message;
    };
    const b64 = (text: string) => Buffer.from(text).toString('base64url');
    for (const cursor of [
      '',
      'not a cursor!',
      b64('no-score'),
      b64('-1:a'),
      b64('1.5:a'),
      b64('01:a'),
      b64('12:'),
      `${b64('12:a')}=`,
      'x'.repeat(2000),
    ]) {
      expect(await refused('p1', 'agent-memory', { cursor, limit: 5 })).toMatch(/^cursor: /);
    }
    for (const limit of [0, 101, 1.5, Number.NaN])
      expect(await refused('p1', 'agent-memory', { limit })).toMatch(/^limit: /);
    expect(await refused('p/1', 'agent-memory', { limit: 5 })).toMatch(/^project: /);
    expect(await refused('p1', '', { limit: 5 })).toMatch(/^resource: /);
    // A well-formed cursor of this listing is accepted, at either end of the bounds.
    expect(
      (
        await store.listInstances('p1', 'agent-memory', {
          cursor: encodeListCursor(2_000, 'z'),
          limit: 1,
        })
      ).items,
    ).toHaveLength(1);
    expect((await store.listInstances('p1', 'agent-memory', { limit: 100 })).items).toHaveLength(1);
  });

  it('never lists another project or resource', async () => {
    await instance(ref('shared-key'), 1, 1_000);
    await instance(ref('shared-key', 'p2'), 2, 2_000);
    await instance(ref('other', 'p2'), 1, 3_000);
    await instance(ref('chat', 'p1', 'chat-buffer'), 1, 4_000);
    const p1 = await store.listInstances('p1', 'agent-memory', { limit: 100 });
    expect(p1.items.map((item) => [item.key, item.messageCount])).toEqual([['shared-key', 1]]);
    const p2 = await store.listInstances('p2', 'agent-memory', { limit: 100 });
    expect(p2.items.map((item) => [item.key, item.messageCount])).toEqual([
      ['other', 1],
      ['shared-key', 2],
    ]);
    expect((await store.listInstances('p3', 'agent-memory', { limit: 100 })).items).toEqual([]);
  });

  it('skips an instance whose keys expired and removes its entry; a delete removes it too', async () => {
    await instance(ref('alive'), 1, 1_000);
    await instance(ref('expired'), 2, 2_000);
    await instance(ref('deleted'), 1, 3_000);
    const k = memoryKeys(ns.keyPrefix, ref('expired'));
    await ns.redis.del(k.ord, k.msg, k.unc, k.meta, k.seen, k.tok, k.acc); // as TTL expiry would
    await store.delete(ref('deleted'));

    const page = await store.listInstances('p1', 'agent-memory', { limit: 100 });
    expect(page.items.map((item) => item.key)).toEqual(['alive']);
    const ridx = resourceIndexKey(ns.keyPrefix, 'p1', 'agent-memory');
    expect(await ns.redis.zrange(ridx, '0', '-1')).toEqual(['alive']);
    expect(
      await ns.redis.zscore(indexKey(ns.keyPrefix, ref('deleted')), memoryId(ref('deleted'))),
    ).toBeNull();
  });

  it('fills a page past expired entries and goes on from the last one examined', async () => {
    for (let i = 0; i < 5; i++) await instance(ref(`gone${i}`), 1, 10_000 + i);
    for (let i = 0; i < 5; i++) {
      const k = memoryKeys(ns.keyPrefix, ref(`gone${i}`));
      await ns.redis.del(k.ord, k.msg, k.unc, k.meta, k.seen, k.tok, k.acc);
    }
    await instance(ref('old1'), 1, 1_000);
    await instance(ref('old2'), 1, 900);
    const page = await store.listInstances('p1', 'agent-memory', { limit: 1 });
    expect(page.items.map((item) => item.key)).toEqual(['old1']);
    const next = await store.listInstances('p1', 'agent-memory', {
      limit: 1,
      cursor: page.nextCursor!,
    });
    expect(next.items.map((item) => item.key)).toEqual(['old2']);
  });

  it('a maintenance sweep restores an entry lost between the two indexes, and drops both entries of an expired instance', async () => {
    const maintenance = createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    await instance(ref('lost'), 1, 1_000);
    const ridx = resourceIndexKey(ns.keyPrefix, 'p1', 'agent-memory');
    await ns.redis.zrem(ridx, 'lost'); // as a crash between the global and the per-resource touch
    expect((await store.listInstances('p1', 'agent-memory', { limit: 10 })).items).toEqual([]);
    expect(await maintenance.indexInResource({ ref: ref('lost'), lastActivityMs: 1_000 })).toBe(
      true,
    );
    expect(await maintenance.indexInResource({ ref: ref('lost'), lastActivityMs: 500 })).toBe(
      false,
    );
    expect(await ns.redis.zscore(ridx, 'lost')).toBe('1000'); // never lowered

    const k = memoryKeys(ns.keyPrefix, ref('lost'));
    await ns.redis.del(k.ord, k.msg, k.unc, k.meta, k.seen, k.tok, k.acc);
    expect(await maintenance.dropStaleIndexEntry(ref('lost'))).toBe(true);
    expect(await ns.redis.zscore(ridx, 'lost')).toBeNull();
  });
  it('the sweep never lists again an instance deleted after it read its page', async () => {
    const maintenance = createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    await instance(ref('deleted'), 1, 1_000);
    const entry = { ref: ref('deleted'), lastActivityMs: 1_000 };
    // The sweep read the entry; then the delete removes the instance and both index entries.
    await store.delete(ref('deleted'));
    expect(await maintenance.dropStaleIndexEntry(entry.ref)).toBe(false); // the entry is gone
    expect(await maintenance.indexInResource(entry)).toBe(false);
    expect((await store.listInstances('p1', 'agent-memory', { limit: 10 })).items).toEqual([]);
    const ridx = resourceIndexKey(ns.keyPrefix, 'p1', 'agent-memory');
    expect(await ns.redis.zscore(ridx, 'deleted')).toBeNull();

    // The delete lands between indexInResource's check of the global entry and its ZADD.
    await instance(ref('racing'), 1, 2_000);
    await ns.redis.zrem(ridx, 'racing'); // as a crash between the two touches
    const racing = new Proxy(ns.redis, {
      get(target, name) {
        if (name === 'zadd') {
          return async (...args: Parameters<typeof target.zadd>) => {
            await store.delete(ref('racing'));
            return target.zadd(...args);
          };
        }
        const value: unknown = Reflect.get(target, name, target);
        return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
      },
    });
    const racingMaintenance = createMaintenanceStore({ redis: racing, keyPrefix: ns.keyPrefix });
    expect(
      await racingMaintenance.indexInResource({ ref: ref('racing'), lastActivityMs: 2_000 }),
    ).toBe(false);
    expect(await ns.redis.zscore(ridx, 'racing')).toBeNull();
  });
});

describe('listing instances indexed before the per-resource index', () => {
  let ns: RedisNamespace;
  const closers: Array<() => Promise<unknown>> = [];

  beforeEach(() => {
    ns = createRedisNamespace();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await ns.cleanup();
  });

  it('lists them after one maintenance sweep (idempotent), and lists an instance created by a write', async () => {
    const pipeline = await startPipeline(ns, await shippedMemories(), 'legacy');
    closers.push(() => pipeline.close());
    const refs = ['old:1', 'old:2'].map((key): MemoryRef => ({
      project: 'legacy',
      resource: 'agent-memory',
      key,
    }));
    // As an older memq left them: the log and the global index entry only.
    for (const [i, r] of refs.entries()) {
      await pipeline.store.append(r, messages(i + 1), TTL);
      await ns.redis.zadd(indexKey(ns.keyPrefix, r), 1_000 + i, memoryId(r));
    }
    const list = () => pipeline.client.list('agent-memory', { limit: 100 });
    expect((await list()).items).toEqual([]);

    const queue = new Queue(QUEUES.cleanup, { connection: ns.redis, prefix: ns.queuePrefix });
    closers.push(() => queue.close());
    const sweep = async () => {
      const job = await queue.add('maintenance', {});
      return pipeline.client.waitFor<MaintenanceResult>({
        queue: QUEUES.cleanup,
        jobId: job.id!,
        ref: refs[0]!,
      });
    };
    expect((await sweep()).resourceIndexed).toBe(2);
    expect(
      (await list()).items.map((item) => [item.key, item.messageCount, item.lastActivityMs]),
    ).toEqual([
      ['old:2', 2, 1_001],
      ['old:1', 1, 1_000],
    ]);
    expect((await sweep()).resourceIndexed).toBe(0);

    const written = { resource: 'agent-memory', key: 'written' };
    const receipt = await pipeline.client.write(written, [{ role: 'user', content: 'replaced' }]);
    await pipeline.client.waitFor(receipt);
    expect((await list()).items.map((item) => [item.key, item.messageCount])).toEqual([
      ['written', 1],
      ['old:2', 2],
      ['old:1', 1],
    ]);
  });
});
