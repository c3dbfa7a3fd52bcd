import {
  AIMessage,
  ChatMessage,
  FunctionMessage,
  HumanMessage,
  SystemMessage,
  ToolMessage,
} from '@langchain/core/messages';
import { describe, expect, it } from 'vitest';
import { MessageInputSchema, type Message } from '../../../src/core/message.js';
import { PayloadError } from '../../../src/core/errors.js';
import {
  APPEND_BATCH,
  READ_PAGE,
  fromMemqMessage,
  summaryMessage,
  toMemqMessage,
} from '../../../src/langchain/index.js';
import { MAX_MESSAGES_PER_APPEND } from '../../../queues/job-contracts.js';
import { MAX_PAGE_SIZE } from '../../../src/store/memory-store.js';

const stored = (fields: Partial<Message> & Pick<Message, 'role' | 'content'>): Message => ({
  id: '01HZZZZZZZZZZZZZZZZZZZZZZZ',
  created_at: '2025-01-01T00:00:00.000Z',
  ...fields,
});

describe('LangChain -> memq messages', () => {
  it('maps human, ai, system and tool messages to memq roles, keeping name and tool_call_id', () => {
    const mapped = [
      toMemqMessage(new HumanMessage({ content: 'hi', name: 'jane' })),
      toMemqMessage(new AIMessage('hello')),
      toMemqMessage(new SystemMessage('be brief')),
      toMemqMessage(new ToolMessage({ content: '42', tool_call_id: 'call_1', status: 'error' })),
    ];
    expect(mapped).toEqual([
      { role: 'user', content: 'hi', name: 'jane' },
      { role: 'assistant', content: 'hello' },
      { role: 'system', content: 'be brief' },
      {
        role: 'tool',
        content: '42',
        tool_call_id: 'call_1',
        metadata: { lc_tool_status: 'error' },
      },
    ]);
    for (const m of mapped) expect(MessageInputSchema.safeParse(m).success).toBe(true);
  });

  it('keeps an AI message tool calls as JSON metadata, and they come back as tool calls', () => {
    const ai = new AIMessage({
      content: '',
      tool_calls: [{ id: 'call_1', name: 'lookup', args: { order: 1042 }, type: 'tool_call' }],
    });
    const mapped = toMemqMessage(ai);
    expect(mapped.role).toBe('assistant');
    expect(JSON.parse(mapped.metadata!.lc_tool_calls as string)).toEqual([
      { id: 'call_1', name: 'lookup', args: { order: 1042 } },
    ]);
    expect(MessageInputSchema.safeParse(mapped).success).toBe(true);

    const back = fromMemqMessage(stored(mapped)) as AIMessage;
    expect(back).toBeInstanceOf(AIMessage);
    expect(back.tool_calls).toEqual([
      { id: 'call_1', name: 'lookup', args: { order: 1042 }, type: 'tool_call' },
    ]);
  });

  it('refuses an AI message with invalid tool calls instead of dropping them, naming the field', () => {
    const ai = new AIMessage({
      content: 'let me look',
      invalid_tool_calls: [
        {
          id: 'call_2',
          name: 'lookup',
          args: '{"order":',
          error: 'truncated JSON',
          type: 'invalid_tool_call',
        },
      ],
    });
    expect(ai.invalid_tool_calls).toHaveLength(1);
    let error: unknown;
    try {
      toMemqMessage(ai, 'messages[3]');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PayloadError);
    expect((error as PayloadError).message).toMatch(/^messages\[3\]\.invalid_tool_calls: /);
    expect((error as PayloadError).details).toMatchObject({
      field: 'messages[3].invalid_tool_calls',
    });
    // Without invalid calls the same message maps.
    expect(
      toMemqMessage(new AIMessage({ content: 'let me look', invalid_tool_calls: [] })),
    ).toEqual({
      role: 'assistant',
      content: 'let me look',
    });
  });

  it('refuses a ToolMessage with an empty tool_call_id, naming the field', () => {
    let error: unknown;
    try {
      toMemqMessage(new ToolMessage({ content: '42', tool_call_id: '' }), 'messages[1]');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PayloadError);
    expect((error as PayloadError).message).toMatch(/^messages\[1\]\.tool_call_id: /);
    expect((error as PayloadError).details).toMatchObject({ field: 'messages[1].tool_call_id' });
  });

  it('refuses tool calls longer than a metadata value can hold', () => {
    const ai = new AIMessage({
      content: '',
      tool_calls: [{ id: 'c', name: 'write', args: { text: 'x'.repeat(5000) }, type: 'tool_call' }],
    });
    expect(() => toMemqMessage(ai, 'messages[1]')).toThrow(/messages\[1\]\.tool_calls: .*4096/);
  });

  it('joins text blocks and drops reasoning and tool_use blocks of AI messages', () => {
    expect(
      toMemqMessage(
        new HumanMessage({
          content: [
            { type: 'text', text: 'part one, ' },
            { type: 'text', text: 'part two' },
          ],
        }),
      ).content,
    ).toBe('part one, part two');
    expect(
      toMemqMessage(
        new AIMessage({
          content: [
            { type: 'thinking', thinking: 'hmm' },
            { type: 'text', text: 'answer' },
            { type: 'tool_use', id: 'c', name: 'f', input: {} },
          ],
        }),
      ).content,
    ).toBe('answer');
  });

  it('refuses content memq cannot store as text, naming the block', () => {
    const image = new HumanMessage({
      content: [
        { type: 'text', text: 'look' },
        { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
      ],
    });
    expect(() => toMemqMessage(image, 'messages[0]')).toThrow(PayloadError);
    expect(() => toMemqMessage(image, 'messages[0]')).toThrow(
      /messages\[0\]\.content\[1\]: memq stores text only; a "image_url" content block/,
    );
  });

  it('maps ChatMessage by role and refuses roles and types memq has none for', () => {
    expect(toMemqMessage(new ChatMessage('hi', 'human'))).toEqual({ role: 'user', content: 'hi' });
    expect(toMemqMessage(new ChatMessage('ok', 'assistant'))).toEqual({
      role: 'assistant',
      content: 'ok',
    });
    expect(() => toMemqMessage(new ChatMessage('x', 'critic'))).toThrow(
      /ChatMessage with role "critic" has no memq role/,
    );
    expect(() => toMemqMessage(new FunctionMessage({ content: 'x', name: 'f' }))).toThrow(
      /a "function" message has no memq role/,
    );
  });
});

describe('memq -> LangChain messages', () => {
  it('maps roles back to message classes with memq ids', () => {
    const user = fromMemqMessage(stored({ role: 'user', content: 'hi', name: 'jane' }));
    expect(user).toBeInstanceOf(HumanMessage);
    expect(user).toMatchObject({ content: 'hi', name: 'jane', id: '01HZZZZZZZZZZZZZZZZZZZZZZZ' });
    expect(fromMemqMessage(stored({ role: 'assistant', content: 'a' }))).toBeInstanceOf(AIMessage);
    expect(fromMemqMessage(stored({ role: 'system', content: 's' }))).toBeInstanceOf(SystemMessage);
    const tool = fromMemqMessage(
      stored({
        role: 'tool',
        content: '42',
        tool_call_id: 'call_1',
        metadata: { lc_tool_status: 'success' },
      }),
    );
    expect(tool).toBeInstanceOf(ToolMessage);
    expect(tool).toMatchObject({ tool_call_id: 'call_1', status: 'success' });
  });

  it('ignores tool-call metadata a redact pattern made unreadable', () => {
    const ai = fromMemqMessage(
      stored({ role: 'assistant', content: 'x', metadata: { lc_tool_calls: '[REDACTED]' } }),
    ) as AIMessage;
    expect(ai.content).toBe('x');
    expect(ai.tool_calls).toEqual([]);
  });

  it('turns the summary into a system message that says what it covers', () => {
    const message = summaryMessage({
      content: 'Earlier: the order was late.',
      tokens: 9,
      covers_through_id: '01HZZZZZZZZZZZZZZZZZZZZZZZ',
      message_count_covered: 12,
      updated_at: '2025-01-01T00:00:00.000Z',
    });
    expect(message).toBeInstanceOf(SystemMessage);
    expect(message.content).toBe('Earlier: the order was late.');
    expect(message.response_metadata).toEqual({
      memq_summary: {
        covers_through_id: '01HZZZZZZZZZZZZZZZZZZZZZZZ',
        message_count_covered: 12,
        updated_at: '2025-01-01T00:00:00.000Z',
      },
    });
  });
});

describe('limits', () => {
  it('batches and pages at memq own limits', () => {
    expect(APPEND_BATCH).toBe(MAX_MESSAGES_PER_APPEND);
    expect(READ_PAGE).toBe(MAX_PAGE_SIZE);
  });
});
