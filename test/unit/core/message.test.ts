import { describe, expect, it } from 'vitest';
import {
  MAX_CONTENT_CHARS,
  MessageInputSchema,
  MessageSchema,
  contentChars,
  contentText,
  toolUnits,
  type UnitMessage,
} from '../../../src/core/message.js';

const ID = '01JD0000000000000000000000';
const AT = '2026-12-02T10:00:00.000Z';
const call = (id: string, name = 'get_weather') => ({
  id,
  type: 'function' as const,
  function: { name, arguments: '{"city":"Paris"}' },
});

/** The issue paths of a failed parse, joined with dots. */
function issuesOf(
  value: unknown,
  schema: typeof MessageInputSchema | typeof MessageSchema = MessageInputSchema,
): string[] {
  const parsed = schema.safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('message model', () => {
  it('accepts the OpenAI chat shapes: developer, parts, parallel tool calls, tool results', () => {
    const conversation = [
      { role: 'developer', content: 'Answer in French.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is on this picture?' },
          { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [call('call_1'), call('call_2', 'get_time')],
      },
      { role: 'tool', tool_call_id: 'call_2', content: '10:00' },
      { role: 'tool', tool_call_id: 'call_1', content: [{ type: 'text', text: 'sunny' }] },
      { role: 'assistant', content: '', tool_calls: [call('call_3')] },
    ];
    for (const m of conversation) expect(issuesOf(m)).toEqual([]);
  });

  it('refuses shapes a model API would refuse, naming the field', () => {
    expect(issuesOf({ role: 'user', content: null })).toEqual([
      expect.stringMatching(/^content: content: null only on an assistant message with tool_calls/),
    ]);
    expect(issuesOf({ role: 'user', content: 'x', tool_calls: [call('a')] })[0]).toMatch(
      /^tool_calls: .*only an assistant message/,
    );
    expect(issuesOf({ role: 'tool', content: 'x' })[0]).toMatch(
      /^tool_call_id: .*must name the call it answers/,
    );
    expect(issuesOf({ role: 'user', content: 'x', tool_call_id: 'a' })[0]).toMatch(
      /^tool_call_id: .*only a tool message/,
    );
    expect(
      issuesOf({ role: 'assistant', content: null, tool_calls: [call('a'), call('a')] })[0],
    ).toMatch(/^tool_calls\.1\.id: duplicate tool call id in one message/);
    expect(issuesOf({ role: 'user', content: [{ type: 'audio', data: 'x' }] })).not.toEqual([]);
    expect(
      issuesOf({ role: 'user', content: [{ type: 'text', text: 'x', extra: 1 }] }),
    ).not.toEqual([]);
    expect(issuesOf({ role: 'user', content: 'x', privacy: { unknown: true } })).not.toEqual([]);
  });

  it('takes image parts from users only, as the chat APIs do', () => {
    const image = { type: 'image_url', image_url: { url: 'https://example.com/a.png' } };
    expect(issuesOf({ role: 'user', content: [image] })).toEqual([]);
    for (const role of ['system', 'developer', 'assistant'])
      expect(issuesOf({ role, content: [image] })[0]).toMatch(
        /^content: content: image parts only on a user message/,
      );
    expect(issuesOf({ role: 'tool', tool_call_id: 'a', content: [image] })[0]).toMatch(
      /image parts only on a user message \(role is tool\)/,
    );
  });

  it('bounds the characters of all text, image URLs and arguments together', () => {
    const half = 'a'.repeat(MAX_CONTENT_CHARS / 2);
    const ok = {
      role: 'user',
      content: [
        { type: 'text', text: half },
        { type: 'text', text: half },
      ],
    };
    expect(issuesOf(ok)).toEqual([]);
    const over = {
      role: 'user',
      content: [
        { type: 'text', text: half },
        { type: 'image_url', image_url: { url: `${half}b` } },
      ],
    };
    expect(issuesOf(over)[0]).toMatch(
      /^content: content: expected at most 4194304 characters in all/,
    );
  });

  it('reads back a stored image part on any role (accepted by earlier versions)', () => {
    const image = { type: 'image_url', image_url: { url: 'https://example.com/a.png' } };
    const stored = { id: ID, created_at: AT, role: 'assistant', content: [image] };
    expect(issuesOf(stored, MessageSchema)).toEqual([]);
  });

  it('reads back messages stored before parts and tool calls existed, and never stores privacy', () => {
    const old = { id: ID, created_at: AT, role: 'tool', content: 'result without a call id' };
    expect(MessageSchema.parse(old)).toEqual(old);
    expect(issuesOf({ ...old, privacy: { do_not_persist: true } }, MessageSchema)[0]).toMatch(
      /privacy/,
    );
  });

  it('contentText joins text parts and leaves images out; contentChars counts everything', () => {
    const content = [
      { type: 'text' as const, text: 'ab' },
      { type: 'image_url' as const, image_url: { url: 'https://x/y' } },
      { type: 'text' as const, text: 'c' },
    ];
    expect(contentText(content)).toBe('ab\nc');
    expect(contentText(null)).toBe('');
    expect(contentChars({ content, tool_calls: [call('a')] })).toBe(3 + 11 + 16);
  });
});

describe('toolUnits', () => {
  const ids = (ms: readonly (UnitMessage & { n: number })[]) =>
    toolUnits(ms, (m) => m).map((u) => ({ n: u.items.map((m) => m.n), open: [...u.unanswered] }));
  const user = (n: number) => ({ n, role: 'user' as const });
  const asst = (n: number, ...calls: string[]) => ({
    n,
    role: 'assistant' as const,
    ...(calls.length > 0 ? { tool_calls: calls.map((id) => ({ id })) } : {}),
  });
  const tool = (n: number, answers: string) => ({
    n,
    role: 'tool' as const,
    tool_call_id: answers,
  });

  it('keeps a call with every result answering it by id, and what lies between', () => {
    expect(ids([user(0), asst(1, 'a', 'b'), tool(2, 'b'), user(3), tool(4, 'a'), user(5)])).toEqual(
      [
        { n: [0], open: [] },
        { n: [1, 2, 3, 4], open: [] },
        { n: [5], open: [] },
      ],
    );
  });

  it('merges overlapping calls, and leaves a result whose call is elsewhere on its own', () => {
    expect(
      ids([tool(0, 'gone'), asst(1, 'a'), asst(2, 'b'), tool(3, 'a'), tool(4, 'b'), user(5)]),
    ).toEqual([
      { n: [0], open: [] },
      { n: [1, 2, 3, 4], open: [] },
      { n: [5], open: [] },
    ]);
  });

  it('reports calls no item answers (results beyond a page, or never stored)', () => {
    expect(ids([asst(0, 'a', 'b'), tool(1, 'a'), user(2)])).toEqual([
      { n: [0, 1], open: ['b'] },
      { n: [2], open: [] },
    ]);
  });

  it('pairs a reused id with the nearest call, so turns that reuse call_0 stay apart', () => {
    expect(
      ids([
        user(0),
        asst(1, 'call_0'),
        tool(2, 'call_0'),
        asst(3),
        user(4),
        asst(5, 'call_0'),
        tool(6, 'call_0'),
        user(7),
        asst(8, 'call_0'),
      ]),
    ).toEqual([
      { n: [0], open: [] },
      { n: [1, 2], open: [] },
      { n: [3], open: [] },
      { n: [4], open: [] },
      { n: [5, 6], open: [] },
      { n: [7], open: [] },
      { n: [8], open: ['call_0'] },
    ]);
  });

  it('never lets a result claim a later call: a leftover result stands alone, the new call waits', () => {
    expect(ids([user(0), tool(1, 'call_0'), user(2), asst(3, 'call_0')])).toEqual([
      { n: [0], open: [] },
      { n: [1], open: [] },
      { n: [2], open: [] },
      { n: [3], open: ['call_0'] },
    ]);
  });
});
