/**
 * The peer a user would pick instead of memq, for `npm run bench` (d): LangChain's
 * `RedisChatMessageHistory` (`@langchain/redis`: one Redis LIST of JSON-serialized messages per
 * session, over node-redis 4) plus `trimMessages` (`@langchain/core`) to the same token budget
 * memq's memory keeps.
 *
 * One turn per message, as a LangChain agent does before each model call and as memq's append
 * does for one message: add the message to the session's history, read the whole history back,
 * trim it to `budgetTokens` (strategy `last`) with a token counter that counts exactly as memq
 * does (js-tiktoken o200k_base, gpt-4o's encoding, plus memq's framing: 3 tokens and the role per
 * message). Messages of one conversation go in order; conversations run `concurrency` at a time,
 * as memq's append workers do.
 *
 * Why `@langchain/redis` and not the ioredis store of `@langchain/community`
 * (`stores/message/ioredis`, which would share memq's Redis client library): `@langchain/community`
 * 1.1.29 does not install next to this repository's packages (npm ERESOLVE: its optional peers
 * want zod 3 through `@browserbasehq/stagehand` and ioredis ^5, memq runs zod 4 and ioredis 6).
 *
 * What the peer does not do that memq does: keep counts (every turn recounts the history it
 * trims), persist the trimmed window or a summary (the LIST grows forever), redact, deduplicate,
 * or lock against concurrent writers of one session.
 *
 *   npx tsx bench/peer-langchain.ts   # the peer alone on 2,000 real corpus messages (self-run below)
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
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

/** A message role as memq names it (and as {@link PeerConversation} carries it). */
type PeerRole = 'user' | 'assistant' | 'system' | 'tool';

/** One conversation to play through the peer. */
export interface PeerConversation {
  /**
   * The conversation's key. The peer's session id (its Redis LIST key) is
   * `${PeerOptions.keyPrefix}${key}`; keys must be unique within one run.
   */
  readonly key: string;
  /**
   * Its messages, oldest first, one turn each. `user` becomes a `HumanMessage`, `assistant` an
   * `AIMessage`, `system` a `SystemMessage`, `tool` a `ToolMessage` (tool call id `bench`).
   */
  readonly messages: ReadonlyArray<{
    readonly role: PeerRole;
    readonly content: string;
  }>;
}

/** Options of {@link runLangchainPeer}. */
export interface PeerOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379`. */
  readonly redisUrl: string;
  /**
   * Every key the peer writes starts with this (the session ids are `${keyPrefix}${key}`). No key
   * may exist under it when the run starts; the caller deletes the keys afterwards.
   */
  readonly keyPrefix: string;
  /** The conversations to play (messages in total = turns timed). */
  readonly conversations: readonly PeerConversation[];
  /**
   * `trimMessages` `maxTokens`, in o200k_base tokens counted as memq counts them (content, role
   * and 3 framing tokens per message): the window's budget. memq's customer-support memory keeps
   * 4,000 (`memories/customer-support.yaml`, `max_tokens`). An integer >= 1.
   */
  readonly budgetTokens: number;
  /**
   * Conversations processed at once (each one's messages strictly in order); memq's bench runs
   * its append workers at 16. An integer >= 1.
   */
  readonly concurrency: number;
  /**
   * Memoize token counts per content across turns, a hand-tuned setup. Default `false`: the
   * documented setup, where `trimMessages`' `tokenCounter` (e.g. a chat model's
   * `getNumTokensFromMessages`, js-tiktoken underneath) re-encodes every message it is given.
   * `trimMessages` (strategy `last`) counts the whole history, then the history without its
   * oldest message, and so on until it fits: a turn over budget costs O(history²) encodings.
   */
  readonly memoizeCounts?: boolean;
}

/** What {@link runLangchainPeer} measured. */
export interface PeerResult {
  /** Turns (messages) played: add + read back + trim each. */
  readonly messages: number;
  /** Wall time of all turns (`performance.now()`), seconds; connecting and checks excluded. */
  readonly seconds: number;
  /** `messages / seconds`. */
  readonly messagesPerSecond: number;
  /**
   * Keys under `keyPrefix` after the run (SCAN): one LIST per conversation with at least one
   * message. Their lengths are checked to add up to `messages`.
   */
  readonly keysWritten: number;
  /** Turns whose history was over budget, so `trimMessages` dropped older messages. */
  readonly trimmedTurns: number;
}

/** memq's per-message framing (`TOKENS_PER_MESSAGE`, OpenAI's cookbook), beside the role. */
const FRAMING_TOKENS = 3;

/** memq's role of a LangChain message type (the inverse of {@link toMessage}). */
const ROLE_OF_TYPE: Readonly<Record<string, PeerRole>> = {
  human: 'user',
  ai: 'assistant',
  system: 'system',
  tool: 'tool',
};

const toMessage = (role: PeerRole, content: string): BaseMessage => {
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
 * The `tokenCounter` handed to `trimMessages`: per message, 3 framing tokens, the tokens of
 * memq's role name and of the content, all in o200k_base; optionally memoized per content.
 */
const createTokenCounter = (memoize: boolean) => {
  const encoder = new Tiktoken(o200k_base);
  const encode = (text: string) => encoder.encode(text).length;
  const roleTokens = new Map<string, number>();
  const counted = new Map<string, number>();
  const contentTokens = (text: string) => {
    if (!memoize) return encode(text);
    let n = counted.get(text);
    if (n === undefined) {
      n = encode(text);
      counted.set(text, n);
    }
    return n;
  };
  const messageTokens = (message: BaseMessage) => {
    const type = message.getType();
    let role = roleTokens.get(type);
    if (role === undefined) {
      role = encode(ROLE_OF_TYPE[type] ?? type);
      roleTokens.set(type, role);
    }
    const { content } = message;
    return (
      FRAMING_TOKENS +
      role +
      contentTokens(typeof content === 'string' ? content : JSON.stringify(content))
    );
  };
  return (messages: BaseMessage[]) => messages.reduce((sum, m) => sum + messageTokens(m), 0);
};

/** `prefix` as a SCAN MATCH pattern matching exactly the keys that start with it. */
const matchPrefix = (prefix: string) => `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;

const requirePositiveInteger = (name: string, value: number) => {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
  }
};

/**
 * Plays every conversation through LangChain against real Redis and times it: per message
 * `history.addMessage`, `history.getMessages`, `trimMessages(…, { maxTokens: budgetTokens,
 * strategy: 'last', tokenCounter })` (see {@link PeerOptions} for the counter).
 *
 * Every history shares one node-redis client: `@langchain/redis` pools clients by config
 * object, so all sessions are built from one config, and the client is connected before the
 * first turn (concurrent first calls would each call `connect()`: "Socket already opened"). The
 * client does not reconnect (`reconnectStrategy: false`): an unreachable or lost Redis fails the
 * run instead of hanging or timing reconnects. The client is closed before returning.
 *
 * @throws RangeError when `budgetTokens` or `concurrency` is not an integer >= 1; Error when two
 *   conversations share a key, when keys already exist under `keyPrefix`, when a turn's window
 *   comes back empty although the new message fits the budget, or when the LISTs do not hold
 *   exactly the messages played; the Redis client's error (e.g. ECONNREFUSED) when Redis is
 *   unreachable or a command fails. When a turn fails, the other conversations stop after their
 *   current turn.
 */
export async function runLangchainPeer(options: PeerOptions): Promise<PeerResult> {
  requirePositiveInteger('budgetTokens', options.budgetTokens);
  requirePositiveInteger('concurrency', options.concurrency);
  const keys = new Set(options.conversations.map((c) => c.key));
  if (keys.size !== options.conversations.length) {
    throw new Error('conversation keys must be unique: two conversations would share a history');
  }
  const tokenCounter = createTokenCounter(options.memoizeCounts ?? false);

  // One config object for every history, hence one pooled client (see above).
  const config = { url: options.redisUrl, socket: { reconnectStrategy: false as const } };
  const history = (key: string) =>
    new RedisChatMessageHistory({ sessionId: `${options.keyPrefix}${key}`, config });
  const { client } = history('');
  // node-redis also emits every socket error as an event, which would crash the process without a
  // listener; the same errors reject the pending connect or commands, and those are thrown.
  client.on('error', () => {});
  const sessionKeys = async () => {
    const found: string[] = [];
    for await (const key of client.scanIterator({
      MATCH: matchPrefix(options.keyPrefix),
      COUNT: 1000,
    })) {
      found.push(key);
    }
    return found;
  };

  try {
    await client.connect();
    const leftovers = await sessionKeys();
    if (leftovers.length > 0) {
      throw new Error(
        `${leftovers.length} keys already exist under ${JSON.stringify(options.keyPrefix)}: their messages would join the histories`,
      );
    }

    let messages = 0;
    let trimmedTurns = 0;
    let next = 0;
    let failed = false;
    const play = async () => {
      while (!failed && next < options.conversations.length) {
        const conversation = options.conversations[next++]!;
        const session = history(conversation.key);
        for (const { role, content } of conversation.messages) {
          if (failed) return;
          const message = toMessage(role, content);
          await session.addMessage(message);
          const stored = await session.getMessages();
          const window = await trimMessages(stored, {
            maxTokens: options.budgetTokens,
            strategy: 'last',
            tokenCounter,
          });
          if (window.length < stored.length) trimmedTurns += 1;
          if (window.length === 0 && tokenCounter([message]) <= options.budgetTokens) {
            throw new Error(
              `trimMessages returned an empty window for a message within budget (${conversation.key})`,
            );
          }
          messages += 1;
        }
      }
    };
    const started = performance.now();
    const outcomes = await Promise.allSettled(
      Array.from({ length: Math.min(options.concurrency, options.conversations.length) }, () =>
        play().catch((error: unknown) => {
          failed = true;
          throw error;
        }),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const rejected = outcomes.find((o) => o.status === 'rejected');
    if (rejected) throw rejected.reason;

    // Not timed: the LISTs must hold exactly the messages played.
    const written = await sessionKeys();
    let stored = 0;
    for (const key of written) stored += await client.lLen(key);
    if (stored !== messages) {
      throw new Error(`the histories hold ${stored} messages, ${messages} were played`);
    }
    return {
      messages,
      seconds,
      messagesPerSecond: messages / seconds,
      keysWritten: written.length,
      trimmedTurns,
    };
  } finally {
    if (client.isOpen) await client.quit().catch(() => client.disconnect());
  }
}

// `npx tsx bench/peer-langchain.ts`: the peer alone on the first 2,000 messages of the corpus
// (whole threads as they come, 808 conversations), on a private redis-server, at memq's bench
// concurrency and customer-support budget; as documented, then with memoized counts.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { buildConversations } = await import('../src/replay/corpus.js');
  const { loadMemoryResources } = await import('../src/config/load-memories.js');
  const { startBenchRedis } = await import('./harness.js');
  const registry = await loadMemoryResources(
    fileURLToPath(new URL('../memories', import.meta.url)),
  );
  const budgetTokens = registry.get('customer-support').maxTokens ?? 4000;
  const corpus = await buildConversations({ limit: 2000 });
  const conversations: PeerConversation[] = corpus.conversations.map((c) => ({
    key: c.threadId,
    messages: c.messages.map(({ role, content }) => ({ role, content })),
  }));
  const redis = await startBenchRedis('peer');
  try {
    for (const memoizeCounts of [false, true]) {
      const result = await runLangchainPeer({
        redisUrl: redis.url,
        keyPrefix: `peer-${memoizeCounts ? 'memo' : 'doc'}:`,
        conversations,
        budgetTokens,
        concurrency: 16,
        memoizeCounts,
      });
      console.log(
        `LangChain RedisChatMessageHistory + trimMessages (${memoizeCounts ? 'memoized counts' : 'as documented'}, ${budgetTokens} tokens, concurrency 16): ` +
          `${result.messages} messages in ${conversations.length} conversations, ${result.seconds.toFixed(2)} s, ` +
          `${Math.round(result.messagesPerSecond)} messages/s (${result.keysWritten} keys, ${result.trimmedTurns} turns trimmed)`,
      );
    }
  } finally {
    await redis.stop();
  }
}
