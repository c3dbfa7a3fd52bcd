/**
 * memq's error hierarchy (docs/architecture.md, "Errors"). Every error a caller can act on is an
 * {@link AppError} with a stable `code` (one of {@link ERROR_CODES}), a `retryable` flag (whether
 * retrying the same input can succeed) and optional machine-readable `details`. Callers tell
 * errors apart by class (`instanceof`) or code, never by message text. Errors are translated to
 * transport shapes in exactly one place per surface: the processor wrapper (non-retryable ->
 * BullMQ `UnrecoverableError`) and the HTTP error handler (code -> status, src/http/http-errors.ts,
 * whose `Record<ErrorCode, number>` must name every code).
 */

/**
 * Every code an {@link AppError} can carry: the catalogue of memq's errors, across surfaces (the
 * HTTP-only ones are raised by src/http, `AUDIT_POLICY_UNSUPPORTED` by src/replay). Adding a code
 * here makes the HTTP status map fail to typecheck until the code has a status.
 */
export const ERROR_CODES = [
  'CONFIG_INVALID',
  'PAYLOAD_INVALID',
  'MEMORY_NOT_FOUND',
  'CONFLICT',
  'LOCK_BUSY',
  'LOCK_LOST',
  'BACKPRESSURE',
  'REDIS_UNAVAILABLE',
  'POLICY_FAILED',
  'JOB_FAILED',
  'WAIT_TIMEOUT',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'RATE_LIMITED',
  'AUDIT_POLICY_UNSUPPORTED',
] as const;

/** A stable upper-snake-case error code, one of {@link ERROR_CODES}. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Options accepted by every {@link AppError} constructor. */
export interface AppErrorOptions {
  /** Machine-readable context (field paths, limits, ids). Never message content. */
  details?: Record<string, unknown>;
  /** The underlying error, kept for logs. */
  cause?: unknown;
}

/** Base class of every error memq raises on purpose. */
export class AppError extends Error {
  /** Stable upper-snake-case code, e.g. `CONFIG_INVALID`; one of {@link ERROR_CODES}. */
  readonly code: ErrorCode;
  /** True when the same operation may succeed if retried later (e.g. Redis unavailable). */
  readonly retryable: boolean;
  /** Machine-readable context; see {@link AppErrorOptions.details}. */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, retryable: boolean, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = retryable;
    this.details = options.details ?? {};
  }
}

/** A memory resource file or environment variable is invalid. Never retryable. */
export class ConfigError extends AppError {
  /**
   * @param message One line per problem, each naming file/variable, field path, what is allowed
   *   and what was found.
   */
  constructor(message: string, options: AppErrorOptions = {}) {
    super('CONFIG_INVALID', message, false, options);
  }
}

/** A job payload, API body or client argument failed validation. Never retryable. */
export class PayloadError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super('PAYLOAD_INVALID', message, false, options);
  }
}

/** The named memory resource is not declared in `memories/`. Never retryable. */
export class MemoryNotFoundError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super('MEMORY_NOT_FOUND', message, false, options);
  }
}

/**
 * The request conflicts with work already pending on the instance (e.g. a flush with other
 * options is queued and would absorb this one). Not retryable as is: wait for the pending job.
 */
export class ConflictError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super('CONFLICT', message, false, options);
  }
}

/** Another holder has the instance lock. Retryable: the holder will release or expire. */
export class LockBusyError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super('LOCK_BUSY', message, true, options);
  }
}

/** The instance lock expired or was taken over while work was in progress. Retryable. */
export class LockLostError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super('LOCK_LOST', message, true, options);
  }
}

/** The target queue's backlog is above its high-water mark. Retryable after `retryAfterMs`. */
export class BackpressureError extends AppError {
  /** Suggested wait before retrying, in milliseconds. */
  readonly retryAfterMs: number;

  constructor(message: string, retryAfterMs: number, options: AppErrorOptions = {}) {
    super('BACKPRESSURE', message, true, options);
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Redis cannot be reached right now (the producer fails fast instead of waiting for it).
 * Retryable: nothing was enqueued or changed.
 */
export class RedisUnavailableError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super('REDIS_UNAVAILABLE', message, true, options);
  }
}

/** A privacy policy could not be applied (redaction failed or would be unsafe). Never retryable. */
export class PolicyError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super('POLICY_FAILED', message, false, options);
  }
}

/**
 * A job someone waited for (`MemoryClient.waitFor`, the readiness canary) failed for good: its
 * processor threw a non-retryable error or ran out of attempts. Not retryable as is: the message
 * carries the job's failed reason (never message content).
 */
export class JobFailedError extends AppError {
  /**
   * @param options `details`: `queue`, `job_id` and, when known, `failed_reason`.
   */
  constructor(message: string, options: AppErrorOptions = {}) {
    super('JOB_FAILED', message, false, options);
  }
}

/**
 * A job someone waited for did not finish within the wait's bound (`MemoryClient.waitFor`'s
 * `timeoutMs`, the canary's). The job itself goes on (it may still complete); only the wait
 * ended. Retryable: wait again, or look the job up. Code `WAIT_TIMEOUT` (HTTP 504).
 */
export class JobTimeoutError extends AppError {
  /**
   * @param options `details`: `queue`, `job_id`, `timeout_ms` and the job's last seen `state`.
   */
  constructor(message: string, options: AppErrorOptions = {}) {
    super('WAIT_TIMEOUT', message, true, options);
  }
}
