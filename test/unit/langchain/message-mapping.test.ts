import {
  AIMessage,
  ChatMessage,
  FunctionMessage,
  HumanMessage,
  SystemMessage,
  ToolMessage,
} from '@langchain/core/messages';
import { describe, expect, it } from 'vitest';
import { coerceMessageLikeToMessage } from '@langchain/core/messages';
import { MessageInputSchema, type Message, type MessageInput } from '../../../src/core/message.js';
import { PayloadError } from '../../../src/core/errors.js';
import {
  APPEND_BATCH,
  READ_PAGE,
  UNPARSEABLE_ARGUMENTS_ERROR,
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

  it('maps an AI message tool calls to OpenAI-format tool calls, content null when empty', () => {
    const ai = new AIMessage({
      content: '',
      tool_calls: [{ id: 'call_1', name: 'lookup', args: { order: 1042 }, type: 'tool_call' }],
    });
    const mapped = toMemqMessage(ai);
    expect(mapped).toEqual({
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          id: 'call_1',
          type: 'function',
          function: { name: 'lookup', arguments: '{"order":1042}' },
        },
      ],
    });
    expect(MessageInputSchema.safeParse(mapped).success).toBe(true);
    const back = fromMemqMessage(stored(mapped)) as AIMessage;
    expect(back).toBeInstanceOf(AIMessage);
    expect(back.content).toBe('');
    expect(back.tool_calls).toEqual([
      { id: 'call_1', name: 'lookup', args: { order: 1042 }, type: 'tool_call' },
    ]);
  });

  it('stores invalid tool calls with their text as written, and reads them back as invalid', () => {
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
    const mapped = toMemqMessage(ai, 'messages[3]');
    expect(mapped.tool_calls).toEqual([
      { id: 'call_2', type: 'function', function: { name: 'lookup', arguments: '{"order":' } },
    ]);
    const back = fromMemqMessage(stored(mapped)) as AIMessage;
    expect(back.tool_calls).toEqual([]);
    expect(back.invalid_tool_calls).toEqual([
      {
        id: 'call_2',
        name: 'lookup',
        args: '{"order":',
        error: UNPARSEABLE_ARGUMENTS_ERROR,
        type: 'invalid_tool_call',
      },
    ]);
  });

  it('refuses tool calls without an id or a name, naming the field', () => {
    const cases: Array<[AIMessage, RegExp, string]> = [
      [
        new AIMessage({ content: '', tool_calls: [{ name: 'f', args: {}, type: 'tool_call' }] }),
        /^messages\[2\]\.tool_calls\[0\]\.id: /,
        'messages[2].tool_calls[0].id',
      ],
      [
        new AIMessage({
          content: '',
          invalid_tool_calls: [{ id: 'c', args: '{', error: 'x', type: 'invalid_tool_call' }],
        }),
        /^messages\[2\]\.invalid_tool_calls\[0\]\.name: /,
        'messages[2].invalid_tool_calls[0].name',
      ],
    ];
    for (const [message, pattern, field] of cases) {
      let error: unknown;
      try {
        toMemqMessage(message, 'messages[2]');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(PayloadError);
      expect((error as PayloadError).message).toMatch(pattern);
      expect((error as PayloadError).details).toMatchObject({ field });
    }
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

  it('keeps text blocks as parts and drops reasoning and tool_use blocks of AI messages', () => {
    expect(
      toMemqMessage(
        new HumanMessage({
          // A bare string in the list (older LangChain content) is a text part too.
          content: [
            { type: 'text', text: 'part one, ' },
            'part two',
          ] as unknown as HumanMessage['content'],
        }),
      ).content,
    ).toEqual([
      { type: 'text', text: 'part one, ' },
      { type: 'text', text: 'part two' },
    ]);
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
    ).toEqual([{ type: 'text', text: 'answer' }]);
  });

  it('maps OpenAI-style image_url blocks to image parts, a bare URL string too', () => {
    const mapped = toMemqMessage(
      new HumanMessage({
        content: [
          { type: 'text', text: 'look' },
          { type: 'image_url', image_url: 'https://example.com/a.png' },
          {
            type: 'image_url',
            image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' },
          },
        ],
      }),
    );
    expect(mapped.content).toEqual([
      { type: 'text', text: 'look' },
      { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
      {
        type: 'image_url',
        image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' },
      },
    ]);
    expect(MessageInputSchema.safeParse(mapped).success).toBe(true);
  });

  it('refuses content blocks memq does not store, naming the block', () => {
    const refused: Array<[unknown, RegExp]> = [
      [
        { type: 'image', source_type: 'url', url: 'https://example.com/a.png' },
        /messages\[0\]\.content\[1\]: memq stores text and OpenAI-style image_url blocks; a "image" content block/,
      ],
      [
        { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
        /messages\[0\]\.content\[1\]: .*a "input_audio" content block/,
      ],
      [
        { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'ultra' } },
        /messages\[0\]\.content\[1\]\.image_url\.detail: expected one of auto, low, high, got "ultra"/,
      ],
      [{ type: 'image_url', image_url: { url: '' } }, /content\[1\]\.image_url\.url: /],
    ];
    for (const [block, pattern] of refused) {
      const message = new HumanMessage({
        content: [{ type: 'text', text: 'look' }, block] as HumanMessage['content'],
      });
      expect(() => toMemqMessage(message, 'messages[0]')).toThrow(PayloadError);
      expect(() => toMemqMessage(message, 'messages[0]')).toThrow(pattern);
    }
  });

  it('maps a developer SystemMessage and a developer ChatMessage to developer', () => {
    const developer = new SystemMessage({
      content: 'Answer in French.',
      additional_kwargs: { __openai_role__: 'developer' },
    });
    expect(toMemqMessage(developer)).toEqual({ role: 'developer', content: 'Answer in French.' });
    expect(toMemqMessage(new ChatMessage('Be brief.', 'developer'))).toEqual({
      role: 'developer',
      content: 'Be brief.',
    });
    // LangChain's own coercion of a ["developer", text] message agrees.
    expect(toMemqMessage(coerceMessageLikeToMessage(['developer', 'Be brief.']))).toEqual({
      role: 'developer',
      content: 'Be brief.',
    });
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

  it('reads tool calls of messages stored in metadata.lc_tool_calls, and stores them as tool_calls', () => {
    const legacy = stored({
      role: 'assistant',
      content: '',
      metadata: {
        lc_tool_calls: JSON.stringify([{ id: 'call_1', name: 'lookup', args: { order: 1 } }]),
      },
    });
    const ai = fromMemqMessage(legacy) as AIMessage;
    expect(ai.tool_calls).toEqual([
      { id: 'call_1', name: 'lookup', args: { order: 1 }, type: 'tool_call' },
    ]);
    expect(toMemqMessage(ai)).toEqual({
      role: 'assistant',
      content: null,
      tool_calls: [
        { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"order":1}' } },
      ],
    });
  });

  it('maps developer to a SystemMessage marked as OpenAI does', () => {
    const message = fromMemqMessage(stored({ role: 'developer', content: 'Answer in French.' }));
    expect(message).toBeInstanceOf(SystemMessage);
    expect(message.additional_kwargs).toEqual({ __openai_role__: 'developer' });
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

describe('round trips', () => {
  const image = (url: string, detail?: 'auto' | 'low' | 'high') =>
    ({ type: 'image_url', image_url: { url, ...(detail ? { detail } : {}) } }) as const;
  const call = (id: string, name: string, args: string) =>
    ({ id, type: 'function', function: { name, arguments: args } }) as const;
  /** Every shape of the memq message model LangChain can hold. */
  const shapes: MessageInput[] = [
    { role: 'user', content: 'hi', name: 'jane' },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'What is on ' },
        { type: 'text', text: 'these?' },
        image('https://example.com/a.png', 'low'),
        image('data:image/png;base64,iVBORw0KGgo='),
        image('https://example.com/b.png', 'auto'),
      ],
    },
    { role: 'system', content: 'You are a support agent.' },
    { role: 'developer', content: 'Answer in French.' },
    { role: 'developer', content: [{ type: 'text', text: 'Be brief.' }] },
    { role: 'assistant', content: 'It has shipped.' },
    { role: 'assistant', content: [{ type: 'text', text: 'Checking.' }] },
    // Arguments as the model wrote them (spacing), an unparseable one between two good ones.
    {
      role: 'assistant',
      content: null,
      tool_calls: [
        call('call_1', 'get_weather', '{"city": "Paris",\n "unit": "C"}'),
        call('call_2', 'lookup', '{"order": 10'),
        call('call_3', 'lookup', '[1, 2]'),
        call('call_4', 'track', '{}'),
      ],
    },
    {
      role: 'assistant',
      content: [{ type: 'text', text: 'Let me check.' }],
      tool_calls: [call('call_5', 'track', '{"id":"1042"}')],
    },
    {
      role: 'tool',
      content: 'shipped',
      tool_call_id: 'call_4',
      name: 'track',
      metadata: { lc_tool_status: 'success' },
    },
    {
      role: 'tool',
      content: [{ type: 'text', text: '{"temperature": 21}' }],
      tool_call_id: 'call_1',
    },
  ];

  it('memq -> LangChain -> memq gives back every shape unchanged', () => {
    for (const shape of shapes) {
      expect(MessageInputSchema.safeParse(shape).success).toBe(true);
      expect(toMemqMessage(fromMemqMessage(stored(shape as Message)))).toEqual(shape);
    }
  });

  it('LangChain -> memq -> LangChain keeps type, content, name, tool calls and tool results', () => {
    const messages = [
      new HumanMessage({
        content: [{ type: 'text', text: 'look' }, image('https://x/a.png', 'high')],
      }),
      new SystemMessage({ content: 'dev', additional_kwargs: { __openai_role__: 'developer' } }),
      new AIMessage({
        content: '',
        tool_calls: [
          { id: 'a', name: 'f', args: { x: [1, { y: null }] }, type: 'tool_call' },
          { id: 'b', name: 'g', args: {}, type: 'tool_call' },
        ],
        invalid_tool_calls: [
          { id: 'c', name: 'h', args: 'not json', error: 'bad', type: 'invalid_tool_call' },
        ],
      }),
      new ToolMessage({ content: 'ok', tool_call_id: 'a', status: 'error', name: 'f' }),
    ];
    const back = messages.map((m) => fromMemqMessage(stored(toMemqMessage(m) as Message)));
    for (const [i, m] of messages.entries()) {
      expect(back[i]!.type).toBe(m.type);
      expect(back[i]!.content).toEqual(m.content);
      expect(back[i]!.name).toBe(m.name);
    }
    expect(back[1]!.additional_kwargs.__openai_role__).toBe('developer');
    const ai = back[2] as AIMessage;
    expect(ai.tool_calls).toEqual((messages[2] as AIMessage).tool_calls);
    // The parse error is LangChain's own; memq keeps the call and its text.
    expect(ai.invalid_tool_calls).toEqual([
      {
        id: 'c',
        name: 'h',
        args: 'not json',
        error: UNPARSEABLE_ARGUMENTS_ERROR,
        type: 'invalid_tool_call',
      },
    ]);
    expect(back[3]).toMatchObject({ tool_call_id: 'a', status: 'error', name: 'f' });
  });

  it('stores an assistant message with tool calls and empty content as null content', () => {
    const shape: MessageInput = {
      role: 'assistant',
      content: '',
      tool_calls: [call('call_1', 'f', '{}')],
    };
    expect(toMemqMessage(fromMemqMessage(stored(shape as Message)))).toEqual({
      ...shape,
      content: null,
    });
  });

  it('writes edited tool-call args, not the stale text', () => {
    const ai = fromMemqMessage(
      stored({ role: 'assistant', content: null, tool_calls: [call('c', 'f', '{"a": 1}')] }),
    ) as AIMessage;
    ai.tool_calls![0]!.args = { a: 2 };
    expect(toMemqMessage(ai).tool_calls).toEqual([call('c', 'f', '{"a":2}')]);
  });
});
