/**
 * Errors of the HTTP client ({@link MemqHttpClient}, src/client/http.ts): an answer that is not
 * 2xx is a {@link MemqHttpError} carrying the API's `{ error: { code, message, details } }`
 * (docs/architecture.md, "Errors"); a request that got no answer is a {@link MemqNetworkError}.
 * No run-time import: the client depends on nothing but `fetch`.
 */

/** Options of {@link MemqHttpError}. */
export interface MemqHttpErrorInit {
  /** HTTP status, e.g. 404. */
  readonly status: number;
  /** The API's error code, e.g. `MEMORY_NOT_FOUND`; see {@link MemqHttpError.code}. */
  readonly code: string;
  /** The API's message. */
  readonly message: string;
  /** The API's `details`; `{}` when absent. */
  readonly details?: Readonly<Record<string, unknown>>;
  /** From `Retry-After`, ms; absent without the header. */
  readonly retryAfterMs?: number;
  /** HTTP method of the request. */
  readonly method: string;
  /** Path of the request (without the base URL and query), e.g. `/v1/memories/a/b/messages`. */
  readonly path: string;
}

/**
 * The API answered with a status outside 2xx. `code` is the API's stable error code
 * (`PAYLOAD_INVALID` 400, `UNAUTHENTICATED` 401, `FORBIDDEN` 403, `NOT_FOUND` /
 * `MEMORY_NOT_FOUND` 404, `CONFLICT` 409, `PAYLOAD_TOO_LARGE` 413, `BACKPRESSURE` /
 * `RATE_LIMITED` 429, `JOB_FAILED` 500, `REDIS_UNAVAILABLE` 503, `WAIT_TIMEOUT` 504...); when the
 * body is not the API's error shape (a proxy's page, say) it is `HTTP_<status>`. Tell errors apart
 * by `status` and `code`, never by message text.
 */
export class MemqHttpError extends Error {
  /** HTTP status, e.g. 429. */
  readonly status: number;
  /** The API's error code, or `HTTP_<status>` when the body carried none. */
  readonly code: string;
  /** The API's machine-readable context (field, limits, `retry_after_ms`...). */
  readonly details: Readonly<Record<string, unknown>>;
  /**
   * When to retry, ms, from the `Retry-After` header (delta-seconds x 1000, or an HTTP date minus
   * now, at least 0); undefined without the header. The API sends it with 429 and 503.
   */
  readonly retryAfterMs: number | undefined;
  /** HTTP method of the request that failed. */
  readonly method: string;
  /** Path of the request that failed (no base URL, no query). */
  readonly path: string;

  constructor(init: MemqHttpErrorInit) {
    super(`${init.method} ${init.path}: ${init.status} ${init.code}: ${init.message}`);
    this.name = 'MemqHttpError';
    this.status = init.status;
    this.code = init.code;
    this.details = init.details ?? {};
    this.retryAfterMs = init.retryAfterMs;
    this.method = init.method;
    this.path = init.path;
  }

  /** True for 429 and 503, the statuses the API sends `Retry-After` with. */
  get retryable(): boolean {
    return this.status === 429 || this.status === 503;
  }
}

/** Options of {@link MemqNetworkError}. */
export interface MemqNetworkErrorInit {
  /** True when the caller's `signal` aborted the call; default false. */
  readonly aborted?: boolean;
}

/**
 * The request got no complete HTTP answer: connection refused or reset, DNS failure, TLS
 * failure, the caller's `fetch` rejected, the answer's body could not be read to the end (the
 * stream errored or the connection dropped), or the caller's signal aborted the call (during the
 * request, a retry wait or the reading of the body: then `aborted` is true). `cause` is the
 * underlying error as thrown (a `TypeError`, the runtime's `AbortError`, the signal's reason...).
 * The request may or may not have reached the server.
 */
export class MemqNetworkError extends Error {
  /** HTTP method of the request. */
  readonly method: string;
  /** Path of the request (no base URL, no query). */
  readonly path: string;
  /** True when the caller's `signal` aborted the call; false for every other failure. */
  readonly aborted: boolean;

  constructor(method: string, path: string, cause: unknown, init: MemqNetworkErrorInit = {}) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const what = init.aborted === true ? 'aborted by the caller' : 'no answer from the memq server';
    super(`${method} ${path}: ${what} (${reason})`, { cause });
    this.name = 'MemqNetworkError';
    this.method = method;
    this.path = path;
    this.aborted = init.aborted === true;
  }
}
