/**
 * The LLM summarizer: an OpenAI-compatible `/v1/chat/completions` endpoint behind an opossum
 * breaker, falling back to the rule-based summary (DESIGN.md section 6). A summarizer failure
 * never loses a message and never fails a flush.
 */
import CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import {
  RULE_BASED_SUMMARIZER,
  fitToBudget,
  type Summarizer,
  type SummaryRequest,
} from '../core/summarizer.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import { ProviderCallError, type FallbackReason } from './token-providers.js';

/** Instructions sent as the system message of every summary request. */
export const SUMMARY_INSTRUCTIONS =
  'You maintain the rolling summary of a conversation. Merge the previous summary (if any) and the new messages into one concise summary that keeps facts, decisions, open questions and names. Reply with the summary text only.';

/** Options of {@link createLlmSummarizer}. */
export interface LlmSummarizerOptions {
  /** Base URL; requests go to `{endpoint}/v1/chat/completions`. */
  readonly endpoint: string;
  /** Model name sent in the request. */
  readonly model: string;
  /** Bearer token (from the environment variable the resource names); never logged. */
  readonly apiKey?: string;
  /** Per-call timeout, ms (the fetch is aborted). */
  readonly timeoutMs: number;
  /** Failure percentage that opens the breaker. Default 50. */
  readonly errorThresholdPercentage?: number;
  /** How long an open breaker waits before a trial call, ms. Default 30 000. */
  readonly resetTimeoutMs?: number;
  /** Calls in the rolling window before the breaker may open. Default 5. */
  readonly volumeThreshold?: number;
  /** Fallback and breaker metrics. */
  readonly metrics: MemqMetrics;
  /** Breaker transitions and fallbacks (reasons only, never content or keys). */
  readonly log: Logger;
}

/** The transcript sent to the model: the previous summary, then one line per folded message. */
export function summaryPrompt(request: SummaryRequest): string {
  const lines = request.folded.map(
    (m) => `${m.name ? `${m.role} (${m.name})` : m.role}: ${m.content}`,
  );
  return [
    request.previous ? `Previous summary:\n${request.previous}\n` : '',
    `New messages:\n${lines.join('\n')}`,
    `\nWrite at most ${request.maxTokens} tokens.`,
  ].join('\n');
}

/**
 * A {@link Summarizer} calling an OpenAI-compatible chat endpoint (`max_tokens` = the budget,
 * temperature 0). A reply longer than the budget by memq's counter is cut to fit
 * ({@link fitToBudget}). On a timeout, 429, 5xx, 4xx, unreadable or empty reply, or an open
 * breaker, the rule-based summary is returned instead and
 * `memq_summarizer_fallbacks_total{reason}` increments.
 */
export function createLlmSummarizer(options: LlmSummarizerOptions): Summarizer & {
  close(): void;
} {
  const { metrics, log } = options;
  const url = `${options.endpoint.replace(/\/+$/, '')}/v1/chat/completions`;
  const name = `summarizer:${options.model}`;
  const call = async (request: SummaryRequest): Promise<string> => {
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
        },
        body: JSON.stringify({
          model: options.model,
          temperature: 0,
          // The budget counts the summary as a system message: leave its framing out.
          max_tokens: Math.max(1, request.maxTokens - request.countTokens('')),
          messages: [
            { role: 'system', content: SUMMARY_INSTRUCTIONS },
            { role: 'user', content: summaryPrompt(request) },
          ],
        }),
        signal: AbortSignal.timeout(options.timeoutMs),
      });
    } catch (error) {
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      throw new ProviderCallError('summarizer', timedOut ? 'timeout' : 'network');
    }
    if (!response.ok) {
      await response.body?.cancel();
      const reason: FallbackReason =
        response.status === 429
          ? 'rate_limited'
          : response.status >= 500
            ? 'server_error'
            : 'client_error';
      throw new ProviderCallError('summarizer', reason, response.status);
    }
    let payload: unknown;
    try {
      payload = await response.json();
    } catch {
      throw new ProviderCallError('summarizer', 'bad_response', response.status);
    }
    const content = (payload as { choices?: Array<{ message?: { content?: unknown } }> } | null)
      ?.choices?.[0]?.message?.content;
    if (typeof content !== 'string' || content.trim() === '') {
      throw new ProviderCallError('summarizer', 'bad_response', response.status);
    }
    return content.trim();
  };
  const breaker = new CircuitBreaker(call, {
    name,
    timeout: false, // the fetch has its own timeout and is aborted
    errorThresholdPercentage: options.errorThresholdPercentage ?? 50,
    resetTimeout: options.resetTimeoutMs ?? 30_000,
    volumeThreshold: options.volumeThreshold ?? 5,
  });
  const state = (value: number, event: string) => () => {
    metrics.breakerState.set({ breaker: name }, value);
    log.warn({ breaker: name, state: event }, 'summarizer breaker changed state');
  };
  breaker.on('open', state(1, 'open'));
  breaker.on('halfOpen', state(0.5, 'half-open'));
  breaker.on('close', state(0, 'closed'));
  metrics.breakerState.set({ breaker: name }, 0);

  return {
    async summarize(request) {
      try {
        const text = await breaker.fire(request);
        const content = fitToBudget(text, request.maxTokens, request.countTokens);
        if (content !== '') return { content, source: 'llm' };
        metrics.summarizerFallbacks.inc({ reason: 'bad_response' });
      } catch (error) {
        const reason: FallbackReason =
          error instanceof ProviderCallError
            ? error.reason
            : (error as { code?: unknown }).code === 'EOPENBREAKER'
              ? 'breaker_open'
              : 'network';
        metrics.summarizerFallbacks.inc({ reason });
        log.warn({ breaker: name, reason }, 'LLM summary failed; using the rule-based summary');
      }
      return RULE_BASED_SUMMARIZER.summarize(request);
    },
    close() {
      breaker.shutdown();
    },
  };
}
