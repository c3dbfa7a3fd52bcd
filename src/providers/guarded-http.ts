/**
 * The one way memq calls a paid HTTP API (token counting, summaries): a JSON POST with its own
 * aborting timeout, failures classified into {@link FallbackReason}s, behind an opossum breaker
 * whose state is exported as `memq_breaker_state{breaker}`.
 */
import CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import type { MemqMetrics } from '../metrics/metrics.js';

/** Why a guarded call failed, so its caller fell back (the metrics' `reason` label). */
export type FallbackReason =
  | 'breaker_open'
  | 'rate_limited'
  | 'server_error'
  | 'client_error'
  | 'timeout'
  | 'network'
  | 'bad_response';

/** A failed guarded call, classified. Never carries an API key or message content. */
export class ProviderCallError extends Error {
  /** How the call failed. */
  readonly reason: FallbackReason;
  /** HTTP status, when there was a response. */
  readonly status: number | undefined;

  /**
   * @param who The API, for the message (`anthropic`, `summarizer`, ...).
   * @param reason See {@link FallbackReason}.
   * @param status The HTTP status, if any.
   */
  constructor(who: string, reason: FallbackReason, status?: number) {
    super(`${who} call failed: ${reason}${status ? ` (HTTP ${status})` : ''}`);
    this.name = 'ProviderCallError';
    this.reason = reason;
    this.status = status;
  }
}

/**
 * POSTs `body` as JSON and returns the parsed JSON reply. `signal` (optional) aborts the call
 * early, e.g. when the job that makes it loses its lock.
 * @throws `signal.reason` when `signal` aborted the call.
 * @throws ProviderCallError `timeout` (the fetch is aborted after `timeoutMs`), `network`,
 *   `rate_limited` (429), `server_error` (5xx), `client_error` (other non-2xx) or `bad_response`
 *   (unreadable JSON).
 */
export async function postJson(
  who: string,
  url: string,
  headers: Record<string, string>,
  body: unknown,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: signal
        ? AbortSignal.any([AbortSignal.timeout(timeoutMs), signal])
        : AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    // The caller gave up (e.g. the job lost its lock): its reason, not a provider failure.
    if (signal?.aborted) throw signal.reason;
    const timedOut = error instanceof Error && error.name === 'TimeoutError';
    throw new ProviderCallError(who, timedOut ? 'timeout' : 'network');
  }
  if (!response.ok) {
    await response.body?.cancel();
    const reason: FallbackReason =
      response.status === 429
        ? 'rate_limited'
        : response.status >= 500
          ? 'server_error'
          : 'client_error';
    throw new ProviderCallError(who, reason, response.status);
  }
  try {
    return await response.json();
  } catch {
    throw new ProviderCallError(who, 'bad_response', response.status);
  }
}

/** The reason to record for an error a guarded call threw (an open breaker included). */
export function fallbackReasonOf(error: unknown): FallbackReason {
  if (error instanceof ProviderCallError) return error.reason;
  return (error as { code?: unknown } | null)?.code === 'EOPENBREAKER' ? 'breaker_open' : 'network';
}

/** Breaker settings (opossum), defaults in brackets. */
export interface BreakerSettings {
  /** Failure percentage over the rolling window (10 s) that opens the breaker [50]. */
  readonly errorThresholdPercentage?: number;
  /** How long an open breaker waits before one trial call, ms [30 000]. */
  readonly resetTimeoutMs?: number;
  /** Calls in the rolling window before the breaker may open [5]. */
  readonly volumeThreshold?: number;
}

/**
 * `call` behind an opossum breaker named `name` (no opossum timeout: the call aborts itself).
 * State changes are logged (name and state only) and exported as `memq_breaker_state`.
 */
export function guard<A, R>(
  name: string,
  call: (arg: A) => Promise<R>,
  settings: BreakerSettings,
  metrics: MemqMetrics,
  log: Logger,
): CircuitBreaker<[A], R> {
  const breaker = new CircuitBreaker(call, {
    name,
    timeout: false,
    errorThresholdPercentage: settings.errorThresholdPercentage ?? 50,
    resetTimeout: settings.resetTimeoutMs ?? 30_000,
    volumeThreshold: settings.volumeThreshold ?? 5,
  });
  const state = (value: number, event: string) => () => {
    metrics.breakerState.set({ breaker: name }, value);
    log.warn({ breaker: name, state: event }, 'breaker changed state');
  };
  breaker.on('open', state(1, 'open'));
  breaker.on('halfOpen', state(0.5, 'half-open'));
  breaker.on('close', state(0, 'closed'));
  metrics.breakerState.set({ breaker: name }, 0);
  return breaker;
}
