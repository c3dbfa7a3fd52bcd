import type { BaseMessage } from '@langchain/core/messages';
import { AIMessage, HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';
import { ChatPromptTemplate, MessagesPlaceholder } from '@langchain/core/prompts';
import { RunnableWithMessageHistory } from '@langchain/core/runnables';
import { FakeListChatModel } from '@langchain/core/utils/testing';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createMemoryRegistry,
  parseMemoryResource,
  type MemoryRegistry,
} from '../../src/config/load-memories.js';
import { listen, type HttpServer } from '../../src/http/app.js';
import { MemqHttpClient } from '../../src/client/http.js';
import {
  MemqChatMessageHistory,
  type MemqHistoryClient,
  type MemqHttpHistoryClient,
} from '../../src/langchain/index.js';
import type { MemoryClient } from '../../queues/memory-client.js';
import { KEYS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

/** A resource with room for more than one read page (1,000 messages). */
const LONG_CHAT = `resource: memory
id: long-chat
type: message_count_based
max_messages: 5000
flushing:
  type: fifo
persistence:
  type: redis
  ttl: 1h
`;

/** Where each client under test writes, and how the test reads what memq stored. */
interface Setup {
  /** The client the history is built over. */
  readonly client: MemqHistoryClient;
  /** The in-process client of the same project, to check what memq stored. */
  readonly inspect: MemoryClient;
}

let ns: RedisNamespace;
let http: TestHttp;
let server: HttpServer;
const setups: Record<'in-process' | 'HTTP', () => Setup> = {
  'in-process': () => ({ client: http.pipeline.client, inspect: http.pipeline.client }),
  HTTP: () => {
    const client: MemqHttpHistoryClient = new MemqHttpClient({
      baseUrl: `http://127.0.0.1:${server.port}`,
      apiKey: KEYS.acme, // project acme
    });
    return { client, inspect: http.pipeline.client.forProject('acme') };
  },
};

beforeAll(async () => {
  ns = createRedisNamespace();
  const long = parseMemoryResource(LONG_CHAT, 'long-chat.yaml');
  expect(long.problems).toEqual([]);
  const registry: MemoryRegistry = createMemoryRegistry([
    ...(await shippedMemories()).list(),
    long.resource!,
  ]);
  http = await startHttp(ns, registry);
  server = await listen(http.app, 0);
});
afterAll(async () => {
  await server?.close();
  await http?.close();
  await ns?.cleanup();
});

/** Type (`system`, `human`, `ai`, `tool`) and content of each message, for comparing histories. */
const shapes = (messages: readonly BaseMessage[]): [string, unknown][] =>
  messages.map((m) => [m.type, m.content]);

describe.each(['in-process', 'HTTP'] as const)(
  'MemqChatMessageHistory over the %s client',
  (kind) => {
    it('keeps a RunnableWithMessageHistory conversation in memq, redacted, in order', async () => {
      const { client, inspect } = setups[kind]();
      const answers = [
        'Sorry to hear that. What is the order number?',
        'Order 1042 ships tomorrow.',
        'You are welcome.',
      ];
      const prompt = ChatPromptTemplate.fromMessages([
        ['system', 'You are a support agent.'],
        new MessagesPlaceholder('history'),
        ['human', '{question}'],
      ]);
      const chain = new RunnableWithMessageHistory({
        runnable: prompt.pipe(new FakeListChatModel({ responses: answers })),
        getMessageHistory: (sessionId: string) =>
          new MemqChatMessageHistory({
            client,
            resource: 'customer-support',
            key: `support:${sessionId}`,
          }),
        inputMessagesKey: 'question',
        historyMessagesKey: 'history',
      });
      const prompts: BaseMessage[][] = [];
      const callbacks = [
        { handleChatModelStart: (_llm: unknown, m: BaseMessage[][]) => void prompts.push(m[0]!) },
      ];
      const session = `${kind === 'HTTP' ? 'h' : 'p'}-conversation`;
      const questions = [
        'My order is late, mail me at jane.doe@example.com',
        'It is order 1042',
        'Thanks!',
      ];
      for (const [i, question] of questions.entries()) {
        const answer = await chain.invoke(
          { question },
          { configurable: { sessionId: session }, callbacks },
        );
        expect(answer.content).toBe(answers[i]);
      }

      // What memq stored: the turns in order, the e-mail redacted before it reached Redis.
      const target = { resource: 'customer-support', key: `support:${session}` };
      const stored = await inspect.read(target);
      expect(stored.messages.map((m) => [m.message.role, m.message.content])).toEqual([
        ['user', 'My order is late, mail me at [REDACTED]'],
        ['assistant', answers[0]],
        ['user', 'It is order 1042'],
        ['assistant', answers[1]],
        ['user', 'Thanks!'],
        ['assistant', answers[2]],
      ]);

      // The third model call got its history from memq (the redacted text), after the system prompt.
      expect(shapes(prompts[2]!)).toEqual([
        ['system', 'You are a support agent.'],
        ['human', 'My order is late, mail me at [REDACTED]'],
        ['ai', answers[0]],
        ['human', 'It is order 1042'],
        ['ai', answers[1]],
        ['human', 'Thanks!'],
      ]);

      // A new history object over the same session reads the same messages, with memq's ids.
      const history = new MemqChatMessageHistory({ client, ...target });
      const messages = await history.getMessages();
      expect(messages.map((m) => m.id)).toEqual(stored.messages.map((m) => m.message.id));
      expect(shapes(messages)).toEqual(
        shapes(prompts[2]!)
          .slice(1)
          .concat([['ai', answers[2]]]),
      );

      // Another session is another instance.
      expect(
        await new MemqChatMessageHistory({
          client,
          ...target,
          key: `${target.key}-other`,
        }).getMessages(),
      ).toEqual([]);

      await history.clear();
      expect(await history.getMessages()).toEqual([]);
      expect((await inspect.read(target)).total).toBe(0);
    });

    it('returns the rolling summary as a leading SystemMessage after a hybrid_summary flush', async () => {
      const { client, inspect } = setups[kind]();
      const target = {
        resource: 'customer-support',
        key: `support:${kind === 'HTTP' ? 'h' : 'p'}-summary`,
      };
      const history = new MemqChatMessageHistory({ client, ...target });
      await history.addMessages(
        Array.from({ length: 10 }, (_, i) =>
          i % 2 === 0
            ? new HumanMessage(`Question ${i} about order ${1000 + i}.`)
            : new AIMessage(`Answer ${i} about order ${1000 + i}.`),
        ),
      );
      expect(await history.getMessages()).toHaveLength(10); // read-your-writes, no summary yet

      await inspect.waitFor(await inspect.flush(target, { strategy: 'hybrid_summary' }));
      const window = await inspect.read(target);
      const summary = window.summary!;
      expect(summary.message_count_covered).toBeGreaterThanOrEqual(3); // 30 % of 10

      const messages = await history.getMessages();
      expect(messages[0]).toBeInstanceOf(SystemMessage);
      expect(messages[0]!.content).toBe(summary.content);
      expect(messages[0]!.response_metadata).toEqual({
        memq_summary: {
          covers_through_id: summary.covers_through_id,
          message_count_covered: summary.message_count_covered,
          updated_at: summary.updated_at,
        },
      });
      expect(messages.slice(1).map((m) => m.content)).toEqual(
        window.messages.map((m) => m.message.content),
      );
      expect(messages).toHaveLength(1 + 10 - summary.message_count_covered);
    });

    it('round-trips tool calls, tool results, images and the developer role', async () => {
      const { client, inspect } = setups[kind]();
      const target = { resource: 'chat-buffer', key: `chat:${kind === 'HTTP' ? 'h' : 'p'}-tools` };
      const history = new MemqChatMessageHistory({ client, ...target });
      const call = {
        id: 'call_1',
        name: 'order_status',
        args: { order: 1042 },
        type: 'tool_call' as const,
      };
      const photo = {
        type: 'image_url' as const,
        image_url: { url: 'https://example.com/label.png', detail: 'low' as const },
      };
      await history.addMessages([
        new SystemMessage({
          content: 'Use tools.',
          additional_kwargs: { __openai_role__: 'developer' },
        }),
        new HumanMessage({
          content: [{ type: 'text', text: 'Where is 1042?' }, photo],
          name: 'jane',
        }),
        new AIMessage({
          content: '',
          tool_calls: [call],
          invalid_tool_calls: [
            {
              id: 'call_2',
              name: 'order_status',
              args: '{"order": 10',
              error: 'x',
              type: 'invalid_tool_call',
            },
          ],
        }),
        new ToolMessage({ content: 'shipped', tool_call_id: 'call_1', name: 'order_status' }),
        new AIMessage('It has shipped.'),
      ]);
      const stored = (await inspect.read(target)).messages.map((m) => m.message);
      expect(stored.map((m) => m.role)).toEqual([
        'developer',
        'user',
        'assistant',
        'tool',
        'assistant',
      ]);
      expect(stored[1]!.content).toEqual([{ type: 'text', text: 'Where is 1042?' }, photo]);
      expect(stored[2]).toMatchObject({
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'order_status', arguments: '{"order":1042}' },
          },
          {
            id: 'call_2',
            type: 'function',
            function: { name: 'order_status', arguments: '{"order": 10' },
          },
        ],
      });
      expect(stored[2]!.metadata).toBeUndefined();
      expect(stored[3]).toMatchObject({ tool_call_id: 'call_1', name: 'order_status' });

      const [system, human, ai, tool, final] = await history.getMessages();
      expect(system).toBeInstanceOf(SystemMessage);
      expect(system!.additional_kwargs).toEqual({ __openai_role__: 'developer' });
      expect(human).toBeInstanceOf(HumanMessage);
      expect(human!.name).toBe('jane');
      expect(human!.content).toEqual([{ type: 'text', text: 'Where is 1042?' }, photo]);
      expect((ai as AIMessage).tool_calls).toEqual([call]);
      expect((ai as AIMessage).invalid_tool_calls).toMatchObject([
        { id: 'call_2', args: '{"order": 10' },
      ]);
      expect(tool).toBeInstanceOf(ToolMessage);
      expect(tool).toMatchObject({
        content: 'shipped',
        tool_call_id: 'call_1',
        name: 'order_status',
      });
      expect(final).toMatchObject({ content: 'It has shipped.' });

      // Read back and stored again, the history is what it was.
      const copy = new MemqChatMessageHistory({ client, ...target, key: `${target.key}-copy` });
      await copy.addMessages(await history.getMessages());
      const copied = (await inspect.read({ ...target, key: `${target.key}-copy` })).messages;
      expect(copied.map((m) => ({ ...m.message, id: '', created_at: '' }))).toEqual(
        stored.map((m) => ({ ...m, id: '', created_at: '' })),
      );
    });

    it('refuses an unmappable message before storing any of the batch', async () => {
      const { client, inspect } = setups[kind]();
      const target = {
        resource: 'chat-buffer',
        key: `chat:${kind === 'HTTP' ? 'h' : 'p'}-refused`,
      };
      const history = new MemqChatMessageHistory({ client, ...target });
      await expect(
        history.addMessages([
          new HumanMessage('fine'),
          new HumanMessage({
            content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }],
          }),
        ]),
      ).rejects.toThrow(
        /messages\[1\]\.content\[0\]: memq stores text and OpenAI-style image_url blocks/,
      );
      expect((await inspect.read(target)).total).toBe(0);
    });

    it('resolves addMessages and clear only once memq has done them (read-your-writes)', async () => {
      const { client } = setups[kind]();
      const target = { resource: 'chat-buffer', key: `chat:${kind === 'HTTP' ? 'h' : 'p'}-ryw` };
      const history = new MemqChatMessageHistory({ client, ...target });
      const { queues } = http.pipeline;
      /** Runs `call` with `queue` paused: it must still be pending once its job is in the queue. */
      const heldUntilDone = async (queue: Queue, call: () => Promise<void>) => {
        await queue.pause();
        let settled = false;
        const pending = call().finally(() => {
          settled = true;
        });
        try {
          await eventually(
            async () => ((await queue.getJobCounts('waiting')).waiting ?? 0) > 0,
            'the job in the paused queue',
          );
          await new Promise((r) => setTimeout(r, 100));
          expect(settled).toBe(false);
        } finally {
          await queue.resume();
        }
        await pending;
      };
      await heldUntilDone(queues.append, () => history.addMessages([new HumanMessage('hello')]));
      expect(shapes(await history.getMessages())).toEqual([['human', 'hello']]);
      await heldUntilDone(queues.cleanup, () => history.clear());
      expect(await history.getMessages()).toEqual([]);
    });

    it('reads every page of a history longer than one read', async () => {
      const { client, inspect } = setups[kind]();
      const target = { resource: 'long-chat', key: `long:${kind === 'HTTP' ? 'h' : 'p'}` };
      const history = new MemqChatMessageHistory({ client, ...target });
      const sent = Array.from({ length: 1050 }, (_, i) => new HumanMessage(`message ${i}`));
      await history.addMessages(sent);
      expect((await inspect.read(target)).total).toBe(1050);
      const messages = await history.getMessages();
      expect(messages.map((m) => m.content)).toEqual(sent.map((m) => m.content));
    });
  },
);
