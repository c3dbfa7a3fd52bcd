import { describe, expect, it } from 'vitest';
import {
  effectiveLimits,
  needsFlush,
  planSimpleFifo,
  type WindowMessage,
} from '../../../src/flush/plan.js';
import type { MemoryResource } from '../../../src/core/memory-resource.js';
import type { Role } from '../../../src/core/message.js';
import { testResource } from '../../helpers/memories.js';

const base: MemoryResource = testResource({ id: 'm' });

let seq = 0;
const msg = (role: Role, tokens: number): WindowMessage => ({
  message: {
    id: String(++seq).padStart(26, '0'),
    role,
    content: 'x',
    created_at: new Date(0).toISOString(),
  },
  tokens,
});

describe('effective limits and trigger', () => {
  it.each([
    ['token_based with max_tokens', { maxTokens: 500 }, { maxTokens: 500, maxMessages: undefined }],
    [
      'token_based with a ratio of gpt-4o (128k)',
      { maxTokens: undefined, maxContextRatio: 0.5 },
      { maxTokens: 64_000, maxMessages: undefined },
    ],
    [
      'token_based with neither (Compozy default 2000)',
      { maxTokens: undefined },
      { maxTokens: 2000, maxMessages: undefined },
    ],
    [
      'message_count_based default 100',
      { type: 'message_count_based' as const, maxTokens: undefined },
      { maxTokens: undefined, maxMessages: 100 },
    ],
    [
      'buffer limits both',
      { type: 'buffer' as const, maxTokens: 300, maxMessages: 10 },
      { maxTokens: 300, maxMessages: 10 },
    ],
  ])('%s', (_, patch, expected) => {
    expect(effectiveLimits({ ...base, ...patch })).toEqual(expected);
  });

  it('triggers at limit x summarize_threshold', () => {
    expect(needsFlush(base, { tokens: 799, messages: 1 })).toBe(false);
    expect(needsFlush(base, { tokens: 800, messages: 1 })).toBe(true);
  });
});

describe('simple_fifo', () => {
  it('evicts the oldest messages down to limit x target_ratio', () => {
    const window = Array.from({ length: 10 }, () => msg('user', 100));
    const plan = planSimpleFifo(base, window);
    expect(plan.evictedIds).toEqual(window.slice(0, 5).map((m) => m.message.id));
    expect(plan.after).toEqual({ tokens: 500, messages: 5 });
    expect(plan.target.tokens).toBe(500);
  });

  it('never evicts system messages and keeps a tool result with its call', () => {
    const system = msg('system', 100);
    const call = msg('assistant', 100);
    call.message.tool_calls = [
      { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{}' } },
    ];
    const result = msg('tool', 100);
    result.message.tool_call_id = 'call_1';
    const rest = Array.from({ length: 7 }, () => msg('user', 100));
    const plan = planSimpleFifo(base, [system, call, result, ...rest]);
    expect(plan.evictedIds).not.toContain(system.message.id);
    expect(plan.evictedIds.slice(0, 2)).toEqual([call.message.id, result.message.id]);
    expect(plan.after.tokens).toBeLessThanOrEqual(500);
  });

  it('counts the summary and uses estimates for uncounted messages', () => {
    const window = [msg('user', 100), { ...msg('user', 0), tokens: undefined }];
    const plan = planSimpleFifo(base, window, 450);
    expect(plan.before.tokens).toBeGreaterThan(550);
    expect(plan.evictedIds.length).toBeGreaterThan(0);
  });

  it('plans nothing when already under the target', () => {
    expect(planSimpleFifo(base, [msg('user', 100)]).evictedIds).toEqual([]);
  });
});
