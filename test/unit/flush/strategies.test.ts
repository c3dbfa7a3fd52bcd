import { describe, expect, it } from 'vitest';
import type { WindowMessage } from '../../../src/flush/plan.js';
import type { MemoryResource } from '../../../src/core/memory-resource.js';
import type { Message, Role } from '../../../src/core/message.js';
import {
  planFlush,
  planLfu,
  planLru,
  planPriority,
  planTokenAwareLru,
  priorityOf,
  summaryBudget,
  type AccessStats,
} from '../../../src/flush/strategies.js';
import { testResource } from '../../helpers/memories.js';

const resource = (over: Partial<MemoryResource> = {}): MemoryResource =>
  testResource({ id: 's', flushing: { type: 'lru', summaryTokens: 200 }, ...over });

let seq = 0;
const win = (
  role: Role,
  tokens: number,
  content = 'a normal message here',
  metadata?: Message['metadata'],
): WindowMessage => ({
  message: {
    id: String(++seq).padStart(26, '0'),
    role,
    content,
    created_at: new Date(0).toISOString(),
    ...(metadata ? { metadata } : {}),
  },
  tokens,
});
const ids = (ms: readonly WindowMessage[]) => ms.map((m) => m.message.id);
/** `m` calling tool `id`. */
const withCall = (m: WindowMessage, id: string): WindowMessage => ({
  ...m,
  message: {
    ...m.message,
    tool_calls: [{ id, type: 'function', function: { name: 'lookup', arguments: '{}' } }],
  },
});
/** `m` answering tool call `id`. */
const answer = (m: WindowMessage, id: string): WindowMessage => ({
  ...m,
  message: { ...m.message, tool_call_id: id },
});
const access = (last: Record<string, number>, count: Record<string, number> = {}): AccessStats => ({
  lastAccessMs: new Map(Object.entries(last)),
  count: new Map(Object.entries(count)),
});

describe('eviction strategies (pure planners)', () => {
  // 10 x 100 tokens = 1000; target 500 -> 5 messages go.
  const window = () => Array.from({ length: 10 }, (_, i) => win(i % 2 ? 'assistant' : 'user', 100));

  it('lru without recorded reads evicts oldest first, like Compozy', () => {
    const w = window();
    const plan = planLru(resource(), { window: w, summaryTokens: 0 });
    expect(plan.evictedIds).toEqual(ids(w.slice(0, 5)));
    expect(plan.after).toEqual({ tokens: 500, messages: 5 });
  });

  it('lru evicts the least recently read: never-read first, then oldest read', () => {
    const w = window();
    const reads = access({
      [w[0]!.message.id]: 50,
      [w[1]!.message.id]: 10,
      [w[2]!.message.id]: 99,
    });
    const plan = planLru(resource(), { window: w, summaryTokens: 0, access: reads });
    // Never read: 3..9 (oldest first) -> 3, 4, 5, 6, 7 go; the read ones stay.
    expect(plan.evictedIds).toEqual(ids(w.slice(3, 8)));
  });

  it('lfu evicts the least often read first, oldest first among equals', () => {
    const w = window();
    const counts: Record<string, number> = {};
    w.forEach((m, i) => (counts[m.message.id] = i < 5 ? 3 : i === 9 ? 0 : 1));
    const plan = planLfu(resource(), { window: w, summaryTokens: 0, access: access({}, counts) });
    expect(plan.evictedIds).toEqual(ids([w[5]!, w[6]!, w[7]!, w[8]!, w[9]!]));
  });

  it('token_aware_lru keeps the most recently read that fit the token budget', () => {
    const system = win('system', 100);
    const big = win('user', 350);
    const small = Array.from({ length: 6 }, () => win('assistant', 100));
    const w = [system, big, ...small];
    // budget = 500 target - 100 system = 400; read order: small ones recently, big most recently.
    const reads = access(
      Object.fromEntries<number>([
        ...small.map((m, i): [string, number] => [m.message.id, 10 + i]),
        [big.message.id, 100],
      ]),
    );
    const plan = planTokenAwareLru(resource(), { window: w, summaryTokens: 0, access: reads });
    expect(plan.evictedIds).not.toContain(system.message.id);
    expect(plan.evictedIds).not.toContain(big.message.id);
    expect(plan.after.tokens).toBeLessThanOrEqual(500);
    expect(plan.evictedIds).toEqual(ids(small));
  });

  it('priority classes: metadata, system, small talk, keywords, recency', () => {
    const w = [
      win('system', 10, 'You are terse.'),
      win('user', 10, 'ok'),
      win('user', 10, 'There is an urgent error in billing'),
      win('user', 10, 'let us talk about the weather today'),
      win('user', 10, 'pinned by the caller', { priority: 'critical' }),
    ];
    expect(w.map((m, i) => priorityOf(m, i, 10))).toEqual([
      'critical',
      'low',
      'high',
      'medium',
      'critical',
    ]);
    expect(priorityOf(w[3]!, 9, 10)).toBe('high'); // in the newest 20 %
  });

  it('priority evicts low, then medium, then high, never critical', () => {
    const w = [
      win('system', 100, 'You are a support agent.'),
      win('user', 100, 'important: my order failed'),
      win('user', 100, 'the weather is nice around here'),
      win('assistant', 100, 'thanks'),
      win('user', 100, 'keep this one', { priority: 'critical' }),
      win('user', 100, 'another ordinary sentence here'),
      win('assistant', 100, 'ok'),
      win('user', 100, 'a third ordinary sentence here'),
      win('assistant', 100, 'a fourth ordinary sentence here'),
      win('user', 100, 'newest message with news'),
    ];
    const plan = planPriority(resource(), { window: w, summaryTokens: 0 });
    // low: 'thanks', 'ok'; then medium oldest first: weather, another, third.
    expect(plan.evictedIds).toEqual(ids([w[2]!, w[3]!, w[5]!, w[6]!, w[7]!]));
    expect(plan.evictedIds).not.toContain(w[4]!.message.id);
  });

  it('never separates a tool call from its result, in any strategy', () => {
    const call = withCall(win('assistant', 100, 'calling the lookup tool now'), 'call_lookup');
    const result = answer(win('tool', 100, 'lookup result payload here'), 'call_lookup');
    const rest = Array.from({ length: 8 }, () => win('user', 100));
    for (const strategy of ['simple_fifo', 'lru', 'lfu', 'token_aware_lru', 'priority'] as const) {
      const plan = planFlush(strategy, resource(), {
        window: [call, result, ...rest],
        summaryTokens: 0,
      });
      const removed = new Set(plan.evictedIds);
      expect(removed.has(call.message.id)).toBe(removed.has(result.message.id));
    }
  });
});

describe('token_allocation', () => {
  const allocation = { shortTerm: 0.3, longTerm: 0.2, system: 0.5 };

  it('evicts more raw messages until short-term fits limit x short_term', () => {
    const w = Array.from({ length: 10 }, () => win('user', 100));
    const plan = planFlush('simple_fifo', resource({ tokenAllocation: allocation }), {
      window: w,
      summaryTokens: 0,
    });
    // Without allocation 5 go (target 500); short-term budget 300 -> 7 go.
    expect(plan.evictedIds).toEqual(ids(w.slice(0, 7)));
    expect(plan.after).toEqual({ tokens: 300, messages: 3 });
  });

  it('folds (not evicts) the extra for hybrid_summary, keeping the fold a prefix', () => {
    const w = Array.from({ length: 10 }, () => win('user', 100));
    const plan = planFlush(
      'hybrid_summary',
      resource({
        tokenAllocation: allocation,
        flushing: { ...resource().flushing, type: 'hybrid_summary' },
      }),
      { window: w, summaryTokens: 0 },
    );
    expect(plan.evictedIds).toEqual([]);
    expect(plan.foldedIds).toEqual(ids(w.slice(0, 7)));
  });

  it('takes system tokens beyond the system share out of the short-term cap', () => {
    // limit 1000, flush target 750; system share 0.1 (100 tokens), short_term 0.5 (500 tokens).
    const split = resource({
      tokenAllocation: { shortTerm: 0.5, longTerm: 0.4, system: 0.1 },
      flushing: { ...resource().flushing, targetRatio: 0.75 },
    });
    const w = [win('system', 300), ...Array.from({ length: 8 }, () => win('user', 100))];
    for (const strategy of ['simple_fifo', 'lru', 'priority'] as const) {
      const plan = planFlush(strategy, split, { window: w, summaryTokens: 0 });
      // The target alone keeps 4 raw messages (700 tokens), the 500-token cap alone 5; the 200
      // system tokens over their share leave 300 of it: 3 stay.
      expect(plan.evictedIds, strategy).toEqual(ids(w.slice(1, 6)));
      expect(plan.after, strategy).toEqual({ tokens: 600, messages: 4 });
    }
    // Within their share, system messages take nothing from the cap: 5 raw messages stay.
    const within = [win('system', 100), ...Array.from({ length: 8 }, () => win('user', 100))];
    const plan = planFlush('simple_fifo', split, { window: within, summaryTokens: 0 });
    expect(plan.after).toEqual({ tokens: 600, messages: 6 });
  });

  it('caps the summary at limit x long_term, and never removes system messages', () => {
    expect(summaryBudget(resource({ tokenAllocation: allocation }))).toBe(200);
    expect(summaryBudget(resource({ tokenAllocation: { ...allocation, longTerm: 0.1 } }))).toBe(
      100,
    );
    expect(summaryBudget(resource())).toBe(200);
    const w = [win('system', 700), ...Array.from({ length: 4 }, () => win('user', 100))];
    const plan = planFlush('lru', resource({ tokenAllocation: allocation }), {
      window: w,
      summaryTokens: 0,
    });
    expect(plan.evictedIds).not.toContain(w[0]!.message.id);
  });
});
