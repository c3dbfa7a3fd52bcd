import { describe, expect, it } from 'vitest';
import { FLUSH_STRATEGIES, type MemoryResource } from '../../../src/core/memory-resource.js';
import { PINNED_ROLES, type Message, type ToolCall } from '../../../src/core/message.js';
import {
  planPrefix,
  removableUnits,
  type FlushPlan,
  type WindowMessage,
} from '../../../src/flush/plan.js';
import { planFlush, type AccessStats } from '../../../src/flush/strategies.js';
import { testResource } from '../../helpers/memories.js';

let seq = 0;
const at = (
  role: Message['role'],
  content: Message['content'],
  extra: Partial<Message> = {},
  tokens = 40,
): WindowMessage => ({
  message: {
    id: String(++seq).padStart(26, '0'),
    role,
    content,
    created_at: new Date(0).toISOString(),
    ...extra,
  },
  tokens,
});
const call = (id: string, name: string, args: string): ToolCall => ({
  id,
  type: 'function',
  function: { name, arguments: args },
});
const result = (callId: string, content: string, tokens?: number) =>
  at('tool', content, { tool_call_id: callId }, tokens);

/** Ids removed by a plan (evicted or folded). */
const removedBy = (plan: FlushPlan) => new Set([...plan.evictedIds, ...plan.foldedIds]);

/**
 * What a user must never observe after a flush: a tool call kept while a result answering it
 * went, or a result kept while its call went (a result whose call was never in the window is
 * free to go alone), or a pinned (system, developer) message removed.
 */
function expectUnitsWhole(window: readonly WindowMessage[], plan: FlushPlan) {
  const removed = removedBy(plan);
  const callAt = new Map<string, WindowMessage>();
  for (const m of window) for (const c of m.message.tool_calls ?? []) callAt.set(c.id, m);
  for (const m of window) {
    if (PINNED_ROLES.has(m.message.role)) expect(removed.has(m.message.id), 'pinned').toBe(false);
    const id = m.message.tool_call_id;
    const caller = id === undefined ? undefined : callAt.get(id);
    if (caller === undefined) continue;
    expect(
      removed.has(m.message.id),
      `result of ${id} removed ${removed.has(m.message.id)}, its call ${removed.has(caller.message.id)}`,
    ).toBe(removed.has(caller.message.id));
  }
}

/**
 * A window (40 tokens a message, 19 messages, 760 tokens; target 500) whose tool results are not
 * adjacent to their calls: a user message between a call and its results, parallel calls
 * answered out of order by two tool messages with a developer message between them, and a
 * result whose call is not in the log (flushed before).
 */
function scatteredWindow() {
  const w = {
    system: at('system', 'You are a weather agent.'),
    developer: at('developer', 'Answer in metric units.'),
    orphan: result('call_flushed_before', 'Result of a call flushed in an earlier flush.'),
    ask: at('user', 'What is the weather in Paris and Rome today?'),
    parallel: at('assistant', null, {
      tool_calls: [
        call('call_paris', 'get_weather', '{"city": "Paris"}'),
        call('call_rome', 'get_weather', '{"city": "Rome"}'),
      ],
    }),
    between: at('user', 'Also, please hurry up with this one.'),
    rome: result('call_rome', 'Rome: 24 C, sunny.'),
    developerInside: at('developer', 'Tools may answer out of order.'),
    paris: result('call_paris', 'Paris: 18 C, cloudy.'),
    answer: at('assistant', 'Paris is 18 C and Rome is 24 C today.'),
    timeCall: at('assistant', 'Checking the time.', {
      tool_calls: [call('call_time', 'get_time', '{}')],
    }),
    thanks: at('user', 'thanks'),
    time: result('call_time', '14:05'),
  };
  const tail = Array.from({ length: 6 }, (_, i) =>
    at(i % 2 ? 'assistant' : 'user', `An ordinary later sentence number ${i}.`),
  );
  return { ...w, window: [...Object.values(w), ...tail] };
}

const resourceFor = (strategy: (typeof FLUSH_STRATEGIES)[number]): MemoryResource =>
  testResource({ id: 'units', flushing: { type: strategy, summaryTokens: 20 } });

describe('every strategy removes whole tool units, matched by id, and keeps pinned messages', () => {
  const w = scatteredWindow();
  // Recently and often read: the Paris result (a call's result read on its own must keep its
  // call), and the tail; never read: the rest.
  const reads: AccessStats = {
    lastAccessMs: new Map([
      [w.paris.message.id, 5_000],
      ...w.window.slice(-6).map((m, i): [string, number] => [m.message.id, 6_000 + i]),
    ]),
    count: new Map([
      [w.paris.message.id, 9],
      ...w.window.slice(-6).map((m): [string, number] => [m.message.id, 3]),
    ]),
  };

  it.each(FLUSH_STRATEGIES)('%s', (strategy) => {
    const plan = planFlush(strategy, resourceFor(strategy), {
      window: w.window,
      summaryTokens: 0,
      access: reads,
    });
    expectUnitsWhole(w.window, plan);
    const removed = removedBy(plan);
    // Not vacuous: the plan removed a unit with a tool call, and met its target.
    expect(w.window.some((m) => m.message.tool_calls && removed.has(m.message.id))).toBe(true);
    expect(plan.after.tokens).toBeLessThanOrEqual(500);
  });

  it('groups by id: the call, what lies between, and every result, minus pinned messages', () => {
    const units = removableUnits(w.window).map((u) => u.messages.map((m) => m.message.id));
    const ids = (...ms: WindowMessage[]) => ms.map((m) => m.message.id);
    expect(units.slice(0, 6)).toEqual([
      ids(w.orphan),
      ids(w.ask),
      ids(w.parallel, w.between, w.rome, w.paris),
      ids(w.answer),
      ids(w.timeCall, w.thanks, w.time),
      ids(w.window[13]!),
    ]);
    // simple_fifo: the orphaned result goes alone, then whole units oldest first.
    const plan = planFlush('simple_fifo', resourceFor('simple_fifo'), {
      window: w.window,
      summaryTokens: 0,
    });
    expect(plan.evictedIds).toEqual(units.slice(0, 4).flat());
  });
});

describe('calls whose results are not in the window', () => {
  /** 10 ordinary messages and, in the middle, a call answered only by `answers`. */
  const withCall = (answers: WindowMessage[], after = 5) => {
    const before = Array.from({ length: 4 }, (_, i) =>
      at('user', `Earlier message ${i}.`, {}, 100),
    );
    const asked = at('assistant', null, {
      tool_calls: [call('call_open', 'search', '{"q": "flights"}')],
    });
    const later = Array.from({ length: after }, (_, i) =>
      at('user', `Later message ${i}.`, {}, 100),
    );
    return { asked, window: [...before, asked, ...answers, ...later] };
  };

  it('stop a plan from the oldest pages before the call, and say more must be read', () => {
    const { asked, window } = withCall([]);
    for (const strategy of ['simple_fifo', 'hybrid_summary'] as const) {
      // The whole memory is over its target; this is only its first page.
      const { plan, short } = planPrefix(strategy, resourceFor(strategy), {
        window,
        summaryTokens: 0,
        usage: { tokens: 5_000, messages: 50 },
        complete: false,
      });
      expect(removedBy(plan).has(asked.message.id), strategy).toBe(false);
      expect(plan.evictedIds.length + plan.foldedIds.length, strategy).toBe(4);
      expect(short, strategy).toBe(true);
    }
  });

  it('never remove the newest unit while its call waits for results', () => {
    const asked = at('assistant', 'Searching.', {
      tool_calls: [call('call_wait', 'search', '{}'), call('call_done', 'search', '{}')],
    });
    // One of two parallel results is in; the newest, and by far the largest, unit is open.
    const window = [
      ...Array.from({ length: 3 }, (_, i) => at('user', `Earlier message ${i}.`, {}, 100)),
      asked,
      result('call_done', 'Found 3 flights.', 600),
    ];
    for (const strategy of FLUSH_STRATEGIES) {
      const plan = planFlush(strategy, resourceFor(strategy), { window, summaryTokens: 0 });
      expect(removedBy(plan).has(asked.message.id), strategy).toBe(false);
      expect(removedBy(plan).has(window[4]!.message.id), strategy).toBe(false);
    }
  });

  it('take a call never answered, once a later assistant message follows it in the whole log, as removable alone', () => {
    // The model went on without the result (user messages alone would leave the call waiting).
    const { asked, window: asking } = withCall([], 5);
    const window = [...asking, at('assistant', 'Going on without the search.', {}, 100)];
    for (const strategy of FLUSH_STRATEGIES) {
      const plan = planFlush(strategy, resourceFor(strategy), { window, summaryTokens: 0 });
      expect(removedBy(plan).has(asked.message.id), strategy).toBe(true);
      expectUnitsWhole(window, plan);
    }
  });

  it('keep a result whose call may be on a later page', () => {
    // Ids order a result before its call when they were assigned so (appends commit in id order).
    const early = result('call_later', 'A result committed before its call.');
    const window = [at('user', 'First.'), early, at('user', 'Third.')];
    const partial = removableUnits(window, false);
    expect(partial.map((u) => u.open)).toEqual([false, true, false]);
    expect(removableUnits(window, true).map((u) => u.open)).toEqual([false, false, false]);
  });
});
