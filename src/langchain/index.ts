/**
 * `memq/langchain`: a LangChain.js chat message history stored in memq, for
 * `RunnableWithMessageHistory` and anything else that takes a `BaseListChatMessageHistory`.
 * Needs `@langchain/core` (an optional peer dependency of memq): only LangChain users load this
 * entry. Message mapping: src/langchain/message-mapping.ts.
 */
import { BaseListChatMessageHistory } from '@langchain/core/chat_history';
import type { BaseMessage } from '@langchain/core/messages';
import { PayloadError } from '../core/errors.js';
import { NAME_PATTERN, validateMemoryKey } from '../core/memory-key.js';
import type { Message, MessageInput, Summary } from '../core/message.js';
import { historyBackend, type HistoryBackend, type MemqHistoryClient } from './clients.js';
import { fromMemqMessage, summaryMessage, toMemqMessage } from './message-mapping.js';

export {
  isInProcessClient,
  type HttpReadPage,
  type InProcessHistoryClient,
  type MemqHistoryClient,
  type MemqHttpHistoryClient,
} from './clients.js';
export {
  OPENAI_ROLE_KWARG,
  TOOL_CALLS_METADATA_KEY,
  TOOL_STATUS_METADATA_KEY,
  UNPARSEABLE_ARGUMENTS_ERROR,
  fromMemqMessage,
  summaryMessage,
  toMemqMessage,
} from './message-mapping.js';

/**
 * Messages per append job: memq's limit (`MAX_MESSAGES_PER_APPEND`, queues/job-contracts.ts).
 * `addMessages` with more appends in batches of this size, one after the other.
 */
export const APPEND_BATCH = 100;

/** Messages per read: the largest page memq serves (`MAX_PAGE_SIZE`, src/store/memory-store.ts). */
export const READ_PAGE = 1000;

/**
 * Times `getMessages` reads a history of more than one page before it returns what it read last:
 * a read is retried when the oldest message or the summary changed while the pages were read (a
 * flush, clear or write in between).
 */
export const MAX_READ_ATTEMPTS = 3;

/** Options of {@link MemqChatMessageHistory}. */
export interface MemqChatMessageHistoryOptions {
  /**
   * The memq client: the in-process `MemoryClient` (queues/memory-client.ts, e.g. from
   * `connect()`), or the HTTP client (`MemqHttpClient`, src/client/http.ts). The project is the
   * client's (in process: `client.project`; over HTTP: the API key's).
   */
  readonly client: MemqHistoryClient;
  /** Memory resource id (a file in `memories/`): 1-100 of `[A-Za-z0-9_-]`, starting with a letter or digit. */
  readonly resource: string;
  /**
   * Instance key, e.g. `chat:42` (typically built from LangChain's `sessionId`): 1-256 of
   * `[A-Za-z0-9_:\-@.]`, not starting or ending with `__` (`validateMemoryKey`,
   * src/core/memory-key.ts). Key templates are not accepted here: render the key first.
   */
  readonly key: string;
}

/**
 * A LangChain.js `BaseListChatMessageHistory` over one memq memory instance (`resource` + `key`).
 *
 * - `addMessage` / `addMessages` map LangChain messages to memq messages (`toMemqMessage`:
 *   human -> user, ai -> assistant with its tool calls, system -> system (or developer, marked
 *   by `additional_kwargs.__openai_role__`), tool -> tool; text and OpenAI-style image blocks
 *   as content parts; a content block of another kind, a tool call without id, or a tool message
 *   with an empty `tool_call_id` is refused with `PayloadError` before anything is sent) and
 *   resolve once memq committed them, so a following `getMessages` sees them. The resource's
 *   privacy policy applies: redact patterns rewrite content before it is stored, and roles in
 *   `non_persistable_message_types` are dropped (they never come back from `getMessages`).
 * - `getMessages` returns memq's rolling summary (when a flush made one) as a leading
 *   `SystemMessage` (`summaryMessage`), then every message of the log, oldest first.
 * - `clear` removes every message and the summary of the instance and resolves once done.
 *
 * Errors are memq's: `PayloadError` (invalid message), `MemoryNotFoundError` (undeclared
 * resource), `BackpressureError`, `JobFailedError`, `JobTimeoutError` (the commit took longer
 * than 30 s; the job goes on), `RedisUnavailableError`, or the HTTP client's errors
 * (`MemqHttpError`, `MemqNetworkError`). `RunnableWithMessageHistory` (@langchain/core 1.x)
 * stores a turn from a run listener that logs an `addMessages` error and does not throw it: the
 * invoke still resolves. Call `addMessages` yourself where a lost turn must fail the call.
 */
export class MemqChatMessageHistory extends BaseListChatMessageHistory {
  /** LangChain's serialisation namespace (the class is not serialisable: it holds a client). */
  lc_namespace = ['langchain', 'stores', 'message', 'memq'];

  /** The memory resource id. */
  readonly resource: string;
  /** The instance key. */
  readonly key: string;

  readonly #backend: HistoryBackend;

  /**
   * Validates the options; does no I/O (an undeclared resource surfaces on the first call).
   * @throws PayloadError when `client` is not a memq client, `resource` is not 1-100 of
   *   `[A-Za-z0-9_-]` or `key` breaks memq's key rules (the message names the field and the rule).
   */
  constructor(options: MemqChatMessageHistoryOptions) {
    const { client, resource, key } = validateOptions(options);
    super({ resource, key });
    this.resource = resource;
    this.key = key;
    this.#backend = historyBackend(client, resource, key);
  }

  /**
   * The rolling summary as a leading `SystemMessage` (when there is one), then the instance's
   * messages oldest first, read page by page ({@link READ_PAGE} per read). A history longer than
   * one page is re-read when its oldest message or its summary changed between pages (a flush,
   * clear or write in between), up to {@link MAX_READ_ATTEMPTS} reads, the last of which is
   * returned whatever happened during it; a message seen twice (a page boundary shifted by a
   * late id) is returned once.
   */
  async getMessages(): Promise<BaseMessage[]> {
    let read = await this.#readAll();
    for (let attempt = 1; attempt < MAX_READ_ATTEMPTS && !read.stable; attempt++) {
      read = await this.#readAll();
    }
    return [
      ...(read.summary ? [summaryMessage(read.summary)] : []),
      ...read.messages.map(fromMemqMessage),
    ];
  }

  /**
   * Appends one message and resolves once it is committed.
   * @throws PayloadError when the message cannot be mapped (see `toMemqMessage`) or memq refuses it.
   */
  async addMessage(message: BaseMessage): Promise<void> {
    await this.addMessages([message]);
  }

  /**
   * Appends `messages` in order, in batches of {@link APPEND_BATCH} (one append call each; a batch
   * is all or nothing, and the call stops at the first failing batch), and resolves once every
   * batch is committed. Every message is mapped before anything is sent, so an unmappable
   * message fails the call with nothing stored.
   * @throws PayloadError naming `messages[i]` when a message cannot be mapped.
   */
  override async addMessages(messages: BaseMessage[]): Promise<void> {
    const mapped: MessageInput[] = messages.map((m, i) => toMemqMessage(m, `messages[${i}]`));
    for (let start = 0; start < mapped.length; start += APPEND_BATCH) {
      await this.#backend.append(mapped.slice(start, start + APPEND_BATCH));
    }
  }

  /** Removes every message and the summary of the instance; resolves once done. */
  override async clear(): Promise<void> {
    await this.#backend.clear();
  }

  /**
   * Every page of the log. `stable` is false when a multi-page read saw the oldest message or
   * the summary change by the time the last page was read.
   */
  async #readAll(): Promise<{
    messages: Message[];
    summary: Summary | undefined;
    stable: boolean;
  }> {
    const first = await this.#backend.page(0, READ_PAGE);
    const messages = [...first.messages];
    if (!first.hasMore) return { messages, summary: first.summary, stable: true };
    const seen = new Set(messages.map((m) => m.id));
    let offset = first.messages.length;
    for (let page = first; page.hasMore && page.messages.length > 0;) {
      page = await this.#backend.page(offset, READ_PAGE);
      offset += page.messages.length;
      for (const m of page.messages) {
        if (!seen.has(m.id)) {
          seen.add(m.id);
          messages.push(m);
        }
      }
    }
    const again = await this.#backend.page(0, 1);
    const stable =
      again.messages[0]?.id === first.messages[0]?.id &&
      again.summary?.covers_through_id === first.summary?.covers_through_id;
    return { messages, summary: first.summary, stable };
  }
}

/**
 * The options, checked before anything else happens.
 * @throws PayloadError naming the field.
 */
function validateOptions(options: MemqChatMessageHistoryOptions): MemqChatMessageHistoryOptions {
  if (options === null || typeof options !== 'object') {
    throw new PayloadError('MemqChatMessageHistory: expected options { client, resource, key }');
  }
  const { client, resource, key } = options;
  const c = client as unknown as Record<string, unknown> | null | undefined;
  if (
    c === null ||
    typeof c !== 'object' ||
    typeof c.append !== 'function' ||
    typeof c.read !== 'function' ||
    typeof c.clear !== 'function'
  ) {
    throw new PayloadError(
      'client: expected a memq client (the in-process MemoryClient or the HTTP client) with append, read and clear',
      { details: { field: 'client' } },
    );
  }
  if (typeof resource !== 'string' || !NAME_PATTERN.test(resource)) {
    throw new PayloadError(
      `resource: expected 1-100 characters of letters, digits, _ or -, starting with a letter or digit, got ${JSON.stringify(resource)}`,
      { details: { field: 'resource' } },
    );
  }
  if (typeof key !== 'string') {
    throw new PayloadError(`key: expected a string, got ${typeof key}`, {
      details: { field: 'key' },
    });
  }
  validateMemoryKey(key, 'key');
  return { client, resource, key };
}
