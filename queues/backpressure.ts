/**
 * Producer backpressure (docs/decisions.md, "Jobs and pipeline"): a gate in front of `queue.add`
 * that compares the backlog in messages not yet started against high/low water marks, with
 * hysteresis, and either rejects with {@link BackpressureError} or waits for the backlog to drain;
 * and the per-project and byte bounds read from the backlog ledger ({@link backlogRefusal}).
 * Messages, not jobs: with group commit one append job carries from one to
 * `MEMQ_APPEND_BATCH_MAX` messages, so a job count says little about the work waiting.
 */

import { BackpressureError } from '../src/core/errors.js';
import type { BackpressurePolicy } from '../src/config/env.js';

/** Lower bound of {@link estimateRetryAfterMs}, ms: the default backlog cache age. */
export const RETRY_AFTER_MIN_MS = 250;
/** Upper bound of {@link estimateRetryAfterMs}, ms: the default `wait` timeout. */
export const RETRY_AFTER_MAX_MS = 30_000;
/** {@link estimateRetryAfterMs} when no drain rate is known, ms: one HTTP `Retry-After` second. */
export const RETRY_AFTER_DEFAULT_MS = 1000;

/** Options of {@link createBackpressureGate}. */
export interface BackpressureGateOptions {
  /**
   * Reads the backlog in messages not yet started, e.g. the backlog ledger's total
   * (`BacklogLedger.backlog`, queues/backlog-ledger.ts). Called at most once per `cacheMs`, never
   * concurrently with itself. A rejection (Redis down) reaches the caller.
   */
  readonly countBacklog: () => Promise<number>;
  /**
   * Queue named in messages and error details when `admit` is not given one, and in the errors
   * of a closed gate, e.g. `memory-append`.
   */
  readonly queueName: string;
  /**
   * Backlog in messages at which the gate starts pushing back, >= 1
   * (`MEMQ_BACKPRESSURE_HIGH_WATER`).
   */
  readonly highWaterMessages: number;
  /**
   * Backlog in messages at or below which the gate admits again once it pushed back, >= 0 and
   * below `highWaterMessages` (`MEMQ_BACKPRESSURE_LOW_WATER`).
   */
  readonly lowWaterMessages: number;
  /** `reject`: throw {@link BackpressureError} at once; `wait`: poll until the low-water mark. */
  readonly policy: BackpressurePolicy;
  /**
   * Longest age of a backlog count that is reused, ms, >= 0 (0 = count on every call, still shared
   * by concurrent callers).
   * @defaultValue 250
   */
  readonly cacheMs?: number;
  /**
   * Longest `admit` waits under policy `wait` before throwing {@link BackpressureError}, ms, >= 0.
   * @defaultValue 30000
   */
  readonly waitTimeoutMs?: number;
  /**
   * Interval between backlog checks while waiting under policy `wait`, ms, >= 1 (reads are still
   * served from the cache when it is younger than `cacheMs`).
   * @defaultValue 100
   */
  readonly pollMs?: number;
  /** Clock, ms since epoch; default `Date.now`. Used for the cache age, drain rate and deadline. */
  readonly now?: () => number;
}

/** The gate returned by {@link createBackpressureGate}. */
export interface BackpressureGate {
  /**
   * Resolves when a producer may enqueue: at once while the gate is open, otherwise per policy.
   * The gate closes when the backlog reaches `highWaterMessages` and opens again when it falls to
   * `lowWaterMessages` or below. The mark is soft: callers admitted on the same cached count may
   * together overshoot it by what they enqueue within `cacheMs`.
   * @param signal Aborts a `wait`; `admit` then rejects with `signal.reason` (wrapped in an Error
   *   when it is not one).
   * @param queue The queue the caller enqueues to, named in the error; default `queueName`.
   * @throws BackpressureError when the gate is closed (policy `reject`), or stayed closed for
   *   `waitTimeoutMs` (policy `wait`); `retryAfterMs` per {@link estimateRetryAfterMs}, `details`
   *   `{ queue, bound: 'messages', usage, limit, low_water }` (`usage` the backlog, `limit` the
   *   high-water mark, `low_water` the low-water mark, all in messages).
   * @throws whatever `countBacklog` throws (never read as "open").
   * @throws Error when the gate has been closed with {@link BackpressureGate.close}.
   */
  admit(signal?: AbortSignal, queue?: string): Promise<void>;
  /**
   * The backlog in messages, from the cache when younger than `cacheMs`; a fresh count also
   * updates the gate's state.
   * @throws whatever `countBacklog` throws; Error after {@link BackpressureGate.close}.
   */
  backlog(): Promise<number>;
  /** Stops the gate: pending waits reject and later calls throw. Idempotent. */
  close(): void;
}

/** One backlog count and when it was requested. */
export interface BacklogSample {
  /** Backlog, messages. */
  readonly backlogMessages: number;
  /** When the count was requested, ms since epoch. */
  readonly atMs: number;
}

/**
 * Estimates how long until a closed gate opens, i.e. until the backlog reaches the low-water mark:
 *
 * `clamp(ceil((latest.backlogMessages - lowWaterMessages) / rate), 250, 30_000)` with the net
 * drain rate `rate = (previous.backlogMessages - latest.backlogMessages) / (latest.atMs -
 * previous.atMs)` messages/ms
 * from the two most recent counts; {@link RETRY_AFTER_DEFAULT_MS} (1000) when there is no previous
 * count or the backlog did not shrink between them (no rate to extrapolate).
 *
 * Reasoning: the gate reopens only at the low mark, so retrying before the backlog can get there at
 * the observed rate (workers' drain minus other producers' adds) is rejected again. The floor is
 * the default cache age (a sooner retry reads the same count); the ceiling is the default `wait`
 * timeout, so one slow sample cannot make clients stay away long after a burst; the fallback is the
 * smallest non-zero HTTP `Retry-After` (whole seconds).
 * @returns Milliseconds, an integer in [{@link RETRY_AFTER_MIN_MS}, {@link RETRY_AFTER_MAX_MS}].
 */
export function estimateRetryAfterMs(
  previous: BacklogSample | undefined,
  latest: BacklogSample,
  lowWaterMessages: number,
): number {
  if (previous === undefined) return RETRY_AFTER_DEFAULT_MS;
  const drained = previous.backlogMessages - latest.backlogMessages;
  const elapsedMs = latest.atMs - previous.atMs;
  if (drained <= 0 || elapsedMs <= 0) return RETRY_AFTER_DEFAULT_MS;
  const remaining = Math.max(0, latest.backlogMessages - lowWaterMessages);
  const estimateMs = Math.ceil((remaining * elapsedMs) / drained);
  return Math.min(RETRY_AFTER_MAX_MS, Math.max(RETRY_AFTER_MIN_MS, estimateMs));
}

/** `signal.reason` (an `AbortError` DOMException unless the caller gave one), as an Error. */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(String(reason), { cause: reason });
}

function checkOption(name: string, value: number, min: number, allowed: string): void {
  if (!(Number.isFinite(value) && value >= min)) {
    throw new RangeError(`backpressure gate: ${name}: expected ${allowed}, got ${value}`);
  }
}

/**
 * Creates a {@link BackpressureGate} over `options.countBacklog` (see
 * {@link BackpressureGateOptions} for units and defaults). Starts open; does no I/O until called.
 * @throws RangeError when a mark or duration is out of range (e.g. `lowWaterMessages >=
 *   highWaterMessages`).
 */
export function createBackpressureGate(options: BackpressureGateOptions): BackpressureGate {
  const { countBacklog, queueName, highWaterMessages, lowWaterMessages, policy } = options;
  const cacheMs = options.cacheMs ?? 250;
  const waitTimeoutMs = options.waitTimeoutMs ?? 30_000;
  const pollMs = options.pollMs ?? 100;
  const now = options.now ?? (() => Date.now());
  checkOption('highWaterMessages', highWaterMessages, 1, 'a number >= 1 (messages)');
  checkOption('lowWaterMessages', lowWaterMessages, 0, 'a number >= 0 (messages)');
  if (lowWaterMessages >= highWaterMessages) {
    throw new RangeError(
      `backpressure gate: lowWaterMessages: expected a value below highWaterMessages (${highWaterMessages}), got ${lowWaterMessages}`,
    );
  }
  checkOption('cacheMs', cacheMs, 0, 'a duration >= 0 (ms)');
  checkOption('waitTimeoutMs', waitTimeoutMs, 0, 'a duration >= 0 (ms)');
  checkOption('pollMs', pollMs, 1, 'a duration >= 1 (ms)');

  let pushingBack = false;
  let previous: BacklogSample | undefined;
  let latest: BacklogSample | undefined;
  let inFlight: Promise<number> | undefined;
  let closed = false;
  const onClose = new Set<() => void>();

  const assertOpen = () => {
    if (closed) throw new Error(`${queueName} backpressure gate is closed`);
  };

  const read = (): Promise<number> => {
    if (latest !== undefined && now() - latest.atMs < cacheMs) {
      return Promise.resolve(latest.backlogMessages);
    }
    if (inFlight === undefined) {
      // Aged from the request, not the reply: the count may be older than the reply's arrival.
      const atMs = now();
      inFlight = countBacklog()
        .then((backlogMessages) => {
          previous = latest;
          latest = { backlogMessages, atMs };
          if (!pushingBack && backlogMessages >= highWaterMessages) pushingBack = true;
          else if (pushingBack && backlogMessages <= lowWaterMessages) pushingBack = false;
          return backlogMessages;
        })
        .finally(() => {
          inFlight = undefined;
        });
    }
    return inFlight;
  };

  /** Settles like `promise`, or rejects with `signal.reason` (or the gate's closing) first. */
  const interruptible = <T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = () => reject(abortReason(signal!));
      const onGateClose = () =>
        reject(new Error(`${queueName} backpressure gate closed while waiting`));
      signal?.addEventListener('abort', onAbort, { once: true });
      onClose.add(onGateClose);
      promise.then(resolve, reject).finally(() => {
        signal?.removeEventListener('abort', onAbort);
        onClose.delete(onGateClose);
      });
    });

  const sleep = (ms: number, signal: AbortSignal | undefined): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const elapsed = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    });
    return interruptible(elapsed, signal).finally(() => clearTimeout(timer));
  };

  const backpressureError = (
    queue: string,
    message: string,
    sample: BacklogSample,
  ): BackpressureError => {
    const retryAfterMs = estimateRetryAfterMs(previous, sample, lowWaterMessages);
    return new BackpressureError(`${message}; retry after ${retryAfterMs} ms`, retryAfterMs, {
      details: {
        queue,
        bound: 'messages' satisfies BackpressureBound,
        usage: sample.backlogMessages,
        limit: highWaterMessages,
        low_water: lowWaterMessages,
      },
    });
  };

  const describeClosed = (queue: string, sample: BacklogSample): string =>
    sample.backlogMessages >= highWaterMessages
      ? `${queue}: backlog ${sample.backlogMessages} messages is at or above the high-water mark ${highWaterMessages} (MEMQ_BACKPRESSURE_HIGH_WATER)`
      : `${queue}: backlog ${sample.backlogMessages} messages has not drained to the low-water mark ${lowWaterMessages} (MEMQ_BACKPRESSURE_LOW_WATER) since reaching the high-water mark ${highWaterMessages}`;

  return {
    async admit(signal, queue = queueName) {
      assertOpen();
      if (signal?.aborted) throw abortReason(signal);
      await interruptible(read(), signal);
      if (!pushingBack) return;
      if (policy === 'reject') {
        throw backpressureError(queue, describeClosed(queue, latest!), latest!);
      }
      const deadlineMs = now() + waitTimeoutMs;
      for (;;) {
        const remainingMs = deadlineMs - now();
        if (remainingMs <= 0) {
          throw backpressureError(
            queue,
            `${queue}: backlog ${latest!.backlogMessages} messages did not drain to the low-water mark ${lowWaterMessages} within ${waitTimeoutMs} ms (high-water mark ${highWaterMessages})`,
            latest!,
          );
        }
        await sleep(Math.min(pollMs, remainingMs), signal);
        await interruptible(read(), signal);
        if (!pushingBack) return;
      }
    },

    async backlog() {
      assertOpen();
      return read();
    },

    close() {
      if (closed) return;
      closed = true;
      for (const reject of [...onClose]) reject();
    },
  };
}

/** What the backlog ledger says about the job data not yet started (see `queues/backlog-ledger.ts`). */
export interface BacklogUsage {
  /** Messages of append and write jobs not yet started, every project. */
  readonly messages: number;
  /** UTF-8 bytes of the JSON data of append and write jobs not yet started, every project. */
  readonly bytes: number;
  /** {@link BacklogUsage.messages} of the project asking. */
  readonly projectMessages: number;
  /** {@link BacklogUsage.bytes} of the project asking. */
  readonly projectBytes: number;
}

/**
 * Bounds on the backlog besides the global message marks of {@link createBackpressureGate}; each
 * is off when absent or 0.
 */
export interface BacklogBounds {
  /**
   * Messages of one project not yet started at or above which it is refused
   * (`MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER`).
   */
  readonly projectHighWaterMessages?: number;
  /** Bytes of every project at or above which everyone is refused (`MEMQ_BACKPRESSURE_MAX_BYTES`). */
  readonly maxBytes?: number;
  /** Bytes of one project at or above which it is refused (`MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES`). */
  readonly projectMaxBytes?: number;
}

/** Which {@link BacklogBounds} bound refused a producer (`details.bound` of the error). */
export type BacklogBound = 'project_messages' | 'project_bytes' | 'bytes';

/**
 * Every `details.bound` of a {@link BackpressureError} and `bound` label of
 * `memq_backpressure_rejections_total`: `messages` (the global high-water mark of
 * {@link createBackpressureGate}) or a {@link BacklogBound}. Each names its unit.
 */
export type BackpressureBound = 'messages' | BacklogBound;

/** True when at least one of `bounds` is on (> 0), i.e. a producer must check the ledger per call. */
export function hasBacklogBounds(bounds: BacklogBounds): boolean {
  return (
    (bounds.projectHighWaterMessages ?? 0) > 0 ||
    (bounds.maxBytes ?? 0) > 0 ||
    (bounds.projectMaxBytes ?? 0) > 0
  );
}

/**
 * The refusal of a producer of `project` whose backlog `usage` is at or above one of `bounds`, or
 * undefined when every bound admits it. The project's own bounds are checked first (its messages,
 * then its bytes), then the global bytes, so the message names what the caller itself can change.
 * Bounds are caps without hysteresis (a refused project is admitted again as soon as its usage is
 * below the bound) and soft like the global marks: producers admitted on the same reading together
 * overshoot by what they enqueue. Pure.
 * @param queueName The queue named in the message, e.g. `memory-append`.
 * @returns A {@link BackpressureError} with `retryAfterMs` {@link RETRY_AFTER_DEFAULT_MS} (no drain
 *   rate is known per project) and `details` `{ queue, bound, project, usage, limit }` (`usage`
 *   and `limit` in the bound's unit, messages or bytes).
 */
export function backlogRefusal(
  queueName: string,
  project: string,
  usage: BacklogUsage,
  bounds: BacklogBounds,
): BackpressureError | undefined {
  const over = (limit: number | undefined, value: number) =>
    limit !== undefined && limit > 0 && value >= limit;
  const refuse = (bound: BacklogBound, value: number, limit: number, what: string) =>
    new BackpressureError(
      `${what}; retry after ${RETRY_AFTER_DEFAULT_MS} ms`,
      RETRY_AFTER_DEFAULT_MS,
      { details: { queue: queueName, bound, project, usage: value, limit } },
    );
  const { projectHighWaterMessages, projectMaxBytes, maxBytes } = bounds;
  if (over(projectHighWaterMessages, usage.projectMessages)) {
    return refuse(
      'project_messages',
      usage.projectMessages,
      projectHighWaterMessages!,
      `project ${project} has ${usage.projectMessages} messages of append and write jobs waiting, at or above its high-water mark ${projectHighWaterMessages} (MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER); other projects are still admitted`,
    );
  }
  if (over(projectMaxBytes, usage.projectBytes)) {
    return refuse(
      'project_bytes',
      usage.projectBytes,
      projectMaxBytes!,
      `project ${project} has ${usage.projectBytes} bytes of append and write jobs waiting, at or above its bound ${projectMaxBytes} (MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES); other projects are still admitted`,
    );
  }
  if (over(maxBytes, usage.bytes)) {
    return refuse(
      'bytes',
      usage.bytes,
      maxBytes!,
      `${usage.bytes} bytes of append and write jobs are waiting, at or above the bound ${maxBytes} (MEMQ_BACKPRESSURE_MAX_BYTES)`,
    );
  }
  return undefined;
}
