/**
 * The two memq clients a `MemqChatMessageHistory` (src/langchain/index.ts) works over, reduced to what a chat
 * history needs: append and wait for the commit, read one page, clear and wait.
 */
import { PayloadError } from '../core/errors.js';
import {
  MessageSchema,
  SummarySchema,
  type Message,
  type MessageInput,
  type Summary,
} from '../core/message.js';
import type { MemoryClient } from '../../queues/memory-client.js';

/**
 * The in-process client (`MemoryClient`, queues/memory-client.ts) as far as a history uses it:
 * `append` + `waitFor` (read-your-writes), `read`, `clear`. `project` tells it apart from a
 * {@link MemqHttpHistoryClient}.
 */
export type InProcessHistoryClient = Pick<
  MemoryClient,
  'project' | 'append' | 'waitFor' | 'read' | 'clear'
>;

/**
 * One page of `GET /v1/memories/:resource/:key/messages` (format `window`), as far as a history
 * reads it (`ReadResponseSchema`, src/http/api-schemas.ts).
 */
export interface HttpReadPage {
  /** `{ message, tokens }` per message, oldest first; `message` is a stored memq message. */
  readonly messages: readonly unknown[];
  /** The rolling summary; null or absent without one. */
  readonly summary?: Summary | null | undefined;
  /** More messages after this page. */
  readonly has_more: boolean;
}

/**
 * The HTTP client (`MemqHttpClient`, src/client/http.ts) as far as a history uses it. Every call
 * acts for the project of the client's API key.
 */
export interface MemqHttpHistoryClient {
  /**
   * `POST /v1/memories/:resource/:key/messages`; with `wait: true` it resolves once the append
   * job committed and rejects when it failed.
   */
  append(
    resource: string,
    key: string,
    messages: MessageInput[],
    options?: { wait?: boolean },
  ): Promise<unknown>;
  /** `GET /v1/memories/:resource/:key/messages?offset=&limit=`. */
  read(
    resource: string,
    key: string,
    options?: { offset?: number; limit?: number },
  ): Promise<HttpReadPage>;
  /** `POST /v1/memories/:resource/:key/clear`; with `wait: true` it resolves once cleared. */
  clear(resource: string, key: string, options?: { wait?: boolean }): Promise<unknown>;
}

/** Either memq client: in-process or over HTTP. */
export type MemqHistoryClient = InProcessHistoryClient | MemqHttpHistoryClient;

/** One page of an instance as the history reads it, whichever the client. */
export interface HistoryPage {
  /** Stored messages, oldest first. */
  readonly messages: readonly Message[];
  /** The rolling summary, if any. */
  readonly summary: Summary | undefined;
  /** More messages after this page. */
  readonly hasMore: boolean;
}

/** A history's operations on its one instance (see {@link historyBackend}). */
export interface HistoryBackend {
  /** Appends 1..100 messages and resolves once they are committed (or all dropped by policy). */
  append(messages: MessageInput[]): Promise<void>;
  /** Reads `limit` messages from position `offset`. */
  page(offset: number, limit: number): Promise<HistoryPage>;
  /** Removes every message and the summary, and resolves once done. */
  clear(): Promise<void>;
}

/** True for the in-process client: it has a `project` and `waitFor`; the HTTP client has neither. */
export function isInProcessClient(client: MemqHistoryClient): client is InProcessHistoryClient {
  const c = client as Partial<InProcessHistoryClient>;
  return typeof c.project === 'string' && typeof c.waitFor === 'function';
}

/**
 * The stored messages and summary of one HTTP read page.
 * @throws PayloadError when the answer is not the `window` read shape.
 */
function parseHttpPage(page: HttpReadPage, where: string): HistoryPage {
  const messages = page.messages.map((item, i) => {
    const parsed = MessageSchema.safeParse((item as { message?: unknown } | null)?.message);
    if (!parsed.success) {
      throw new PayloadError(
        `${where}: messages[${i}] is not { message, tokens } with a stored memq message (is the client reading format=window?)`,
      );
    }
    return parsed.data;
  });
  const summary =
    page.summary === null || page.summary === undefined
      ? undefined
      : SummarySchema.parse(page.summary);
  return { messages, summary, hasMore: page.has_more };
}

/**
 * The {@link HistoryBackend} of instance `resource`/`key` over `client`. Appends and clears wait
 * for their job (in process: `waitFor`; over HTTP: `?wait=true`), so a following read sees them.
 */
export function historyBackend(
  client: MemqHistoryClient,
  resource: string,
  key: string,
): HistoryBackend {
  if (isInProcessClient(client)) {
    const target = { resource, key };
    return {
      async append(messages) {
        const receipt = await client.append(target, messages);
        if (receipt.jobId !== undefined) await client.waitFor(receipt);
      },
      async page(offset, limit) {
        const window = await client.read(target, { offset, limit });
        return {
          messages: window.messages.map((m) => m.message),
          summary: window.summary,
          hasMore: window.hasMore,
        };
      },
      async clear() {
        await client.waitFor(await client.clear(target, { confirm: true }));
      },
    };
  }
  const where = `GET /v1/memories/${resource}/${key}/messages`;
  return {
    async append(messages) {
      await client.append(resource, key, messages, { wait: true });
    },
    async page(offset, limit) {
      return parseHttpPage(await client.read(resource, key, { offset, limit }), where);
    },
    async clear() {
      await client.clear(resource, key, { wait: true });
    },
  };
}
