/**
 * `memq/http`: a typed client of memq's `/v1` HTTP API (docs/architecture.md, "HTTP API"), one
 * method per operation. Request and response types are the `z.input` / `z.output` of the zod
 * schemas the server validates with (src/http/api-schemas.ts), imported as types only: at run
 * time this module needs nothing but `fetch` (test/unit/client/import-graph.test.ts holds it to
 * that) and, with retries on, `globalThis.crypto.getRandomValues` for message ids
 * (src/client/ulid.ts). So it runs in Node 18+ without retries and Node 19+ with them (memq
 * itself is built and tested on Node 22+), in current browsers (Chrome, Edge, Firefox, Safari),
 * Deno, Bun and edge runtimes. Where `crypto.getRandomValues` is missing, a client with
 * `retry.attempts > 0` is refused at construction with a TypeError; the query string is built
 * with `URLSearchParams.toString()` only (not `URLSearchParams.size`, which Node < 18.16 and
 * Safari < 17 lack).
 *
 * Retries (`retry` option): 429 and 503 only, after `Retry-After`. Every 429 the API sends
 * (request or message rate, concurrency cap, backpressure) is decided before anything is
 * enqueued. A 503 (`REDIS_UNAVAILABLE`) may come after the job reached Redis ("the operation may
 * or may not have happened"), so a retried append or write must be recognisable as the same
 * request: with retries on, the client gives every message without an `id` a monotonic ULID
 * before the first attempt, so each attempt carries the same ids, the append job id (derived
 * from them) is the same, and workers store each message id once.
 */
import type { z } from 'zod';
import type {
  AppendBodySchema,
  AppendResponseSchema,
  ContextResponseSchema,
  DataPutResponseSchema,
  FlushBodySchema,
  JobAcceptedSchema,
  JobResponseSchema,
  ListItemSchema,
  ListResponseSchema,
  ReadQuerySchema,
  ReadResponseSchema,
  StatsResponseSchema,
} from '../http/api-schemas.js';
import type { Message, MessageInput } from '../core/message.js';
import type { ChatMessage } from '../flush/summary.js';
import type { AppendJobResult } from '../../queues/job-contracts.js';
import type { QueueName } from '../../queues/names.js';
import { MemqHttpError, MemqNetworkError } from './errors.js';
import { monotonicUlid } from './ulid.js';

export {
  MemqHttpError,
  MemqNetworkError,
  type MemqHttpErrorInit,
  type MemqNetworkErrorInit,
} from './errors.js';
export type { ChatMessage, Message, MessageInput, QueueName };

/** The `fetch` the client calls: the global one, or any function with its signature. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/**
 * Retry policy of {@link MemqHttpClient}: only 429 and 503 answers are retried; a
 * {@link MemqNetworkError} (no complete answer) is not.
 *
 * Message ids and clocks: with retries on, every message sent without an `id` gets a ULID made
 * from this machine's clock (ms) before the first attempt. memq orders a conversation by id, so
 * producers writing to the same conversation from several machines need synchronised clocks
 * (NTP): a producer whose clock is behind the others stores its messages before ones the others
 * sent earlier. Each instance keeps the ids it accepted for the idempotency window
 * (`MEMQ_IDEMPOTENCY_WINDOW_MS`, default 24 h); maintenance then prunes them and raises the
 * instance's `seen_floor_ms` to (server time - window). From then on the server
 * (src/redis/lua/append.lua) reports as a duplicate, and does not store, any id that is not in
 * the log, sorts at or below the flushed summary's watermark (`covers_through_id`) and whose
 * ULID time is before `seen_floor_ms`. So a client whose clock lags the server's by more than
 * the idempotency window, writing to a conversation with a flushed summary of messages newer
 * than its clock, sees its new messages counted in `duplicates` and dropped. Ids below the
 * watermark with a ULID time at or after `seen_floor_ms` are stored and folded into the summary
 * by the next flush, not shown after it. Without retries the server assigns ids from its clock.
 */
export interface RetryOptions {
  /** Retries after the first attempt (so at most `attempts + 1` requests); 0 = none. */
  readonly attempts: number;
  /**
   * Longest wait before one retry, ms. The wait is `Retry-After` when the answer has it, else
   * 250 ms x 2^retry capped at this value; an answer whose `Retry-After` is longer than this is
   * not retried (the error is thrown at once, with its `retryAfterMs`). Default 10 000.
   */
  readonly maxDelayMs?: number;
}

/** Options of {@link MemqHttpClient}. */
export interface MemqHttpClientOptions {
  /** Where the server is, e.g. `http://127.0.0.1:3000` (a path prefix is kept; `/v1/...` is appended). */
  readonly baseUrl: string;
  /** API key (`MEMQ_API_KEYS`), sent as `Authorization: Bearer <key>`; it selects the project. */
  readonly apiKey: string;
  /** The `fetch` to use; default `globalThis.fetch`. */
  readonly fetch?: FetchLike;
  /** Retry 429 and 503 (see {@link RetryOptions}); default no retry. */
  readonly retry?: RetryOptions;
  /** Headers added to every request (e.g. a tracing header); `Authorization` cannot be overridden. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** `?wait=true` and its bound, accepted by every mutating call. */
export interface WaitOptions {
  /** Answer after the job finished (200 with `result`) instead of once enqueued (202). Default false. */
  readonly wait?: boolean;
  /** With `wait`: how long the server waits, 1-60 000 ms (default 30 000); past it, 504 `WAIT_TIMEOUT` and the job goes on. */
  readonly timeoutMs?: number;
}

/** Per-call options every method accepts. */
export interface CallOptions {
  /**
   * Aborts the request (and any retry wait, and the reading of the answer); the call then rejects
   * with a {@link MemqNetworkError} whose `aborted` is true and whose `cause` is the signal's
   * reason (or the runtime's `AbortError`).
   */
  readonly signal?: AbortSignal;
}

/** The `format` of a read: `window` (default) or `messages` (chat messages). */
export type ReadFormat = z.output<typeof ReadQuerySchema>['format'];

/** Options of {@link MemqHttpClient.read}. */
export interface ReadOptions<F extends ReadFormat = ReadFormat> extends CallOptions {
  /** First message by position in id order; default 0. */
  readonly offset?: number;
  /** Page size, 1..1000; default 100. */
  readonly limit?: number;
  /** `window` (default): messages with their tokens, summary apart; `messages`: chat messages, summary as a leading system message. */
  readonly format?: F;
}

/** One message of a `format=window` read with its token count. */
export interface WindowEntry {
  /** The stored message. */
  readonly message: Message;
  /** Its token count; null while not counted yet. */
  readonly tokens: number | null;
  /** The approximation it was counted with; null when exact or not counted. */
  readonly approximated_by: string | null;
}

/** Answer of `GET .../messages`: {@link ReadResponseSchema} with `messages` typed by `format`. */
export type ReadResponse<F extends ReadFormat = 'window'> = Omit<
  z.output<typeof ReadResponseSchema>,
  'messages'
> & {
  /** `window`: {@link WindowEntry} per message; `messages`: chat messages (summary first). */
  readonly messages: F extends 'messages' ? ChatMessage[] : WindowEntry[];
};

/** Answer of an append: {@link AppendResponseSchema}, `result` typed (present with `wait`). */
export type AppendResponse = Omit<z.output<typeof AppendResponseSchema>, 'result'> & {
  /** With `wait`: what the committed job did. */
  readonly result?: AppendJobResult;
};

/** Answer of write, flush, clear and delete ({@link JobAcceptedSchema}). */
export type JobAccepted = z.output<typeof JobAcceptedSchema>;

/** Answer of `GET .../stats` ({@link StatsResponseSchema}). */
export type StatsResponse = z.output<typeof StatsResponseSchema>;

/** Answer of `GET .../health`: the stats fields plus `healthy`. */
export type HealthResponse = StatsResponse & { readonly healthy: boolean };

/** Answer of `GET /v1/jobs/:queue/:id` ({@link JobResponseSchema}). */
export type JobResponse = z.output<typeof JobResponseSchema>;

/** The body of an append ({@link AppendBodySchema}'s input). */
export type AppendBody = z.input<typeof AppendBodySchema>;

/** Options of {@link MemqHttpClient.flush}: the body's fields in camelCase, plus waiting. */
export interface FlushOptions extends WaitOptions, CallOptions {
  /** Strategy for this flush; default the resource's `flushing.type`. */
  readonly strategy?: z.input<typeof FlushBodySchema>['strategy'];
  /** Plan only and answer with the plan (the server always waits for it); change nothing. */
  readonly dryRun?: boolean;
}

/** Options of {@link MemqHttpClient.context}. */
export interface ContextOptions extends CallOptions {
  /**
   * Token budget, 1..10,000,000. Default: the resource's token limit, else the model's context
   * window.
   */
  readonly maxTokens?: number;
  /**
   * Count with this model's tokenizer; default the resource's model. A model without a known
   * tiktoken encoding is approximated with `o200k_base` when its context window is known
   * (Claude, Gemini), else refused (400).
   */
  readonly model?: string;
}

/** Answer of `GET .../context` ({@link ContextResponseSchema}), messages typed. */
export type ContextResponse = Omit<z.output<typeof ContextResponseSchema>, 'messages'> & {
  /** Chat messages, oldest first, the summary (when any) as the leading system message. */
  readonly messages: ChatMessage[];
};

/** Options of {@link MemqHttpClient.list}. */
export interface ListOptions extends CallOptions {
  /** The `next_cursor` of the previous page; absent for the first page. */
  readonly cursor?: string;
  /** Instances per page, 1..100; default 20. */
  readonly limit?: number;
}

/** Answer of `GET /v1/memories/:resource` ({@link ListResponseSchema}). */
export type ListResponse = z.output<typeof ListResponseSchema>;

/** One instance of a list ({@link ListItemSchema}). */
export type ListItem = z.output<typeof ListItemSchema>;

/** Answer of `PUT .../data` ({@link DataPutResponseSchema}). */
export type DataPutResponse = z.output<typeof DataPutResponseSchema>;

/** Default {@link RetryOptions.maxDelayMs}, ms. */
const DEFAULT_MAX_DELAY_MS = 10_000;

/** First backoff without `Retry-After`, ms (doubles per retry). */
const BASE_DELAY_MS = 250;

/**
 * `Retry-After` as ms: delta-seconds, or an HTTP date (RFC 9110 section 10.2.3); undefined when
 * absent or unreadable.
 */
function parseRetryAfter(header: string | null, now: number): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  const aborted = (): Error =>
    signal?.reason instanceof Error
      ? signal.reason
      : new Error('aborted', { cause: signal?.reason });
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(aborted());
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** One request as the client sends it. */
interface RequestSpec {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path without query, parts already encoded. */
  readonly path: string;
  /** Query parameters; undefined values are left out. */
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  /** JSON body; absent = none. */
  readonly body?: unknown;
  readonly signal?: AbortSignal | undefined;
}

/**
 * A client of one memq server for one API key (so one project). Methods mirror the `/v1`
 * routes; every failure is a {@link MemqHttpError} (an answer outside 2xx) or a
 * {@link MemqNetworkError} (no answer). Resource ids and keys are URL-encoded; the server checks
 * them (a key is a literal instance key, 1-256 of `[A-Za-z0-9_:\-@.]`, never a template).
 */
export class MemqHttpClient {
  readonly #base: string;
  readonly #headers: Record<string, string>;
  readonly #fetch: FetchLike;
  readonly #attempts: number;
  readonly #maxDelayMs: number;
  readonly #nextId: () => string;

  /**
   * @throws TypeError when `baseUrl` is not an absolute http(s) URL, `apiKey` is empty, no
   *   `fetch` is given or global, `retry.attempts` / `retry.maxDelayMs` is not a non-negative
   *   integer, or `retry.attempts > 0` where `globalThis.crypto.getRandomValues` is missing (the
   *   message ids need it). Nothing is sent.
   */
  constructor(options: MemqHttpClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new TypeError('baseUrl: expected an absolute http:// or https:// URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`baseUrl: expected an http:// or https:// URL, got ${url.protocol}`);
    }
    if (typeof options.apiKey !== 'string' || options.apiKey === '') {
      throw new TypeError('apiKey: expected a non-empty API key');
    }
    // Typed as always present (@types/node), but absent before Node 18 and in some runtimes.
    const fetchFn: unknown = options.fetch ?? globalThis.fetch;
    if (typeof fetchFn !== 'function') {
      throw new TypeError('fetch: no global fetch; pass one in the options');
    }
    const attempts = options.retry?.attempts ?? 0;
    const maxDelayMs = options.retry?.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    for (const [name, value] of [
      ['retry.attempts', attempts],
      ['retry.maxDelayMs', maxDelayMs],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new TypeError(`${name}: expected a non-negative integer, got ${String(value)}`);
      }
    }
    // Typed as always present, but absent before Node 19 (without a flag) and in some runtimes.
    const crypto: unknown = (globalThis as { crypto?: unknown }).crypto;
    if (
      attempts > 0 &&
      typeof (crypto as { getRandomValues?: unknown } | undefined)?.getRandomValues !== 'function'
    ) {
      throw new TypeError(
        'retry: retries need globalThis.crypto.getRandomValues for message ids (Node 19+, current browsers); pass retry: { attempts: 0 } or give every message an id',
      );
    }
    this.#base = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
    this.#headers = {
      ...options.headers,
      accept: 'application/json',
      authorization: `Bearer ${options.apiKey}`,
    };
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#attempts = attempts;
    this.#maxDelayMs = maxDelayMs;
    this.#nextId = monotonicUlid();
  }

  /**
   * `POST /v1/memories/:resource/:key/messages`: appends 1..100 messages (the resource's privacy
   * policy applies). With retries on, messages without an `id` get a client-side monotonic ULID
   * (see the module comment); otherwise the server assigns ids.
   * @returns 202 answer (job, `message_ids`, `dropped`, `redactions`), or with `wait` the 200
   *   answer with `result` (`{ added, duplicates }`); `job` null when the policy dropped every
   *   message.
   * @throws MemqHttpError 400 invalid messages or key, 404 unknown resource, 413 too large,
   *   429 rate limit or backpressure, 504 wait timeout; MemqNetworkError.
   */
  append(
    resource: string,
    key: string,
    messages: readonly MessageInput[],
    options: WaitOptions & CallOptions = {},
  ): Promise<AppendResponse> {
    const body: AppendBody = { messages: this.#withIds(messages) };
    return this.#send<AppendResponse>({
      method: 'POST',
      path: `${this.#memoryPath(resource, key)}/messages`,
      query: this.#waitQuery(options),
      body,
      signal: options.signal,
    });
  }

  /**
   * `GET /v1/memories/:resource/:key/messages`: one page of the log in id order with token
   * counts and context-window use.
   * @throws MemqHttpError 400 bad offset/limit/format or key, 404 unknown resource; MemqNetworkError.
   */
  read<F extends ReadFormat = 'window'>(
    resource: string,
    key: string,
    options: ReadOptions<F> = {},
  ): Promise<ReadResponse<F>> {
    return this.#send<ReadResponse<F>>({
      method: 'GET',
      path: `${this.#memoryPath(resource, key)}/messages`,
      query: { offset: options.offset, limit: options.limit, format: options.format },
      signal: options.signal,
    });
  }

  /**
   * `PUT /v1/memories/:resource/:key/messages`: replaces the log with 0..1000 messages (ids as
   * for {@link MemqHttpClient.append}).
   * @throws MemqHttpError as `append` does; MemqNetworkError.
   */
  write(
    resource: string,
    key: string,
    messages: readonly MessageInput[],
    options: WaitOptions & CallOptions = {},
  ): Promise<JobAccepted> {
    return this.#send<JobAccepted>({
      method: 'PUT',
      path: `${this.#memoryPath(resource, key)}/messages`,
      query: this.#waitQuery(options),
      body: { messages: this.#withIds(messages) },
      signal: options.signal,
    });
  }

  /**
   * `POST /v1/memories/:resource/:key/flush`: enqueues a flush (real flushes are deduplicated per
   * instance); a dry run answers with the plan in `result` and changes nothing.
   * @throws MemqHttpError 400 unknown strategy, 409 a pending flush has another strategy;
   *   MemqNetworkError.
   */
  flush(resource: string, key: string, options: FlushOptions = {}): Promise<JobAccepted> {
    const body: z.input<typeof FlushBodySchema> = {
      ...(options.strategy !== undefined ? { strategy: options.strategy } : {}),
      ...(options.dryRun !== undefined ? { dry_run: options.dryRun } : {}),
    };
    return this.#send<JobAccepted>({
      method: 'POST',
      path: `${this.#memoryPath(resource, key)}/flush`,
      query: this.#waitQuery(options),
      body,
      signal: options.signal,
    });
  }

  /**
   * `POST /v1/memories/:resource/:key/clear` with `{ confirm: true }`: removes every message and
   * the summary; the instance stays.
   * @throws MemqHttpError; MemqNetworkError.
   */
  clear(
    resource: string,
    key: string,
    options: WaitOptions & CallOptions = {},
  ): Promise<JobAccepted> {
    return this.#send<JobAccepted>({
      method: 'POST',
      path: `${this.#memoryPath(resource, key)}/clear`,
      query: this.#waitQuery(options),
      body: { confirm: true },
      signal: options.signal,
    });
  }

  /**
   * `DELETE /v1/memories/:resource/:key`: deletes the instance (every key and its index entry).
   * @throws MemqHttpError; MemqNetworkError.
   */
  delete(
    resource: string,
    key: string,
    options: WaitOptions & CallOptions = {},
  ): Promise<JobAccepted> {
    return this.#send<JobAccepted>({
      method: 'DELETE',
      path: this.#memoryPath(resource, key),
      query: this.#waitQuery(options),
      signal: options.signal,
    });
  }

  /**
   * `GET /v1/memories/:resource/:key/stats`: counters and accounting; `deep` also reads every
   * message (roles, token-sum consistency; O(messages)).
   * @throws MemqHttpError; MemqNetworkError.
   */
  stats(
    resource: string,
    key: string,
    options: { readonly deep?: boolean } & CallOptions = {},
  ): Promise<StatsResponse> {
    return this.#send<StatsResponse>({
      method: 'GET',
      path: `${this.#memoryPath(resource, key)}/stats`,
      query: { deep: options.deep },
      signal: options.signal,
    });
  }

  /**
   * `GET /v1/memories/:resource/:key/health`: the stats fields plus `healthy` (exists or empty,
   * and consistent).
   * @throws MemqHttpError; MemqNetworkError.
   */
  health(resource: string, key: string, options: CallOptions = {}): Promise<HealthResponse> {
    return this.#send<HealthResponse>({
      method: 'GET',
      path: `${this.#memoryPath(resource, key)}/health`,
      signal: options.signal,
    });
  }

  /**
   * `GET /v1/jobs/:queue/:id`: a job of this key's project (the `job` of a 202 answer).
   * @throws MemqHttpError 404 `NOT_FOUND` for an unknown queue or id, another project's job, or
   *   one removed by retention; MemqNetworkError.
   */
  job(queue: QueueName, id: string, options: CallOptions = {}): Promise<JobResponse> {
    return this.#send<JobResponse>({
      method: 'GET',
      path: `/v1/jobs/${encodeURIComponent(queue)}/${encodeURIComponent(id)}`,
      signal: options.signal,
    });
  }

  /**
   * `GET /v1/memories/:resource/:key/context`: what to send to the model now, within a token
   * budget: the rolling summary (as a leading system message) and the newest messages that fit,
   * instructions always kept, a tool call never split from its results.
   * @throws MemqHttpError 400 bad `maxTokens` or `model` (or no budget known), 404 unknown
   *   resource; MemqNetworkError.
   */
  context(resource: string, key: string, options: ContextOptions = {}): Promise<ContextResponse> {
    return this.#send<ContextResponse>({
      method: 'GET',
      path: `${this.#memoryPath(resource, key)}/context`,
      query: { max_tokens: options.maxTokens, model: options.model },
      signal: options.signal,
    });
  }

  /**
   * `GET /v1/memories/:resource`: one page of this key's project's instances of `resource`, most
   * recently active first; pass `next_cursor` as `cursor` for the next page.
   * @throws MemqHttpError 400 bad cursor or limit, 404 unknown resource; MemqNetworkError.
   */
  list(resource: string, options: ListOptions = {}): Promise<ListResponse> {
    return this.#send<ListResponse>({
      method: 'GET',
      path: `/v1/memories/${encodeURIComponent(resource)}`,
      query: { cursor: options.cursor, limit: options.limit },
      signal: options.signal,
    });
  }

  /**
   * Every instance of `resource` of this key's project, page after page of {@link list}
   * (`options.limit` per request); stops after the page without `next_cursor`. An instance
   * active during the walk may be met twice or not at all (the order is by last activity).
   * @throws as {@link list}, from the iteration.
   */
  async *listAll(
    resource: string,
    options: Omit<ListOptions, 'cursor'> = {},
  ): AsyncGenerator<ListItem, void, undefined> {
    let cursor: string | undefined;
    do {
      const page = await this.list(resource, {
        ...options,
        ...(cursor !== undefined ? { cursor } : {}),
      });
      yield* page.items;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /**
   * `GET /v1/memories/:resource/:key/data`: the instance's session data (`{}` when none).
   * @throws MemqHttpError 404 unknown resource; MemqNetworkError.
   */
  async getData(
    resource: string,
    key: string,
    options: CallOptions = {},
  ): Promise<Record<string, string>> {
    const answer = await this.#send<{ data: Record<string, string> }>({
      method: 'GET',
      path: `${this.#memoryPath(resource, key)}/data`,
      signal: options.signal,
    });
    return answer.data;
  }

  /**
   * `PUT /v1/memories/:resource/:key/data`: replaces the instance's session data with `data`
   * (at most 64 entries, keys 1-128 characters, values at most 4096 UTF-8 bytes), through the
   * resource's privacy policy; the answer holds what was stored.
   * @throws MemqHttpError 400 invalid data or a key the policy matches, 403 read-only key,
   *   413 over a limit; MemqNetworkError.
   */
  putData(
    resource: string,
    key: string,
    data: Readonly<Record<string, string>>,
    options: CallOptions = {},
  ): Promise<DataPutResponse> {
    return this.#send<DataPutResponse>({
      method: 'PUT',
      path: `${this.#memoryPath(resource, key)}/data`,
      body: { data },
      signal: options.signal,
    });
  }

  #memoryPath(resource: string, key: string): string {
    return `/v1/memories/${encodeURIComponent(resource)}/${encodeURIComponent(key)}`;
  }

  #waitQuery(options: WaitOptions): RequestSpec['query'] {
    return { wait: options.wait, timeout_ms: options.timeoutMs };
  }

  /** With retries on, `messages` with an id on each (see the module comment); else unchanged. */
  #withIds(messages: readonly MessageInput[]): MessageInput[] {
    // A caller without types may pass something else: the server then answers 400.
    const given: unknown = messages;
    if (this.#attempts === 0 || !Array.isArray(given)) {
      return messages as MessageInput[];
    }
    return messages.map((m) => (m.id === undefined ? { ...m, id: this.#nextId() } : m));
  }

  async #send<T>(spec: RequestSpec): Promise<T> {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(spec.query ?? {})) {
      if (value !== undefined) params.set(name, String(value));
    }
    // Not `params.size`: Node < 18.16 and Safari < 17 lack it.
    const search = params.toString();
    const url = `${this.#base}${spec.path}${search === '' ? '' : `?${search}`}`;
    const init: RequestInit = {
      method: spec.method,
      headers:
        spec.body === undefined
          ? this.#headers
          : { ...this.#headers, 'content-type': 'application/json' },
      ...(spec.body === undefined ? {} : { body: JSON.stringify(spec.body) }),
      ...(spec.signal ? { signal: spec.signal } : {}),
    };
    for (let retry = 0; ; retry += 1) {
      let response: Response;
      try {
        response = await this.#fetch(url, init);
      } catch (error) {
        throw this.#networkError(spec, error);
      }
      if (response.ok) return (await this.#json(response, spec)) as T;
      const error = await this.#error(response, spec);
      if (!error.retryable || retry >= this.#attempts) throw error;
      // A server asking for a longer wait than allowed is not retried; the backoff is capped.
      if (error.retryAfterMs !== undefined && error.retryAfterMs > this.#maxDelayMs) throw error;
      const delay = error.retryAfterMs ?? Math.min(BASE_DELAY_MS * 2 ** retry, this.#maxDelayMs);
      try {
        await sleep(delay, spec.signal);
      } catch (abort) {
        throw this.#networkError(spec, abort);
      }
    }
  }

  /** A {@link MemqNetworkError} for `spec`, `aborted` when the caller's signal is aborted. */
  #networkError(spec: RequestSpec, cause: unknown): MemqNetworkError {
    return new MemqNetworkError(spec.method, spec.path, cause, {
      aborted: spec.signal?.aborted === true,
    });
  }

  /**
   * The answer's body as text.
   * @throws MemqNetworkError when reading it fails (the stream errors, the connection drops, or
   *   the caller's signal aborts while the body is read).
   */
  async #text(response: Response, spec: RequestSpec): Promise<string> {
    try {
      return await response.text();
    } catch (error) {
      throw this.#networkError(spec, error);
    }
  }

  async #json(response: Response, spec: RequestSpec): Promise<unknown> {
    const text = await this.#text(response, spec);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new MemqHttpError({
        status: response.status,
        code: 'INVALID_RESPONSE',
        message: 'the answer is not JSON',
        method: spec.method,
        path: spec.path,
      });
    }
  }

  async #error(response: Response, spec: RequestSpec): Promise<MemqHttpError> {
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), Date.now());
    const text = await this.#text(response, spec);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const error = (body as { error?: unknown } | undefined)?.error as
      { code?: unknown; message?: unknown; details?: unknown } | undefined;
    const details = error?.details;
    return new MemqHttpError({
      status: response.status,
      code: typeof error?.code === 'string' ? error.code : `HTTP_${response.status}`,
      message:
        typeof error?.message === 'string'
          ? error.message
          : response.statusText || 'the answer carries no error body',
      ...(details !== null && typeof details === 'object' && !Array.isArray(details)
        ? { details: details as Record<string, unknown> }
        : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      method: spec.method,
      path: spec.path,
    });
  }
}
