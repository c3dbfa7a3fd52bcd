import { describe, expect, it } from 'vitest';
import type { Message, Summary } from '../../../src/core/message.js';
import {
  MemqChatMessageHistory,
  READ_PAGE,
  type HttpReadPage,
  type MemqHttpHistoryClient,
} from '../../../src/langchain/index.js';

/** ULID-shaped id number `n` (ids sort as numbers do). */
const idOf = (n: number) => `01J${String(n).padStart(23, '0')}`;
const message = (n: number): Message => ({
  id: idOf(n),
  role: 'user',
  content: `m${n}`,
  created_at: '2025-01-01T00:00:00.000Z',
});

/**
 * An HTTP-shaped client over an in-memory log that runs `between(readNumber, log)` before each
 * read, so a test can change the log while the history reads its pages.
 */
function scriptedClient(
  log: Message[],
  between: (read: number, log: Message[]) => void,
): MemqHttpHistoryClient & { reads: { offset: number; limit: number }[] } {
  const reads: { offset: number; limit: number }[] = [];
  let summary: Summary | null = null;
  return {
    reads,
    append: () => Promise.reject(new Error('not used')),
    clear: () => Promise.reject(new Error('not used')),
    read(_resource, _key, options = {}): Promise<HttpReadPage> {
      between(reads.length, log);
      const offset = options.offset ?? 0;
      const limit = options.limit ?? 100;
      reads.push({ offset, limit });
      const folded = log.filter((m) => (m.content as string).startsWith('folded'));
      if (folded.length > 0) {
        summary = {
          content: 'summary',
          tokens: 1,
          covers_through_id: folded.at(-1)!.id,
          message_count_covered: folded.length,
          updated_at: '2025-01-01T00:00:00.000Z',
        };
      }
      const live = log.filter((m) => !(m.content as string).startsWith('folded'));
      return Promise.resolve({
        messages: live.slice(offset, offset + limit).map((m) => ({ message: m, tokens: null })),
        summary,
        has_more: offset + limit < live.length,
      });
    },
  };
}

const contents = async (history: MemqChatMessageHistory) =>
  (await history.getMessages()).map((m) => m.content);

describe('MemqChatMessageHistory.getMessages paging', () => {
  it('reads one page when the log fits', async () => {
    const client = scriptedClient([message(1), message(2)], () => {});
    const history = new MemqChatMessageHistory({ client, resource: 'r', key: 'k' });
    expect(await contents(history)).toEqual(['m1', 'm2']);
    expect(client.reads).toEqual([{ offset: 0, limit: READ_PAGE }]);
  });

  it('returns a message once when a late id shifts the page boundary', async () => {
    const log = Array.from({ length: READ_PAGE + 5 }, (_, i) => message(2 * i + 2));
    const before = log.map((m) => m.content);
    const client = scriptedClient(log, (read, l) => {
      if (read === 1) l.splice(1, 0, message(3)); // a late id lands inside page 1 after it was read
    });
    const history = new MemqChatMessageHistory({ client, resource: 'r', key: 'k' });
    // Page 2 starts one message earlier than it would have: its first message is the last of page 1.
    expect(await contents(history)).toEqual(before);
  });

  it('reads again when a flush folded the oldest messages between pages', async () => {
    const log = Array.from({ length: READ_PAGE + 5 }, (_, i) => message(i + 1));
    const client = scriptedClient(log, (read, l) => {
      if (read === 1) for (const m of l.slice(0, 10)) m.content = `folded ${m.content as string}`;
    });
    const history = new MemqChatMessageHistory({ client, resource: 'r', key: 'k' });
    const messages = await history.getMessages();
    // The second attempt sees the summary and the log without the folded messages, none skipped.
    expect(messages[0]!.type).toBe('system');
    expect(messages[0]!.content).toBe('summary');
    expect(messages.slice(1).map((m) => m.content)).toEqual(log.slice(10).map((m) => m.content));
    expect(client.reads.filter((r) => r.offset === 0 && r.limit === READ_PAGE)).toHaveLength(2);
  });
});

describe('MemqChatMessageHistory.addMessages', () => {
  it('refuses a batch with an unmappable message before sending any of it', async () => {
    const { AIMessage, HumanMessage, ToolMessage } = await import('@langchain/core/messages');
    const appended: unknown[] = [];
    const client: MemqHttpHistoryClient = {
      append: (...args: unknown[]) => {
        appended.push(args);
        return Promise.reject(new Error('not expected'));
      },
      clear: () => Promise.reject(new Error('not used')),
      read: () => Promise.reject(new Error('not used')),
    };
    const history = new MemqChatMessageHistory({ client, resource: 'r', key: 'k' });
    await expect(
      history.addMessages([
        new HumanMessage('what is 6 x 7?'),
        new AIMessage({
          content: '',
          tool_calls: [{ id: 'c1', name: 'mul', args: { a: 6, b: 7 }, type: 'tool_call' }],
        }),
        new ToolMessage({ content: '42', tool_call_id: '' }),
      ]),
    ).rejects.toMatchObject({
      name: 'PayloadError',
      details: { field: 'messages[2].tool_call_id' },
    });
    expect(appended).toEqual([]);
  });
});
