/**
 * Remote token counting: Anthropic's and Google's counting APIs behind opossum circuit breakers,
 * with the local tokenizer as the fallback (docs/architecture.md, "Token counting"). A provider failure never fails
 * a job: the count falls back, `memq_token_provider_fallbacks_total` increments, and the count
 * is marked as an approximation ({@link MessageCount.approximatedBy}).
 */
import type { Logger } from 'pino';
import {
  localEncodingFor,
  messageParts,
  type CountableMessage,
  type EstimatedPart,
  type MessageParts,
  type RemoteTokenProvider,
  type TokenCounter,
} from './counter.js';
import { imageRuleIsPublishedFor } from './image-tokens.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import {
  ProviderCallError,
  fallbackReasonOf,
  guard,
  postJson,
  type BreakerSettings,
} from '../providers/guarded-http.js';

export { ProviderCallError, type FallbackReason } from '../providers/guarded-http.js';

/** Default base URLs of the counting APIs. */
export const PROVIDER_BASE_URLS: Readonly<Record<RemoteTokenProvider, string>> = {
  anthropic: 'https://api.anthropic.com',
  google: 'https://generativelanguage.googleapis.com',
};

/**
 * Anthropic API version header sent with every call (docs.anthropic.com, "Versions"; the
 * count_tokens endpoint accepts it).
 */
export const ANTHROPIC_VERSION = '2023-06-01';

/** Breaker and call settings of one provider. */
export interface ProviderBreakerOptions extends BreakerSettings {
  /** Per-call timeout, ms (the fetch is aborted). Default 5 000. */
  readonly timeoutMs?: number;
}

/**
 * One message's token count and how it was made: what memq commits for it
 * (`MemoryStore.commitTokens`).
 */
export interface MessageCount {
  /** Tokens of the message (framing included), integer >= 0. */
  readonly tokens: number;
  /**
   * What counted it: an encoding name (`o200k_base`, `cl100k_base`, ...) or a provider whose
   * counting API answered (`anthropic`, `google`). The `source` label of
   * `memq_tokens_counted_total`.
   */
  readonly source: string;
  /**
   * Present when the count is an approximation: how it was approximated,
   * {@link approximationOf} (e.g. `o200k_base (approximation for claude-sonnet-4-5)`). Absent
   * when it is exact: the model's published tiktoken encoding (provider `openai`), or the
   * provider's own counting API.
   */
  readonly approximatedBy?: string;
}

/**
 * The name of an approximate count: the local encoding that counted and the model whose own
 * tokenizer it stands in for, `<encoding> (approximation for <model>)`, e.g.
 * `o200k_base (approximation for claude-sonnet-4-5)`. At most 232 characters (a model name is
 * at most 200, `token_provider.model`).
 */
export function approximationOf(encoding: string, model: string): string {
  return `${encoding} (approximation for ${model})`;
}

/**
 * The name of a count some of whose parts are estimated (`EstimatedPart`, src/tokens/counter.ts):
 * `<base>; estimated: <parts>`, where `base` is what counted the rest (an encoding such as
 * `o200k_base`, or an {@link approximationOf}), e.g. `o200k_base; estimated: tool calls, images`
 * or `o200k_base (approximation for claude-sonnet-4-5); estimated: tool_call_id`. `base` itself
 * when nothing is estimated. At most 232 + 47 characters.
 */
export function withEstimates(base: string, estimated: readonly EstimatedPart[]): string {
  return estimated.length === 0 ? base : `${base}; estimated: ${estimated.join(', ')}`;
}

/**
 * The estimated parts of a message counted for `model`: those of {@link messageParts}, plus
 * `images` when the message has an image and `model`'s image costs are not the vision guide's
 * figures memq counts with (`imageRuleIsPublishedFor`, src/tokens/image-tokens.ts).
 */
export function estimatedPartsFor(parts: MessageParts, model: string): EstimatedPart[] {
  const estimated = [...parts.estimated];
  if (parts.images > 0 && !imageRuleIsPublishedFor(model) && !estimated.includes('images')) {
    estimated.push('images');
  }
  return estimated;
}

/**
 * How a local count of one message is qualified: `undefined` when it is exact (the resource's
 * own encoding, `approximatedBy` undefined, and nothing estimated); else
 * {@link withEstimates}(`approximatedBy` or the encoding, {@link estimatedPartsFor}).
 * @param approximatedBy The resource's {@link localApproximation}.
 */
export function localCountApproximation(
  parts: MessageParts,
  encoding: string,
  model: string,
  approximatedBy: string | undefined,
): string | undefined {
  const estimated = estimatedPartsFor(parts, model);
  if (estimated.length === 0) return approximatedBy;
  return withEstimates(approximatedBy ?? encoding, estimated);
}

/**
 * How memq's local counts for a resource's model are qualified (its messages when counted
 * locally, and its summaries, which are always counted locally): `undefined` when they are
 * exact, which is provider `openai` only (the model's published tiktoken encoding,
 * `encodingForModel`); otherwise, for `anthropic`, `google` and any other provider name (their
 * tokenizers are not published, or memq does not know the provider serves OpenAI's models
 * unchanged), {@link approximationOf} the encoding {@link localEncodingFor} picks.
 */
export function localApproximation(provider: string, model: string): string | undefined {
  return provider === 'openai'
    ? undefined
    : approximationOf(localEncodingFor(provider, model), model);
}

/** Options of {@link createRemoteCounter}. */
export interface RemoteCounterOptions extends ProviderBreakerOptions {
  /** Which API to call. */
  readonly provider: RemoteTokenProvider;
  /** Model name sent to the API (e.g. `claude-sonnet-4-5`, `gemini-2.5-flash`). */
  readonly model: string;
  /** API key (read from the environment variable the resource names). Never logged. */
  readonly apiKey: string;
  /**
   * Base URL (scheme, host, optional path prefix); default {@link PROVIDER_BASE_URLS}. The paths
   * appended are Anthropic's `/v1/messages/count_tokens` and Google's
   * `/v1beta/models/{model}:countTokens`.
   */
  readonly baseUrl?: string;
  /** The local counter used when the API cannot answer. */
  readonly fallback: TokenCounter;
  /** Calls in flight at once per job. Default 4. */
  readonly parallelCalls?: number;
  /** Fallback and breaker-state metrics. */
  readonly metrics: MemqMetrics;
  /** Logs breaker transitions (provider and reason only). */
  readonly log: Logger;
}

/** Counts with a provider's API, falling back to the local tokenizer. */
export interface RemoteCounter {
  /** Breaker name, e.g. `anthropic:claude-sonnet-4-5` (the `breaker` metric label). */
  readonly name: string;
  /**
   * Tokens of each message: the provider's count of a one-message request holding the message's
   * text (role `user`: a string content as a string, text parts as text blocks (Anthropic) or
   * parts (Google), empty ones left out; so it includes the provider's own per-request framing),
   * exact; or the fallback counter's {@link TokenCounter.countMessageAsync}, an approximation
   * (`approximatedBy` set: {@link approximationOf} the fallback's encoding and the model, with
   * {@link withEstimates} of the message's estimated parts), when the call fails, times out, is
   * refused (429, 5xx, 4xx) or the breaker is open, when the text is empty, and without a call
   * when the message has what a one-message request cannot carry: image parts, tool calls or a
   * `tool_call_id` (a tool result or a tool call is only valid in those APIs next to its
   * counterpart, and images would be uploaded to be counted). Never rejects except for
   * `signal`'s abort.
   * @returns per message, its tokens, where the count came from and whether it is approximate.
   */
  countMessages(
    messages: readonly CountableMessage[],
    signal?: AbortSignal,
  ): Promise<MessageCount[]>;
  /** Stops the breaker's timers. */
  close(): void;
}

/** Creates a {@link RemoteCounter}. */
export function createRemoteCounter(options: RemoteCounterOptions): RemoteCounter {
  const { provider, model, apiKey, metrics, log, fallback } = options;
  const base = (options.baseUrl ?? PROVIDER_BASE_URLS[provider]).replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 5_000;
  // The breaker's metric label: provider, model and host, so two endpoints stay apart.
  const name = `${provider}:${model}@${new URL(base).host}`;

  const call = async ({
    content,
    signal,
  }: {
    content: string | readonly string[];
    signal?: AbortSignal;
  }): Promise<number> => {
    const texts = typeof content === 'string' ? [content] : content;
    const payload =
      provider === 'anthropic'
        ? await postJson(
            provider,
            `${base}/v1/messages/count_tokens`,
            { 'x-api-key': apiKey, 'anthropic-version': ANTHROPIC_VERSION },
            {
              model,
              messages: [
                {
                  role: 'user',
                  content:
                    typeof content === 'string'
                      ? content
                      : texts.map((text) => ({ type: 'text', text })),
                },
              ],
            },
            timeoutMs,
            signal,
          )
        : await postJson(
            provider,
            `${base}/v1beta/models/${encodeURIComponent(model)}:countTokens`,
            { 'x-goog-api-key': apiKey },
            { contents: [{ role: 'user', parts: texts.map((text) => ({ text })) }] },
            timeoutMs,
            signal,
          );
    const field = provider === 'anthropic' ? 'input_tokens' : 'totalTokens';
    const tokens = (payload as Record<string, unknown> | null)?.[field];
    if (typeof tokens !== 'number' || !Number.isInteger(tokens) || tokens < 0) {
      throw new ProviderCallError(provider, 'bad_response');
    }
    return tokens;
  };
  const breaker = guard(name, call, options, metrics, log);
  const approximatedBy = approximationOf(fallback.encoding, model);

  const countOne = async (
    message: CountableMessage,
    signal?: AbortSignal,
  ): Promise<MessageCount> => {
    const parts = messageParts(message);
    const content = remoteContent(message);
    // Nothing to ask a provider about an empty text (Anthropic rejects empty content).
    if (content !== undefined && content.length > 0) {
      try {
        return {
          tokens: await breaker.fire({ content, ...(signal ? { signal } : {}) }),
          source: provider,
        };
      } catch (error) {
        // The job gave up (lock lost, shutdown): stop, do not count locally for nothing.
        if (signal?.aborted) throw signal.reason;
        metrics.tokenProviderFallbacks.inc({ provider, reason: fallbackReasonOf(error) });
      }
    }
    return {
      tokens: await fallback.countMessageAsync(message, signal),
      source: fallback.encoding,
      approximatedBy: withEstimates(approximatedBy, estimatedPartsFor(parts, model)),
    };
  };

  return {
    name,
    async countMessages(messages, signal) {
      const results = new Array<MessageCount>(messages.length);
      let next = 0;
      const lane = async () => {
        while (next < messages.length) {
          signal?.throwIfAborted();
          const index = next++;
          results[index] = await countOne(messages[index]!, signal);
        }
      };
      await Promise.all(Array.from({ length: options.parallelCalls ?? 4 }, lane));
      return results;
    },
    close() {
      breaker.shutdown();
    },
  };
}

/**
 * What of `message` a counting API is sent: its string content, or its text parts' texts without
 * the empty ones; undefined when it has image parts, tool calls or a `tool_call_id`, which are
 * counted locally (see {@link RemoteCounter.countMessages}).
 */
function remoteContent(message: CountableMessage): string | string[] | undefined {
  if (message.tool_calls !== undefined || message.tool_call_id !== undefined) return undefined;
  const { content } = message;
  if (typeof content === 'string') return content;
  if (!content) return undefined;
  const texts: string[] = [];
  for (const part of content) {
    if (part.type !== 'text') return undefined;
    if (part.text.length > 0) texts.push(part.text);
  }
  return texts;
}
