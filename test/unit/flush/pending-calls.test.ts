import { describe, expect, it } from 'vitest';
import { FLUSH_STRATEGIES, type MemoryResource } from '../../../src/core/memory-resource.js';
import type { Message } from '../../../src/core/message.js';
import { removableUnits, type FlushPlan, type WindowMessage } from '../../../src/flush/plan.js';
import { planFlush } from '../../../src/flush/strategies.js';
import { testResource } from '../../helpers/memories.js';

let seq = 0;
const at = (
  role: Message['role'],
  content: Message['content'],
  tokens: number,
  extra: Partial<Message> = {},
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
/** An assistant message calling `search` with id `id`, content null (priority ranks it low). */
const calling = (id: string, tokens = 600) =>
  at('assistant', null, tokens, {
    tool_calls: [
      { id, type: 'function', function: { name: 'search', arguments: '{"q": "Rome"}' } },
    ],
  });

/** Ids removed by a plan (evicted or folded). */
const removedBy = (plan: FlushPlan) => new Set([...plan.evictedIds, ...plan.foldedIds]);

/** Token-limited: 1,000 tokens, target 500; hybrid_summary counts a 20-token summary. */
const resourceFor = (strategy: (typeof FLUSH_STRATEGIES)[number]): MemoryResource =>
  testResource({ id: 'pending', flushing: { type: strategy, summaryTokens: 20 } });

/**
 * Four earlier user messages (50 tokens each), the call (600 tokens: no plan reaches the target
 * without removing it), then `after`. 840 tokens or more, target 500.
 */
const conversation = (after: WindowMessage[]) => {
  const earlier = Array.from({ length: 4 }, (_, i) =>
    at('user', `Earlier question number ${i} about the trip.`, 50),
  );
  const asked = calling('call_1');
  return { earlier, asked, window: [...earlier, asked, ...after] };
};

/** What may follow a call while its tool runs, without the model having moved on. */
const whileTheToolRuns: Record<string, () => WindowMessage[]> = {
  'a developer message': () => [at('developer', 'Be brief.', 40)],
  'a user message': () => [at('user', 'Also, please hurry up.', 40)],
  'a developer message and a user message': () => [
    at('developer', 'Be brief.', 40),
    at('user', 'Also, please hurry up.', 40),
  ],
};

describe('a tool call waiting for its result is never removed', () => {
  const cases = FLUSH_STRATEGIES.flatMap((strategy) =>
    Object.keys(whileTheToolRuns).map((after) => ({ strategy, after })),
  );

  it.each(cases)('$strategy, the call followed by $after', ({ strategy, after }) => {
    const { earlier, asked, window } = conversation(whileTheToolRuns[after]!());
    const plan = planFlush(strategy, resourceFor(strategy), { window, summaryTokens: 0 });
    const removed = removedBy(plan);
    expect(removed.has(asked.message.id)).toBe(false);
    // Not vacuous: the plan was over its target and removed the older messages.
    expect(earlier.every((m) => removed.has(m.message.id))).toBe(true);
    expect(plan.after.tokens).toBeGreaterThan(500);
    // Its unit is the open one.
    const units = removableUnits(window);
    expect(units.filter((u) => u.open).map((u) => u.messages.map((m) => m.message.id))).toEqual([
      [asked.message.id],
    ]);
  });
});

describe('a call a later assistant message went on without is abandoned', () => {
  it.each(FLUSH_STRATEGIES)('%s removes it', (strategy) => {
    const { asked, window } = conversation([
      at('user', 'Also, please hurry up.', 40),
      at('assistant', 'The search is taking too long; Rome is lovely in May.', 40),
    ]);
    const plan = planFlush(strategy, resourceFor(strategy), { window, summaryTokens: 0 });
    expect(removedBy(plan).has(asked.message.id)).toBe(true);
    expect(plan.after.tokens).toBeLessThanOrEqual(500);
    expect(removableUnits(window).some((u) => u.open)).toBe(false);
  });

  it('keeps the newest turn open when the model reuses call ids across turns', () => {
    // Both turns call `call_0`: the first is answered, the second waits.
    const first = calling('call_0', 50);
    const answered = at('tool', 'Rome: 24 C.', 50, { tool_call_id: 'call_0' });
    const reply = at('assistant', 'It is 24 C in Rome.', 50);
    const second = calling('call_0', 50);
    const hurry = at('user', 'Also, please hurry up.', 50);
    const units = removableUnits([first, answered, reply, second, hurry]);
    expect(units.map((u) => [u.messages.map((m) => m.message.id), u.open])).toEqual([
      [[first.message.id, answered.message.id], false],
      [[reply.message.id], false],
      [[second.message.id], true],
      [[hurry.message.id], false],
    ]);
  });
});
