import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Message } from '../../src/core/message.js';
import type { MemoryRef } from '../../src/redis/keys.js';
import { readOldestPages, readWholeLog } from '../../src/store/log-pages.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/memory-store.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const ref: MemoryRef = { project: 'p1', resource: 'customer-support', key: 'pages:1' };

const message = (id: string, i: number): Message => ({
  id,
  role: i % 2 === 0 ? 'user' : 'assistant',
  content: `Message ${i}`,
  created_at: new Date().toISOString(),
});

describe('reading the log in pages for a flush, on real Redis', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;
  /** Eleven ids in order; the log holds ids[1..10], ids[0] is kept back as a late id. */
  let ids: string[];

  beforeEach(async () => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    ids = Array.from({ length: 11 }, () => nextId());
    await store.append(
      ref,
      ids.slice(1).map((id, i) => message(id, i + 1)),
      3600,
    );
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  it('reads the oldest pages while asked, each message once when a late id shifts the pages', async () => {
    const seen: Array<{ read: number; complete: boolean }> = [];
    let late = false;
    const prefix = await readOldestPages(
      store,
      ref,
      (read) => {
        seen.push({ read: read.messages.length, complete: read.complete });
        if (!late) {
          late = true;
          // An id older than every message read, sent on the store's connection before the next
          // page's read (commands run in order): that page's offset now points one back.
          void store.append(ref, [message(ids[0]!, 0)], 3600);
        }
        return true;
      },
      4,
    );
    await store.read(ref, { limit: 1 }); // the late append has landed
    expect(prefix.messages.map((m) => m.message.id)).toEqual(ids.slice(1));
    expect(prefix.complete).toBe(true);
    expect(prefix.usage.messages).toBe(10); // the counters as of the first page
    expect(seen).toEqual([
      { read: 4, complete: false },
      { read: 7, complete: false },
      { read: 10, complete: true },
    ]);
  });

  it('stops after the page the caller needs', async () => {
    const prefix = await readOldestPages(store, ref, () => false, 3);
    expect(prefix.messages.map((m) => m.message.id)).toEqual(ids.slice(1, 4));
    expect(prefix.complete).toBe(false);
    expect(prefix.usage.messages).toBe(10);
  });

  it('reads the whole log with its epoch and access stats', async () => {
    await store.read(ref, { limit: 2, recordAccess: true });
    const whole = await readWholeLog(store, ref);
    expect(whole.messages.map((m) => m.message.id)).toEqual(ids.slice(1));
    expect(whole.summary).toBeUndefined();
    expect(whole.summaryTokens).toBe(0);
    expect([...whole.access.count.entries()]).toEqual([
      [ids[1], 1],
      [ids[2], 1],
    ]);
  });
});
