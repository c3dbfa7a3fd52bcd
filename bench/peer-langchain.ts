/**
 * The peer a user would pick instead of memq, for `npm run bench` (d): LangChain's
 * `RedisChatMessageHistory` (`@langchain/redis`, a Redis LIST of serialized messages per session)
 * plus `trimMessages` (`@langchain/core`) to the same token budget memq's memory keeps.
 *
 * One turn per message, as a LangChain agent does before each model call: add the message to
 * the session's history, read the history back, trim it to `budgetTokens` (strategy `last`)
 * counting tokens exactly with js-tiktoken's o200k_base (LangChain's own tokenizer dependency;
 * optionally memoized per content) and the same 3 framing tokens per message memq uses. Messages of one conversation go in order;
 * conversations run `concurrency` at a time, as memq's workers do.
 *
 * What it does not do that memq does: keep counts (every turn recounts the whole history), persist
 * the trimmed result or a summary, redact, deduplicate, or lock against concurrent writers.
 */
import { pathToFileURL } from 'node:url';
import {
  AIMessage,
  HumanMessage,
  SystemMessage,
  ToolMessage,
  trimMessages,
} from '@langchain/core/messages';
import type { BaseMessage } from '@langchain/core/messages';
import { RedisChatMessageHistory } from '@langchain/redis';
import { Tiktoken } from 'js-tiktoken/lite';
import o200k_base from 'js-tiktoken/ranks/o200k_base';
import { Redis } from 'ioredis';

/** One conversation: its key (appended to `keyPrefix`) and its messages, oldest first. */
export interface PeerConversation {
  readonly key: string;
  readonly messages: ReadonlyArray<{
    readonly role: 'user' | 'assistant' | 'system' | 'tool';
    readonly content: string;
  }>;
}

/** Options of {@link runLangchainPeer}. */
export interface PeerOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379`. */
  readonly redisUrl: string;
  /** Every session key starts with this; the caller deletes the keys afterwards. */
  readonly keyPrefix: string;
  /** The conversations to play. */
  readonly conversations: readonly PeerConversation[];
  /** `trimMessages` `maxTokens`: the token budget of the window (memq's customer-support: 4,000). */
  readonly budgetTokens: number;
  /** Conversations processed at once. */
  readonly concurrency: number;
  /**
   * Memoize token counts per content across turns (a hand-tuned setup). Default false: the
   * documented setup, where `trimMessages`' `tokenCounter` (e.g. a chat model's
   * `getNumTokensFromMessages`, js-tiktoken underneath) recounts the history on every turn.
   */
  readonly memoizeCounts?: boolean;
}

/** What {@link runLangchainPeer} measured. */
export interface PeerResult {
  /** Turns (messages) played. */
  readonly messages: number;
  /** Wall time of the whole run, seconds. */
  readonly seconds: number;
  /** `messages / seconds`. */
  readonly messagesPerSecond: number;
  /** Session keys found under `keyPrefix` afterwards (one per conversation). */
  readonly keysWritten: number;
}

/** memq's framing per chat message (OpenAI's cookbook: 3 tokens per message). */
const FRAMING_TOKENS = 3;

const toMessage = (role: PeerConversation['messages'][number]['role'], content: string) => {
  switch (role) {
    case 'user':
      return new HumanMessage(content);
    case 'assistant':
      return new AIMessage(content);
    case 'system':
      return new SystemMessage(content);
    case 'tool':
      return new ToolMessage({ content, tool_call_id: 'bench' });
  }
};

/**
 * Plays every conversation through LangChain against real Redis and times it.
 * @throws the Redis client's error when Redis is unreachable.
 */
export async function runLangchainPeer(options: PeerOptions): Promise<PeerResult> {
  const encoder = new Tiktoken(o200k_base);
  // trimMessages asks for the tokens of many sub-lists of the history on every turn; as documented
  // every one is re-encoded (quadratic in the history's length); `memoizeCounts` caches per content.
  const counted = new Map<string, number>();
  const contentTokens = (text: string) => {
    if (!options.memoizeCounts) return encoder.encode(text).length;
    let n = counted.get(text);
    if (n === undefined) {
      n = encoder.encode(text).length;
      counted.set(text, n);
    }
    return n;
  };
  const tokenCounter = (messages: BaseMessage[]) =>
    messages.reduce(
      (sum, m) =>
        sum +
        FRAMING_TOKENS +
        contentTokens(typeof m.content === 'string' ? m.content : JSON.stringify(m.content)),
      0,
    );
  // One node-redis client for every session: @langchain/redis pools clients by config object.
  const config = { url: options.redisUrl };
  const client = new RedisChatMessageHistory({ sessionId: options.keyPrefix, config }).client as {
    connect(): Promise<unknown>;
    quit(): Promise<unknown>;
  };
  // Connected up front: concurrent first calls would each call connect() ("Socket already opened").
  await client.connect();
  let messages = 0;
  const started = performance.now();
  try {
    const queue = [...options.conversations];
    const play = async () => {
      for (let conversation = queue.shift(); conversation; conversation = queue.shift()) {
        const history = new RedisChatMessageHistory({
          sessionId: `${options.keyPrefix}${conversation.key}`,
          config,
        });
        for (const { role, content } of conversation.messages) {
          await history.addMessage(toMessage(role, content));
          const window = await trimMessages(await history.getMessages(), {
            maxTokens: options.budgetTokens,
            strategy: 'last',
            tokenCounter,
          });
          if (
            window.length === 0 &&
            content.length > 0 &&
            tokenCounter([toMessage(role, content)]) <= options.budgetTokens
          ) {
            throw new Error('trimMessages returned an empty window for a message within budget');
          }
          messages += 1;
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, play));
    const seconds = (performance.now() - started) / 1000;
    const scanner = new Redis(options.redisUrl, { protocol: 2 });
    let keysWritten = 0;
    try {
      let cursor = '0';
      do {
        const [next, keys] = await scanner.scan(
          cursor,
          'MATCH',
          `${options.keyPrefix}*`,
          'COUNT',
          1000,
        );
        cursor = next;
        keysWritten += keys.length;
      } while (cursor !== '0');
    } finally {
      await scanner.quit();
    }
    return { messages, seconds, messagesPerSecond: messages / seconds, keysWritten };
  } finally {
    await client.quit().catch(() => undefined);
  }
}

// `npx tsx bench/peer-langchain.ts`: the peer alone on 1,000 real messages (50 conversations).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { buildConversations } = await import('../src/replay/corpus.js');
  const { startBenchRedis } = await import('./harness.js');
  const texts = (await buildConversations({ limit: 500 })).conversations.flatMap((c) =>
    c.messages.map((m) => m.content),
  );
  const redis = await startBenchRedis('peer');
  try {
    const n = 1000;
    const conversations: PeerConversation[] = Array.from({ length: 50 }, (_, k) => ({
      key: `thread:${k}`,
      messages: Array.from({ length: n / 50 }, (_, j) => ({
        role: j % 2 ? 'assistant' : 'user',
        content: texts[(k + j * 50) % texts.length]!,
      })),
    }));
    for (const memoizeCounts of [false, true]) {
      const result = await runLangchainPeer({
        redisUrl: redis.url,
        keyPrefix: `peer-${memoizeCounts ? 'memo' : 'doc'}:`,
        conversations,
        budgetTokens: 4000,
        concurrency: 16,
        memoizeCounts,
      });
      console.log(
        `LangChain RedisChatMessageHistory + trimMessages (${memoizeCounts ? 'memoized counts' : 'as documented'}): ${result.messages} messages in ${result.seconds.toFixed(2)} s, ${Math.round(result.messagesPerSecond)} messages/s (${result.keysWritten} keys)`,
      );
    }
  } finally {
    await redis.stop();
  }
}
