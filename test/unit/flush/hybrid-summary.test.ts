import { describe, expect, it } from 'vitest';
import { planHybridSummary, type WindowMessage } from '../../../src/flush/plan.js';
import type { MemoryResource } from '../../../src/core/memory-resource.js';
import type { Message, Role } from '../../../src/core/message.js';
import {
  asChatMessages,
  excerptOf,
  summarizeExtractive,
  SUMMARY_HEADING,
} from '../../../src/flush/summary.js';
import { createTokenCounter } from '../../../src/tokens/counter.js';
import { testResource } from '../../helpers/memories.js';

const hybrid: MemoryResource = testResource({
  id: 'h',
  flushing: { type: 'hybrid_summary', summaryTokens: 100 },
});

let seq = 0;
const message = (role: Role, content = 'x'): Message => ({
  id: String(++seq).padStart(26, '0'),
  role,
  content,
  created_at: new Date(0).toISOString(),
});
const win = (role: Role, tokens: number): WindowMessage => ({ message: message(role), tokens });
const ids = (window: readonly WindowMessage[]) => window.map((m) => m.message.id);

describe('hybrid_summary planner', () => {
  it('folds the oldest messages down to the target, counting the summary at its full budget', () => {
    // 10 x 90 = 900 tokens (over 800); target 500 with a 100-token summary -> keep 400 = 4 msgs.
    const window = Array.from({ length: 10 }, (_, i) => win(i % 2 ? 'assistant' : 'user', 90));
    const plan = planHybridSummary(hybrid, window);
    expect(plan.strategy).toBe('hybrid_summary');
    expect(plan.evictedIds).toEqual([]);
    expect(plan.foldedIds).toEqual(ids(window.slice(0, 6)));
    expect(plan.before).toEqual({ tokens: 900, messages: 10 });
    expect(plan.after).toEqual({ tokens: 100 + 4 * 90, messages: 4 });
  });

  it('folds at least summarize_oldest_percent even when the target is already met', () => {
    const window = Array.from({ length: 10 }, () => win('user', 10));
    const plan = planHybridSummary(hybrid, window);
    expect(plan.foldedIds).toEqual(ids(window.slice(0, 3)));
  });

  it('keeps system messages and never separates a tool call from its result', () => {
    const system = win('system', 50);
    const call = win('assistant', 100);
    call.message.tool_calls = [
      { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{}' } },
    ];
    const result = win('tool', 300);
    result.message.tool_call_id = 'call_1';
    const rest = Array.from({ length: 5 }, () => win('user', 100));
    const plan = planHybridSummary(hybrid, [system, call, result, ...rest]);
    expect(plan.foldedIds).not.toContain(system.message.id);
    expect(plan.foldedIds.slice(0, 2)).toEqual([call.message.id, result.message.id]);
    // Folding is a prefix of the removable messages: nothing folded while an older one stays.
    const removable = ids([call, result, ...rest]);
    expect(removable.slice(0, plan.foldedIds.length)).toEqual(plan.foldedIds);
  });

  it('replaces the old summary in usage and folds nothing from a window of system messages', () => {
    const window = [win('system', 600), win('system', 300)];
    const plan = planHybridSummary(hybrid, window, 80);
    expect(plan.foldedIds).toEqual([]);
    expect(plan.after).toEqual(plan.before);
    expect(plan.before.tokens).toBe(980);
  });
});

describe('rule-based extractive summarizer', () => {
  it('writes one line per folded message: role and first sentence, whitespace collapsed', () => {
    expect(excerptOf(message('user', 'Hello   there.\nSecond sentence here.'))).toBe(
      '- user: Hello there.',
    );
    expect(excerptOf({ ...message('assistant', 'x'.repeat(500)), name: 'bot' })).toBe(
      `- assistant (bot): ${'x'.repeat(197)}...`,
    );
    expect(excerptOf(message('user', '   '))).toBe('- user: (empty)');
  });

  it('rolls the previous summary forward and stays within the budget, dropping oldest lines', async () => {
    const counter = await createTokenCounter('o200k_base');
    const count = (text: string) => counter.countMessage({ role: 'system', content: text });
    const folded = Array.from({ length: 30 }, (_, i) =>
      message(i % 2 ? 'assistant' : 'user', `Message number ${i} talks about topic ${i}. More.`),
    );
    const first = summarizeExtractive({
      folded: folded.slice(0, 3),
      maxTokens: 200,
      countTokens: count,
    });
    expect(first.split('\n')).toEqual(folded.slice(0, 3).map((m) => excerptOf(m)));
    const rolled = summarizeExtractive({
      previous: first,
      folded: folded.slice(3),
      maxTokens: 60,
      countTokens: count,
    });
    expect(count(rolled)).toBeLessThanOrEqual(60);
    // The newest folded message is kept; the oldest lines went first.
    expect(rolled.split('\n').at(-1)).toBe(excerptOf(folded.at(-1)!));
    expect(rolled).not.toContain('Message number 0 ');
    // Deterministic.
    expect(
      summarizeExtractive({
        previous: first,
        folded: folded.slice(3),
        maxTokens: 60,
        countTokens: count,
      }),
    ).toBe(rolled);
  });

  it('cuts a single line that alone exceeds the budget, and returns empty when nothing fits', async () => {
    const counter = await createTokenCounter('o200k_base');
    const count = (text: string) => counter.countMessage({ role: 'system', content: text });
    const long = message('user', 'word '.repeat(100) + '.');
    const cut = summarizeExtractive({ folded: [long], maxTokens: 20, countTokens: count });
    expect(count(cut)).toBeLessThanOrEqual(20);
    expect(excerptOf(long).startsWith(cut)).toBe(true);
    expect(cut.length).toBeGreaterThan(10);
    expect(summarizeExtractive({ folded: [long], maxTokens: 3, countTokens: count })).toBe('');
  });
});

describe('format=messages', () => {
  it('renders the summary as one leading system message, then the messages', () => {
    const a = { ...message('user', 'hi there'), name: 'jane', metadata: { k: 'v' } };
    const b = { ...message('tool', '42'), tool_call_id: 'call_1' };
    expect(asChatMessages({ content: '- user: earlier.' }, [a, b])).toEqual([
      { role: 'system', content: `${SUMMARY_HEADING}\n- user: earlier.` },
      { role: 'user', content: 'hi there', name: 'jane' },
      { role: 'tool', content: '42', tool_call_id: 'call_1' },
    ]);
    expect(asChatMessages(undefined, [a])).toEqual([
      { role: 'user', content: 'hi there', name: 'jane' },
    ]);
  });
});
