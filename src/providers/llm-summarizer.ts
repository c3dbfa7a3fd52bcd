/**
 * The LLM summarizer: an OpenAI-compatible `/v1/chat/completions` endpoint behind an opossum
 * breaker, falling back to the rule-based summary (docs/architecture.md, "Flush"). A summarizer failure
 * never loses a message and never fails a flush.
 */
import type { Logger } from 'pino';
import {
  RULE_BASED_SUMMARIZER,
  describeToolCall,
  fitToBudget,
  readableContent,
  speakerOf,
  toolNamesOf,
  type Summarizer,
  type SummaryRequest,
} from '../flush/summary.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import {
  ProviderCallError,
  fallbackReasonOf,
  guard,
  postJson,
  type BreakerSettings,
} from './guarded-http.js';

/** Instructions sent as the system message of every summary request. */
export const SUMMARY_INSTRUCTIONS =
  'You maintain the rolling summary of a conversation. Merge the previous summary (if any) and the new messages into one concise summary that keeps facts, decisions, open questions and names. Reply with the summary text only.';

/** Options of {@link createLlmSummarizer}. */
export interface LlmSummarizerOptions extends BreakerSettings {
  /** Base URL; requests go to `{endpoint}/v1/chat/completions`. */
  readonly endpoint: string;
  /** Model name sent in the request. */
  readonly model: string;
  /** Bearer token (from the environment variable the resource names); never logged. */
  readonly apiKey?: string;
  /** Per-call timeout, ms (the fetch is aborted). */
  readonly timeoutMs: number;
  /** Fallback and breaker metrics. */
  readonly metrics: MemqMetrics;
  /** Breaker transitions and fallbacks (reasons only, never content or keys). */
  readonly log: Logger;
}

/**
 * Longest tool-call arguments sent to the model per call, characters: the model needs what was
 * asked, not a pasted document.
 */
export const PROMPT_ARGUMENT_CHARS = 1000;

/**
 * The transcript sent to the model: the previous summary, then one line per folded message,
 * `speaker: content` (`speakerOf`: a tool result is `tool (function)` when its call is folded
 * too; `readableContent`: text parts in order, an image as `[image]`, never its URL, null as
 * nothing), then for an assistant message with tool calls `called name(arguments), ...`
 * (arguments clipped to {@link PROMPT_ARGUMENT_CHARS}). The folded messages come from the log,
 * so they are already redacted.
 */
export function summaryPrompt(request: SummaryRequest): string {
  const names = toolNamesOf(request.folded);
  const lines = request.folded.map((m) => {
    const text = readableContent(m.content);
    const calls = (m.tool_calls ?? []).map((c) => describeToolCall(c, PROMPT_ARGUMENT_CHARS));
    const called = calls.length > 0 ? `called ${calls.join(', ')}` : '';
    return `${speakerOf(m, names)}: ${[text, called].filter((p) => p !== '').join(' ')}`;
  });
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
  // The breaker's metric label: model and host, so two endpoints serving one model stay apart.
  const name = `summarizer:${options.model}@${new URL(url).host}`;
  const call = async (request: SummaryRequest): Promise<string> => {
    const payload = await postJson(
      'summarizer',
      url,
      options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {},
      {
        model: options.model,
        temperature: 0,
        // The budget counts the summary as a system message: leave its framing out.
        max_tokens: Math.max(1, request.maxTokens - request.countTokens('')),
        messages: [
          { role: 'system', content: SUMMARY_INSTRUCTIONS },
          { role: 'user', content: summaryPrompt(request) },
        ],
      },
      options.timeoutMs,
      request.signal,
    );
    const content = (payload as { choices?: Array<{ message?: { content?: unknown } }> } | null)
      ?.choices?.[0]?.message?.content;
    if (typeof content !== 'string' || content.trim() === '') {
      throw new ProviderCallError('summarizer', 'bad_response');
    }
    return content.trim();
  };
  const breaker = guard(name, call, options, metrics, log);

  return {
    async summarize(request) {
      try {
        const text = await breaker.fire(request);
        const content = fitToBudget(text, request.maxTokens, request.countTokens);
        if (content !== '') return { content, source: 'llm' };
        metrics.summarizerFallbacks.inc({ reason: 'bad_response' });
      } catch (error) {
        // The flush gave up (lost its lock): no fallback summary for a commit that cannot happen.
        if (request.signal?.aborted) throw request.signal.reason;
        const reason = fallbackReasonOf(error);
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
