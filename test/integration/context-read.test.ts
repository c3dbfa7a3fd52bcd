import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, PayloadError } from '../../src/core/errors.js';
import type { Message } from '../../src/core/message.js';
import { asChatMessages, SUMMARY_HEADING } from '../../src/flush/summary.js';
import { memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import {
  FIRST_CONTEXT_PAGE,
  readContext,
  REPLY_PRIMING_TOKENS,
  SUMMARY_HEADING_TOKENS,
} from '../../src/store/context-read.js';
import {
  createMemoryStore,
  type MemoryStore,
  type NewestPageRequest,
} from '../../src/store/memory-store.js';
import { estimateTokens } from '../../src/tokens/counter.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();
const ref: MemoryRef = { project: 'p1', resource: 'agent-memory', key: 'agent:context' };
const TTL = 3600;
const P = REPLY_PRIMING_TOKENS;

type Extra = Partial<Omit<Message, 'id' | 'created_at' | 'role'>>;
const msg = (role: Message['role'], content: Message['content'], extra: Extra = {}): Message => ({
  id: nextId(),
  role,
  content,
  created_at: new Date().toISOString(),
  ...extra,
});
const call = (id: string, name = 'lookup') => ({
  id,
  type: 'function' as const,
  function: { name, arguments: '{"q":"x"}' },
});
const chat = (messages: readonly Message[]) => asChatMessages(undefined, messages);

describe('readContext on real Redis', () => {
  let ns: RedisNamespace;
  let store: MemoryStore;

  beforeEach(() => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  /** Appends `entries` in order, committing each given count (undefined = left uncounted). */
  async function log(entries: ReadonlyArray<readonly [Message, number | undefined]>) {
    for (let i = 0; i < entries.length; i += 500) {
      const batch = entries.slice(i, i + 500);
      await store.append(
        ref,
        batch.map(([m]) => m),
        TTL,
      );
      const counts = batch.flatMap(([m, tokens]) =>
        tokens === undefined ? [] : [{ id: m.id, tokens }],
      );
      if (counts.length > 0) await store.commitTokens(ref, counts, TTL);
    }
    return entries.map(([m]) => m);
  }

  /** Folds `ids` into a summary of `tokens`, as a flush would. */
  async function summarize(ids: readonly string[], content: string, tokens: number) {
    const k = memoryKeys(ns.keyPrefix, ref);
    await ns.redis.set(k.lock, 'flush', 'PX', 60_000);
    const { epoch } = await store.read(ref);
    await store.applyFlush(
      ref,
      {
        lockToken: 'flush',
        epoch,
        foldedIds: ids,
        evictedIds: [],
        summary: {
          content,
          tokens,
          covers_through_id: [...ids].sort().at(-1)!,
          message_count_covered: ids.length,
          updated_at: new Date().toISOString(),
        },
      },
      TTL,
    );
    await ns.redis.del(k.lock);
  }

  it('sends the newest units that fit and never splits a tool call from its results or leaves a hole', async () => {
    const [system, u1, a1, u2, calling, t1, t2, a2, u3] = await log([
      [msg('system', 'You are helpful.'), 5],
      [msg('user', 'one'), 10],
      [msg('assistant', 'two'), 10],
      [msg('user', 'look it up'), 10],
      [msg('assistant', null, { tool_calls: [call('c1'), call('c2')] }), 10],
      [msg('tool', 'r1', { tool_call_id: 'c1' }), 10],
      [msg('tool', 'r2', { tool_call_id: 'c2' }), 10],
      [msg('assistant', 'found it'), 10],
      [msg('user', 'thanks'), 10],
    ]);
    const fixed = P + 5;
    // One token short of the tool unit (30): it is not sent, and neither is u2 (10), which
    // would fit but would leave a hole.
    expect(await readContext(store, ref, { maxTokens: fixed + 20 + 29 })).toMatchObject({
      messages: chat([system!, a2!, u3!]),
      tokens: fixed + 20,
      exact: true,
      omitted: { messages: 6, tokens: 60 },
      summary: false,
      throughId: u3!.id,
    });
    // Exactly enough for the tool unit: the call and both results.
    expect(await readContext(store, ref, { maxTokens: fixed + 20 + 30 })).toMatchObject({
      messages: chat([system!, calling!, t1!, t2!, a2!, u3!]),
      tokens: fixed + 50,
      omitted: { messages: 3, tokens: 30 },
    });
    expect((await readContext(store, ref, { maxTokens: 1_000 })).messages).toEqual(
      chat([system!, u1!, a1!, u2!, calling!, t1!, t2!, a2!, u3!]),
    );
  });

  it('sends each tool result right after its call and leaves out a result whose call is gone', async () => {
    const [question, calls, resultB, aside, resultA, orphan, answer] = await log([
      [msg('user', 'weather and time in Paris?'), 10],
      [
        msg('assistant', null, { tool_calls: [call('call_a', 'weather'), call('call_b', 'time')] }),
        20,
      ],
      [msg('tool', '10:00', { tool_call_id: 'call_b' }), 5],
      [msg('user', 'also, hurry'), 6],
      [msg('tool', 'sunny', { tool_call_id: 'call_a' }), 5],
      [msg('tool', 'a result whose call a policy dropped', { tool_call_id: 'call_dropped' }), 9],
      [msg('assistant', 'Sunny, and it is 10:00.'), 8],
    ]);
    const context = await readContext(store, ref, { maxTokens: 1000 });
    // The chat APIs take a call's results right after it, and refuse a result without its call.
    expect(context.messages).toEqual(
      chat([question!, calls!, resultB!, resultA!, aside!, answer!]),
    );
    expect(context.tokens).toBe(P + 10 + 20 + 5 + 5 + 6 + 8);
    expect(context.omitted).toEqual({ messages: 1, tokens: 9 });
    expect(context.messages).not.toContainEqual(
      expect.objectContaining({ content: orphan!.content }),
    );
  });

  it('keeps turns that reuse a tool-call id apart: each result with the call just before it', async () => {
    const turns: Array<[Message, number]> = [];
    for (let t = 0; t < 20; t++) {
      turns.push([msg('user', `question ${t}`), 5]);
      turns.push([msg('assistant', null, { tool_calls: [call('call_0')] }), 10]);
      turns.push([msg('tool', `result ${t}`, { tool_call_id: 'call_0' }), 5]);
      turns.push([msg('assistant', `answer ${t}`), 5]);
    }
    const stored = await log(turns);
    const context = await readContext(store, ref, { maxTokens: P + 5 * 25 });
    // Five whole turns of 25 tokens fit; one unit from the first call to the last result would not.
    expect(context.messages).toEqual(chat(stored.slice(-20)));
    expect(context.omitted).toEqual({ messages: 60, tokens: 15 * 25 });
  });

  it('reads on when a page boundary falls between a reused-id call and its result', async () => {
    const entries: Array<[Message, number]> = [
      [msg('user', 'old'), 1],
      [msg('assistant', null, { tool_calls: [call('call_0')] }), 5],
      [msg('tool', 'first result', { tool_call_id: 'call_0' }), 5],
    ];
    for (let i = 0; i < FIRST_CONTEXT_PAGE - 3; i++) entries.push([msg('user', `filler ${i}`), 1]);
    entries.push([msg('assistant', null, { tool_calls: [call('call_0')] }), 5]);
    entries.push([msg('tool', 'second result', { tool_call_id: 'call_0' }), 5]);
    const stored = await log(entries);
    // The first page starts at "first result", whose call is on the next page: it must not be
    // taken for an answer of the newest call_0, nor stop the read with nothing sent.
    const context = await readContext(store, ref, { maxTokens: P + 10 });
    expect(context.messages).toEqual(chat(stored.slice(-2)));
  });

  it('sends a call the model went on without minus that call, and keeps the newest pending one', async () => {
    const [question, calls, resultA, gaveUp, answer, pending] = await log([
      [msg('user', 'weather in Paris and Rome?'), 5],
      [msg('assistant', 'Checking both.', { tool_calls: [call('call_a'), call('call_b')] }), 20],
      [msg('tool', 'Paris: sunny', { tool_call_id: 'call_a' }), 5],
      [msg('assistant', null, { tool_calls: [call('call_c')] }), 10],
      [msg('assistant', 'Paris is sunny; Rome did not answer.'), 8],
      [msg('assistant', null, { tool_calls: [call('call_d')] }), 10],
    ]);
    const context = await readContext(store, ref, { maxTokens: 1000 });
    const { tool_calls: both, ...callsText } = calls!;
    expect(context.messages).toEqual(
      chat([question!, { ...callsText, tool_calls: [both![0]!] }, resultA!, answer!, pending!]),
    );
    expect(context.exact).toBe(false); // the trimmed message is still counted as stored
    expect(context.messages).not.toContainEqual(
      expect.objectContaining({ tool_calls: gaveUp!.tool_calls }),
    );
  });

  it('keeps every pinned message in log order and the summary first', async () => {
    const [old1, old2, system, u1, developer, u2, a2] = await log([
      [msg('user', 'old question'), 10],
      [msg('assistant', 'old answer'), 10],
      [msg('system', 'Be brief.'), 5],
      [msg('user', 'first'), 10],
      [msg('developer', 'Answer in French.'), 7],
      [msg('user', 'second'), 10],
      [msg('assistant', 'deuxième'), 10],
    ]);
    await summarize([old1!.id, old2!.id], 'The user asked an old question.', 12);
    const summaryMessage = {
      role: 'system',
      content: `${SUMMARY_HEADING}\nThe user asked an old question.`,
    };
    const summaryCost = 12 + SUMMARY_HEADING_TOKENS;

    const small = await readContext(store, ref, { maxTokens: P + 12 + summaryCost + 10 });
    expect(small.messages).toEqual([summaryMessage, ...chat([system!, developer!, a2!])]);
    expect(small).toMatchObject({
      tokens: P + 12 + summaryCost + 10,
      exact: false, // the heading's count is a bound
      summary: true,
      omitted: { messages: 2, tokens: 20 },
    });

    const all = await readContext(store, ref, {
      maxTokens: 1_000,
      summaryRecount: (text) => {
        expect(text).toBe(summaryMessage.content);
        return Promise.resolve({ tokens: 20 });
      },
    });
    expect(all.messages).toEqual([summaryMessage, ...chat([system!, u1!, developer!, u2!, a2!])]);
    expect(all).toMatchObject({ tokens: P + 20 + 12 + 30, exact: true, summary: true });
    const approximate = await readContext(store, ref, {
      maxTokens: 1_000,
      summaryRecount: () => Promise.resolve({ tokens: 20, approximatedBy: 'o200k_base (approx)' }),
    });
    expect(approximate.exact).toBe(false);
  });

  it('sends a pinned message far older than the budget reaches, reading one page', async () => {
    const stored = await log([
      [msg('system', 'You answer in haiku.'), 6],
      ...Array.from({ length: 300 }, (_, i) => [msg('user', `m${i}`), 10] as const),
      [msg('developer', 'Now in prose.'), 4],
      [msg('user', 'last'), 10],
    ]);
    let pages = 0;
    const counting: MemoryStore = {
      ...store,
      readNewest: (r, page) => {
        pages += 1;
        return store.readNewest(r, page);
      },
    };
    const read = await readContext(counting, ref, { maxTokens: P + 6 + 4 + 20 });
    expect(read.messages).toEqual(chat([stored[0]!, stored[300]!, stored[301]!, stored[302]!]));
    expect(read).toMatchObject({ tokens: P + 30, omitted: { messages: 299, tokens: 2_990 } });
    expect(pages).toBe(1);
  });

  it('finds the pinned messages of a write, and none of the log it replaced', async () => {
    await log([[msg('system', 'Replaced prompt.'), 5]]);
    const written = [
      msg('developer', 'New prompt.'),
      ...Array.from({ length: 100 }, (_, i) => msg('user', `w${i}`)),
    ];
    await store.write(ref, written, TTL);
    const read = await readContext(store, ref, { maxTokens: 60 });
    expect(read.messages[0]).toEqual(chat([written[0]!])[0]);
    expect(read.messages).not.toContainEqual(
      expect.objectContaining({ content: 'Replaced prompt.' }),
    );
    expect(read.messages.at(-1)).toEqual(chat([written.at(-1)!])[0]);
  });

  it('leaves the summary out when it does not fit beside the pinned messages, and returns the pinned messages over the budget', async () => {
    const [old, system, u1] = await log([
      [msg('user', 'old'), 10],
      [msg('system', 'A long instruction.'), 50],
      [msg('user', 'now'), 10],
    ]);
    await summarize([old!.id], 'Old things.', 40);
    const noSummary = await readContext(store, ref, { maxTokens: P + 50 + 5 });
    expect(noSummary).toMatchObject({
      messages: chat([system!]),
      tokens: P + 50,
      summary: false,
      omitted: { messages: 1, tokens: 10 },
    });
    const withUnit = await readContext(store, ref, { maxTokens: P + 50 + 10 });
    expect(withUnit).toMatchObject({ messages: chat([system!, u1!]), summary: false });
    const over = await readContext(store, ref, { maxTokens: 20 });
    expect(over).toMatchObject({ messages: chat([system!]), tokens: P + 50, summary: false });
    expect(over.tokens).toBeGreaterThan(20);
  });

  it('reads old string-content messages back unchanged and finds the pinned ones of a log stored before they were indexed', async () => {
    const k = memoryKeys(ns.keyPrefix, ref);
    const old = await log([
      [msg('system', 'Legacy prompt.'), 4],
      [
        msg('user', 'hello', {
          name: 'ann',
          metadata: { role: 'system', note: '"role":"system"' },
        }),
        8,
      ],
      // More than a first page: the system message is only found through the index.
      ...Array.from({ length: 100 }, (_, i) => [msg('user', `filler ${i}`), 1] as const),
      [msg('assistant', 'hi'), 5],
      [msg('tool', 'a result without the call id it answers'), 9],
      [msg('user', 'bye'), 5],
    ]);
    // As an older memq left it: no pinned index, no mark.
    await ns.redis.del(k.pin);
    await ns.redis.hdel(k.meta, 'pins_indexed');

    const small = await readContext(store, ref, { maxTokens: P + 4 + 5 });
    expect(small.messages).toEqual(chat([old[0]!, old.at(-1)!]));
    expect(await ns.redis.zrange(k.pin, '0', '-1')).toEqual([old[0]!.id]);
    expect(await ns.redis.hget(k.meta, 'pins_indexed')).toBe('1');

    const all = await readContext(store, ref, { maxTokens: 1_000 });
    expect(all.messages).toEqual(chat(old));
    expect(all.messages[1]).toEqual({ role: 'user', content: 'hello', name: 'ann' });
    expect(all).toMatchObject({
      tokens: P + 31 + 100,
      exact: true,
      omitted: { messages: 0, tokens: 0 },
    });
  });

  it('reads only the pages the budget reaches, and reads on to the call of a tool result at the edge', async () => {
    const entries = Array.from(
      { length: 2_000 },
      (_, i) => [msg(i % 2 === 0 ? 'user' : 'assistant', `m${i}`), 10] as const,
    );
    const stored = await log(entries);
    const pages: NewestPageRequest[] = [];
    const counting: MemoryStore = {
      ...store,
      readNewest: (r, page) => {
        pages.push(page);
        return store.readNewest(r, page);
      },
    };
    const small = await readContext(counting, ref, { maxTokens: P + 100 });
    expect(small.messages).toEqual(chat(stored.slice(-10)));
    expect(small.omitted).toEqual({ messages: 1_990, tokens: 19_900 });
    expect(pages.map((p) => p.limit)).toEqual([FIRST_CONTEXT_PAGE]);

    pages.length = 0;
    const larger = await readContext(counting, ref, { maxTokens: P + 3_000 });
    expect(larger.messages).toEqual(chat(stored.slice(-300)));
    expect(pages.map((p) => p.limit)).toEqual([64, 128, 256]);
    expect(pages.slice(1).every((p) => p.beforeId !== undefined && !p.withPinned)).toBe(true);

    // A tool call with 100 results: the newest page holds results only.
    await store.clear(ref);
    const ids = Array.from({ length: 100 }, (_, i) => `call_${i}`);
    const unit = await log([
      [msg('user', 'before'), 10],
      [msg('assistant', null, { tool_calls: ids.map((id) => call(id)) }), 10],
      ...ids.map((id) => [msg('tool', `result ${id}`, { tool_call_id: id }), 1] as const),
    ]);
    const last = (await log([[msg('user', 'after'), 10]]))[0]!;
    pages.length = 0;
    const whole = await readContext(counting, ref, { maxTokens: P + 10 + 110 });
    expect(whole.messages).toEqual(chat([...unit.slice(1), last]));
    expect(pages).toHaveLength(2);
    // Too small for the unit as far as the first page shows it: no further page, only `after`.
    pages.length = 0;
    const tight = await readContext(counting, ref, { maxTokens: P + 10 + 50 });
    expect(tight.messages).toEqual(chat([last]));
    expect(pages).toHaveLength(1);
    // Enough for the results of the first page, not for the whole unit: read on, then not sent.
    pages.length = 0;
    const partial = await readContext(counting, ref, { maxTokens: P + 10 + 100 });
    expect(partial.messages).toEqual(chat([last]));
    expect(pages).toHaveLength(2);
  });

  it('uses the estimate of a message not counted yet, and a recount instead of every stored count', async () => {
    const [u1, a1, u2] = await log([
      [msg('user', 'counted'), 10],
      [msg('assistant', 'not counted yet'), undefined],
      [msg('user', 'counted too'), 10],
    ]);
    const estimated = await readContext(store, ref, { maxTokens: 1_000 });
    expect(estimated).toMatchObject({
      messages: chat([u1!, a1!, u2!]),
      tokens: P + 20 + estimateTokens(a1!),
      exact: false,
    });
    const batches: number[] = [];
    const recounted = await readContext(store, ref, {
      maxTokens: P + 14,
      recount: (messages) => {
        batches.push(messages.length);
        return Promise.resolve(messages.map(() => ({ tokens: 7 })));
      },
    });
    expect(recounted).toMatchObject({
      messages: chat([a1!, u2!]),
      tokens: P + 14,
      exact: true,
      // Omitted tokens are the stored figures: recounting them would read the whole log.
      omitted: { messages: 1, tokens: 10 },
    });
    expect(batches).toEqual([3]);
    await expect(
      readContext(store, ref, { maxTokens: 100, recount: () => Promise.resolve([]) }),
    ).rejects.toThrow(/recount returned 0 counts for 3 messages/);
  });

  it('starts over when a flush commits between two pages, and gives up after repeated changes', async () => {
    const stored = await log(
      Array.from({ length: 200 }, (_, i) => [msg('user', `m${i}`), 10] as const),
    );
    let flushes = 0;
    const flushing = (times: number): MemoryStore => ({
      ...store,
      async readNewest(r, page) {
        if (!page.withPinned && flushes < times) {
          flushes += 1;
          const oldest = (await store.read(r, { limit: 1 })).messages[0]!.message;
          await summarize([oldest.id], `folded ${flushes}`, 3);
        }
        return store.readNewest(r, page);
      },
    });
    const read = await readContext(flushing(1), ref, { maxTokens: 1_000 });
    expect(flushes).toBe(1);
    expect(read.messages[0]).toEqual({ role: 'system', content: `${SUMMARY_HEADING}\nfolded 1` });
    // The summary (3 + the heading bound) now takes room: 98 messages of 10 tokens fit.
    expect(read.messages.slice(1)).toEqual(chat(stored.slice(-98)));
    flushes = 0;
    await expect(readContext(flushing(100), ref, { maxTokens: 1_000 })).rejects.toBeInstanceOf(
      ConflictError,
    );
    expect(flushes).toBe(4);
  });

  it('reports an epoch that changes with a clear, and an empty instance as empty', async () => {
    expect(await readContext(store, ref, { maxTokens: 100 })).toEqual({
      messages: [],
      tokens: 0,
      exact: true,
      omitted: { messages: 0, tokens: 0 },
      summary: false,
      epoch: undefined,
      throughId: undefined,
    });
    await log([[msg('user', 'hello'), 5]]);
    const before = await readContext(store, ref, { maxTokens: 100 });
    expect(before.epoch).toMatch(/^0:\d+$/);
    expect((await readContext(store, ref, { maxTokens: 100 })).epoch).toBe(before.epoch);
    await store.clear(ref);
    const after = await readContext(store, ref, { maxTokens: 100 });
    expect(after.epoch).not.toBe(before.epoch);
    expect(after.messages).toEqual([]);
  });

  it('refuses a budget that is not an integer >= 1 before reading', async () => {
    for (const maxTokens of [0, -1, 1.5, Number.NaN]) {
      const error = await readContext(store, ref, { maxTokens }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PayloadError);
      expect((error as Error).message).toMatch(/^maxTokens: /);
    }
  });
});
