import { Tiktoken, getEncodingNameForModel, type TiktokenBPE } from 'js-tiktoken/lite';
import { ConfigError } from './errors.js';
import type { Role } from './message.js';

/** BPE encodings js-tiktoken ships (rank files inside the package; no network at run time). */
export const ENCODINGS = [
  'o200k_base',
  'cl100k_base',
  'p50k_base',
  'p50k_edit',
  'r50k_base',
  'gpt2',
] as const;
/** One of {@link ENCODINGS}. */
export type EncodingName = (typeof ENCODINGS)[number];

/**
 * Model-name prefixes for dated or variant names js-tiktoken's exact table does not list.
 * Source: openai/tiktoken `tiktoken/model.py` `MODEL_PREFIX_TO_ENCODING`. Longest prefix wins.
 */
const MODEL_PREFIX_TO_ENCODING: ReadonlyArray<readonly [string, EncodingName]> = [
  ['gpt-5-', 'o200k_base'],
  ['gpt-4.5-', 'o200k_base'],
  ['gpt-4.1-', 'o200k_base'],
  ['chatgpt-4o-', 'o200k_base'],
  ['gpt-4o-', 'o200k_base'],
  ['o1-', 'o200k_base'],
  ['o3-', 'o200k_base'],
  ['o4-', 'o200k_base'],
  ['gpt-4-', 'cl100k_base'],
  ['gpt-3.5-turbo-', 'cl100k_base'],
  ['gpt-35-turbo-', 'cl100k_base'],
];

/**
 * The encoding for `model`: js-tiktoken's exact model table first (`getEncodingNameForModel`),
 * then {@link MODEL_PREFIX_TO_ENCODING}.
 * @throws ConfigError for a model neither table knows.
 */
export function encodingForModel(model: string): EncodingName {
  try {
    return getEncodingNameForModel(model as Parameters<typeof getEncodingNameForModel>[0]);
  } catch {
    const match = MODEL_PREFIX_TO_ENCODING.filter(([prefix]) => model.startsWith(prefix)).sort(
      (a, b) => b[0].length - a[0].length,
    )[0];
    if (match) return match[1];
    throw new ConfigError(
      `token_provider.model: expected a model with a known tiktoken encoding (e.g. gpt-4o, gpt-4.1, gpt-5, o3, gpt-4, gpt-3.5-turbo), got ${JSON.stringify(model)}`,
    );
  }
}

/**
 * Chat-format overhead, from OpenAI's cookbook "How to count tokens with tiktoken"
 * (`num_tokens_from_messages`, models gpt-3.5-turbo-0613 and later): every message costs
 * 3 tokens of framing plus its encoded role and content; a `name` costs its tokens plus 1.
 * The 3 tokens that prime the assistant's reply are per request, not per message, and are not
 * stored.
 */
export const TOKENS_PER_MESSAGE = 3;
/** Extra tokens when a message has a `name` (same source as {@link TOKENS_PER_MESSAGE}). */
export const TOKENS_PER_NAME = 1;

/** The parts of a message that cost tokens. */
export interface CountableMessage {
  readonly role: Role;
  readonly content: string;
  readonly name?: string | undefined;
}

/** Exact token counts for one encoding. */
export interface TokenCounter {
  /** The encoding in use. */
  readonly encoding: EncodingName;
  /** Tokens of `text`, with special-token text (`<|endoftext|>`) counted as plain text. */
  countText(text: string): number;
  /**
   * Tokens one stored message costs in a chat request: {@link TOKENS_PER_MESSAGE} + role +
   * content (+ name + {@link TOKENS_PER_NAME}).
   */
  countMessage(message: CountableMessage): number;
}

const encoders = new Map<EncodingName, Promise<Tiktoken>>();

async function loadRanks(encoding: EncodingName): Promise<TiktokenBPE> {
  switch (encoding) {
    case 'o200k_base':
      return (await import('js-tiktoken/ranks/o200k_base')).default;
    case 'cl100k_base':
      return (await import('js-tiktoken/ranks/cl100k_base')).default;
    case 'p50k_base':
      return (await import('js-tiktoken/ranks/p50k_base')).default;
    case 'p50k_edit':
      return (await import('js-tiktoken/ranks/p50k_edit')).default;
    case 'r50k_base':
      return (await import('js-tiktoken/ranks/r50k_base')).default;
    case 'gpt2':
      return (await import('js-tiktoken/ranks/gpt2')).default;
  }
}

/** Called once per encoding per process with its load cost, for logging. */
export type EncoderLoadListener = (info: {
  encoding: EncodingName;
  loadMs: number;
  rssDeltaBytes: number;
}) => void;

/**
 * A counter for `encoding`. The encoder is built once per encoding per process, lazily (the
 * o200k ranks take about a second and ~150 MB to load, ecosystem.md section 4), and shared.
 */
export async function createTokenCounter(
  encoding: EncodingName,
  onLoad?: EncoderLoadListener,
): Promise<TokenCounter> {
  let pending = encoders.get(encoding);
  if (!pending) {
    pending = (async () => {
      const started = performance.now();
      const rssBefore = process.memoryUsage.rss();
      const encoder = new Tiktoken(await loadRanks(encoding));
      onLoad?.({
        encoding,
        loadMs: Math.round(performance.now() - started),
        rssDeltaBytes: process.memoryUsage.rss() - rssBefore,
      });
      return encoder;
    })();
    encoders.set(encoding, pending);
  }
  const encoder = await pending;
  // allowedSpecial = [] and disallowedSpecial = [] make special-token text plain text instead of
  // throwing ("The text contains a special token that is not allowed").
  const countText = (text: string): number => encoder.encode(text, [], []).length;
  return {
    encoding,
    countText,
    countMessage(message) {
      let tokens = TOKENS_PER_MESSAGE + countText(message.role) + countText(message.content);
      if (message.name !== undefined) tokens += countText(message.name) + TOKENS_PER_NAME;
      return tokens;
    },
  };
}

/**
 * The append-time estimate of a message's tokens, before the exact count: ceil(chars / 4) plus
 * the per-message framing. chars/4 is OpenAI's rule of thumb for English text
 * ("What are tokens and how to count them?", OpenAI help center).
 */
export function estimateTokens(message: CountableMessage): number {
  const chars = message.role.length + message.content.length + (message.name?.length ?? 0);
  return TOKENS_PER_MESSAGE + Math.ceil(chars / 4);
}
