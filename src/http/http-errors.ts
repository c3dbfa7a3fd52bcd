/**
 * The HTTP surface's one error translation (docs/architecture.md, "Errors"): every error a route throws becomes
 * `{ error: { code, message, details } }` with the status its code maps to. Errors that are not
 * memq's own are either Redis being unreachable (503) or a bug (500, message not echoed).
 */
import type { ErrorRequestHandler } from 'express';
import type { Logger } from 'pino';
import { AppError, BackpressureError, type ErrorCode } from '../core/errors.js';
import { isConnectionFailure } from '../redis/connection-failures.js';

/** The caller sent no API key, or one that is not configured. */
export class AuthenticationError extends AppError {
  constructor(message: string) {
    super('UNAUTHENTICATED', message, false);
  }
}

/** The API key is valid but may not do this (a read-only key writing). */
export class ForbiddenError extends AppError {
  constructor(message: string) {
    super('FORBIDDEN', message, false);
  }
}

/** No such route, memory resource, queue or job (for this project). */
export class NotFoundError extends AppError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('NOT_FOUND', message, false, { details });
  }
}

/** The body, a message or the number of messages is over a configured limit. */
export class PayloadTooLargeError extends AppError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('PAYLOAD_TOO_LARGE', message, false, { details });
  }
}

/**
 * The body is not something the API reads: a media type other than `application/json`, a charset
 * other than UTF-8, or a `Content-Encoding` other than identity, gzip, deflate or br.
 */
export class UnsupportedMediaTypeError extends AppError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('UNSUPPORTED_MEDIA_TYPE', message, false, { details });
  }
}

/**
 * The caller is over one of its limits: its API key's request or message rate, or its project's
 * concurrent `?wait=true` calls or dry-run flushes (src/http/rate-limit.ts). Nothing was enqueued
 * or changed; retry after `retryAfterMs`.
 */
export class RateLimitedError extends AppError {
  /** Suggested wait before retrying, ms, >= 1. */
  readonly retryAfterMs: number;

  /**
   * @param retryAfterMs When a retry can pass, ms (rounded up to whole seconds in `Retry-After`).
   * @param details `limit` (which one), its `max` and `window_seconds` where it has one.
   */
  constructor(message: string, retryAfterMs: number, details: Record<string, unknown> = {}) {
    super('RATE_LIMITED', message, true, { details });
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * HTTP status per error code, one for every {@link ErrorCode} (a code added to `ERROR_CODES`
 * without a status here fails to typecheck, so it cannot silently become a 500). Sources: RFC 9110
 * section 15 for 400/401/403/404/409/413/415/500/503/504, RFC 6585 section 4 for 429
 * (`BACKPRESSURE`: the backlog is full; `RATE_LIMITED`: the caller is over its own limit).
 * `CONFLICT` (a pending flush with other options), `LOCK_BUSY` and `LOCK_LOST` are 409 (the
 * instance is being changed by another operation; retry); `POLICY_FAILED` is 422 (the request is
 * well-formed but the privacy policy could not be applied, so nothing was stored); `JOB_FAILED`
 * (a waited-for job failed) and `CONFIG_INVALID` are 500; `WAIT_TIMEOUT` (`JobTimeoutError`: a
 * `?wait=true` call's job did not finish in time, and goes on) is 504; `AUDIT_POLICY_UNSUPPORTED`
 * (the replay's audit, never raised by a route) is 400.
 */
export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = Object.freeze({
  PAYLOAD_INVALID: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  MEMORY_NOT_FOUND: 404,
  CONFLICT: 409,
  LOCK_BUSY: 409,
  LOCK_LOST: 409,
  JOB_FAILED: 500,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  POLICY_FAILED: 422,
  BACKPRESSURE: 429,
  RATE_LIMITED: 429,
  REDIS_UNAVAILABLE: 503,
  WAIT_TIMEOUT: 504,
  CONFIG_INVALID: 500,
  AUDIT_POLICY_UNSUPPORTED: 400,
});

/**
 * A code an error response carries: an {@link ErrorCode}, `BAD_REQUEST` (a 4xx from Express or
 * body-parser with no code of its own) or `INTERNAL` (a bug; 500).
 */
export type ResponseErrorCode = ErrorCode | 'BAD_REQUEST' | 'INTERNAL';

/** The JSON body of every error response. */
export interface ErrorBody {
  readonly error: {
    /** Stable upper-snake-case code, e.g. `PAYLOAD_INVALID`. */
    readonly code: ResponseErrorCode;
    /** What went wrong, where, and what is allowed. Never message content or secrets. */
    readonly message: string;
    /** Machine-readable context (field, limit, retry_after_ms). */
    readonly details: Record<string, unknown>;
  };
}

/**
 * Status and body for `error` (see {@link STATUS_BY_CODE}). An error that is not memq's own is
 * 503 `REDIS_UNAVAILABLE` when it is a Redis connection failure (`isConnectionFailure`), else
 * 500 `INTERNAL` with its message not echoed. A
 * {@link BackpressureError} or {@link RateLimitedError} is 429 with `Retry-After` in whole seconds
 * (rounded up, at least 1, RFC 9110 section 10.2.3) and `details.retry_after_ms`.
 */
export function toErrorResponse(error: unknown): {
  status: number;
  body: ErrorBody;
  retryAfterSeconds?: number;
} {
  if (error instanceof BackpressureError || error instanceof RateLimitedError) {
    return {
      status: 429,
      retryAfterSeconds: Math.max(1, Math.ceil(error.retryAfterMs / 1000)),
      body: {
        error: {
          code: error.code,
          message: error.message,
          details: { ...error.details, retry_after_ms: error.retryAfterMs },
        },
      },
    };
  }
  if (error instanceof AppError) {
    return {
      status: STATUS_BY_CODE[error.code],
      ...(error.code === 'REDIS_UNAVAILABLE' ? { retryAfterSeconds: 1 } : {}),
      body: { error: { code: error.code, message: error.message, details: error.details } },
    };
  }
  if (isConnectionFailure(error)) {
    return {
      status: 503,
      retryAfterSeconds: 1,
      body: {
        error: {
          code: 'REDIS_UNAVAILABLE',
          message: 'Redis is not reachable right now; nothing was changed, retry shortly',
          details: {},
        },
      },
    };
  }
  return {
    status: 500,
    body: { error: { code: 'INTERNAL', message: 'internal error (logged)', details: {} } },
  };
}

/**
 * Code per 4xx status of an error that is not memq's own (body-parser's and the router's
 * `http-errors`, which carry `status`/`statusCode`); other 4xx statuses are `BAD_REQUEST`.
 */
const CODE_BY_CLIENT_STATUS: Readonly<Record<number, ResponseErrorCode>> = Object.freeze({
  400: 'PAYLOAD_INVALID',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
});

/** `text` cut to `max` characters (header values are echoed, and a header can be 16 KiB). */
const clip = (text: string, max = 64) => (text.length > max ? `${text.slice(0, max)}...` : text);

/**
 * Status and body for an error that is not memq's own but says the request was wrong: a
 * `status` or `statusCode` in 400-499 (body-parser: invalid JSON 400, an unreadable or
 * undecodable body 400, over the limit 413, unsupported charset or Content-Encoding 415; the
 * router: an undecodable path parameter 400). Messages are memq's own per body-parser `type`,
 * never the parser's (a JSON syntax error quotes the body). Undefined for anything else.
 */
export function toClientErrorResponse(
  error: unknown,
): ReturnType<typeof toErrorResponse> | undefined {
  if (error instanceof AppError || typeof error !== 'object' || error === null) return undefined;
  const e = error as {
    status?: unknown;
    statusCode?: unknown;
    type?: unknown;
    limit?: unknown;
    encoding?: unknown;
    charset?: unknown;
  };
  const status = typeof e.status === 'number' ? e.status : e.statusCode;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 499) {
    return undefined;
  }
  const answer = (
    code: ResponseErrorCode,
    message: string,
    details: Record<string, unknown> = {},
  ) => ({
    status,
    body: { error: { code, message, details } },
  });
  switch (e.type) {
    case 'entity.too.large':
      return answer(
        'PAYLOAD_TOO_LARGE',
        `request body: expected at most ${String(e.limit)} bytes (MEMQ_MAX_BODY_BYTES; after Content-Encoding is undone)`,
        { limit_bytes: e.limit },
      );
    case 'entity.parse.failed':
      return answer('PAYLOAD_INVALID', 'request body: invalid JSON');
    case 'encoding.unsupported':
      return answer(
        'UNSUPPORTED_MEDIA_TYPE',
        `Content-Encoding: expected identity, gzip, deflate or br, got ${JSON.stringify(clip(String(e.encoding)))}`,
        { header: 'content-encoding' },
      );
    case 'charset.unsupported':
      return answer(
        'UNSUPPORTED_MEDIA_TYPE',
        `Content-Type: expected charset utf-8, got ${JSON.stringify(clip(String(e.charset)))}`,
        { header: 'content-type' },
      );
    case 'request.aborted':
      return answer('PAYLOAD_INVALID', 'request body: the client aborted it before its end');
    case 'request.size.invalid':
      return answer('PAYLOAD_INVALID', 'request body: its length differs from Content-Length');
  }
  const code = CODE_BY_CLIENT_STATUS[status] ?? 'BAD_REQUEST';
  return answer(
    code,
    status === 400
      ? 'request: could not be read (an undecodable body or path)'
      : `request: refused (HTTP ${status})`,
  );
}

/**
 * Express error middleware: every error as {@link ErrorBody}. memq's own errors map by code
 * ({@link toErrorResponse}); other errors with a 4xx `status` (body-parser's, the router's) keep
 * their status ({@link toClientErrorResponse}); anything else is Redis being down (503) or a bug
 * (500). Logs 5xx with the request id and route label the app put on `res.locals` (`requestId`,
 * `route`; src/http/app.ts), the method and the error name, never the body.
 */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const mapped = toClientErrorResponse(error) ?? toErrorResponse(error);
    if (mapped.status >= 500) {
      const locals = res.locals as { requestId?: unknown; route?: unknown };
      log.error(
        {
          ...(typeof locals.requestId === 'string' ? { requestId: locals.requestId } : {}),
          method: req.method,
          // Only the app's label: `req.route.path` here would be the mounted router's pattern
          // without its mount path (`/memories/...` for `/v1/memories/...`).
          ...(typeof locals.route === 'string' ? { route: locals.route } : {}),
          status: mapped.status,
          // The name and the frames, not the message: an internal error's message can quote
          // input (JSON.parse does), and logs never carry message content.
          err:
            error instanceof Error
              ? { name: error.name, frames: error.stack?.split('\n').slice(1, 6).join('\n') }
              : 'unknown',
        },
        'request failed',
      );
    }
    if (mapped.retryAfterSeconds !== undefined) {
      res.set('Retry-After', String(mapped.retryAfterSeconds));
    }
    res.status(mapped.status).json(mapped.body);
  };
}
