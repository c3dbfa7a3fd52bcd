import { hash } from 'node:crypto';
import { getEncodingNameForModel } from 'js-tiktoken/lite';
import { LRUCache } from 'lru-cache';
import { ConfigError } from './errors.js';
import type { Role } from './message.js';

/** BPE encodings memq counts with (gpt-tokenizer and js-tiktoken ship their rank files: no network at run time). */
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

/** What provider `openai` needs of a model, as an error message says it. */
export const ENCODING_MODEL_ALLOWED =
  'expected a model with a known tiktoken encoding (e.g. gpt-4o, gpt-4.1, gpt-5, o3, gpt-4, gpt-3.5-turbo)';

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
      `token_provider.model: ${ENCODING_MODEL_ALLOWED}, got ${JSON.stringify(model)}`,
    );
  }
}

/** Providers whose models memq counts remotely (their token-counting APIs), with a local fallback. */
export const REMOTE_TOKEN_PROVIDERS = ['anthropic', 'google'] as const;
/** One of {@link REMOTE_TOKEN_PROVIDERS}. */
export type RemoteTokenProvider = (typeof REMOTE_TOKEN_PROVIDERS)[number];

/** True when `provider` is one of {@link REMOTE_TOKEN_PROVIDERS}. */
export function isRemoteTokenProvider(provider: string): provider is RemoteTokenProvider {
  return (REMOTE_TOKEN_PROVIDERS as readonly string[]).includes(provider);
}

/**
 * The encoding memq counts a resource's tokens with locally: for `openai` (and any provider whose
 * model OpenAI's tables know) the model's own encoding ({@link encodingForModel}); for other
 * providers (Claude, Gemini, ... whose tokenizers are not published) `o200k_base`, an
 * approximation used as the fallback when the provider's counting API is unavailable.
 * @throws ConfigError for provider `openai` with a model of unknown encoding.
 */
export function localEncodingFor(provider: string, model: string): EncodingName {
  if (provider === 'openai') return encodingForModel(model);
  try {
    return encodingForModel(model);
  } catch {
    return 'o200k_base';
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
  /** Who spoke; its text is counted. */
  readonly role: Role;
  /** The text. */
  readonly content: string;
  /** Optional participant name; counted plus {@link TOKENS_PER_NAME}. */
  readonly name?: string | undefined;
}

/** Exact token counts for one encoding. */
export interface TokenCounter {
  /** The encoding in use. */
  readonly encoding: EncodingName;
  /**
   * Tokens of `text`, with special-token text (`<|endoftext|>`) counted as plain text. Cached by
   * content hash when the counter has a {@link TokenCache}. Synchronous: prefer
   * {@link TokenCounter.countTextAsync} for text that may be large.
   */
  countText(text: string): number;
  /**
   * Tokens one stored message costs in a chat request: {@link TOKENS_PER_MESSAGE} + role +
   * content (+ name + {@link TOKENS_PER_NAME}).
   */
  countMessage(message: CountableMessage): number;
  /**
   * {@link TokenCounter.countMessage}, yielding to the event loop whenever
   * {@link YIELD_EVERY_MS} of counting has passed (between slices of {@link SLICE_CHARS}), so a
   * multi-megabyte message never starves BullMQ's lock renewal.
   * @throws the signal's reason when `signal` aborts between slices.
   */
  countMessageAsync(message: CountableMessage, signal?: AbortSignal): Promise<number>;
  /**
   * {@link TokenCounter.countText}, yielding to the event loop every {@link YIELD_EVERY_MS} of
   * counting (see {@link TokenCounter.countMessageAsync}).
   * @throws the signal's reason when `signal` aborts between slices.
   */
  countTextAsync(text: string, signal?: AbortSignal): Promise<number>;
  /** The framing part of {@link TokenCounter.countMessage}: everything but the content's tokens. */
  framing(message: Omit<CountableMessage, 'content'>): number;
  /**
   * Looks `text` up in the count cache, hashing it once for both the lookup and a later
   * {@link CacheProbe.remember} (a miss costs one SHA-256, not two).
   */
  probe(text: string): CacheProbe;
}

/** One text's cache lookup (see {@link TokenCounter.probe}). */
export interface CacheProbe {
  /** The cached count, or undefined (no cache, empty text, or a miss). */
  readonly tokens: number | undefined;
  /** Caches `tokens` as the text's count (a no-op without a cache or for empty text). */
  remember(tokens: number): void;
}

/**
 * Longest text counted in one tokenizer call, characters. Longer text is cut into slices just
 * before a space that sits between two lowercase ASCII letters (`a| b`), or before a line feed
 * between two ASCII letters or digits (`A|\nb`, so base64 and other line-wrapped blobs cut at
 * their line ends): with every encoding's pre-tokenizer regex such a character always starts a new
 * piece, so the slices' counts add up to the whole text's count exactly (tested against
 * js-tiktoken). Only a stretch of
 * {@link SLICE_CHARS} / 2 characters or more without such a boundary (a base64 blob, a run of one
 * character, unspaced CJK text) is cut at a fixed length, where the count can differ from the
 * tokenizer's by a token or two per cut. The reason: BPE is quadratic in a piece's length (20,000
 * `a`s take 250 ms in gpt-tokenizer and 25 s in js-tiktoken, measured here), and slicing makes
 * the cost linear. 2,048 keeps the worst slice near 20 ms (unspaced CJK).
 */
export const SLICE_CHARS = 2048;
/** Counting time after which {@link TokenCounter.countMessageAsync} yields to the event loop, ms. */
export const YIELD_EVERY_MS = 10;

/** Token counts cached by encoding and content hash, bounded in bytes (lru-cache). */
export interface TokenCache {
  /** The cached count for `key`, or undefined (a miss). Counts hits and misses. */
  get(key: string): number | undefined;
  /** Caches `tokens` for `key`. */
  set(key: string, tokens: number): void;
  /** Cumulative hits and misses, current entries and approximate bytes held. */
  stats(): { hits: number; misses: number; entries: number; bytes: number };
}

/**
 * Default {@link createTokenCache} bound: 16 MiB, about 100,000 entries of hashed content (each
 * entry is a ~60-character key and a number: estimated at 2 bytes per key character plus 48).
 */
export const DEFAULT_TOKEN_CACHE_BYTES = 16 * 2 ** 20;
/** Texts up to this many characters are their own cache key; longer ones are keyed by SHA-256. */
const CACHE_KEY_INLINE_CHARS = 64;

/**
 * A {@link TokenCache} holding at most `maxBytes` (estimated: 2 bytes per key character plus 48
 * per entry), least recently used entries evicted first.
 * @throws RangeError when `maxBytes` is not a positive integer.
 */
export function createTokenCache(maxBytes = DEFAULT_TOKEN_CACHE_BYTES): TokenCache {
  if (!Number.isInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError(`token cache size: expected a positive integer of bytes, got ${maxBytes}`);
  }
  const cache = new LRUCache<string, number>({
    maxSize: maxBytes,
    sizeCalculation: (_value, key) => key.length * 2 + 48,
  });
  let hits = 0;
  let misses = 0;
  return {
    get(key) {
      const found = cache.get(key);
      if (found === undefined) misses += 1;
      else hits += 1;
      return found;
    },
    set(key, tokens) {
      cache.set(key, tokens);
    },
    stats: () => ({ hits, misses, entries: cache.size, bytes: cache.calculatedSize }),
  };
}

/** The part of a gpt-tokenizer encoding module memq uses. */
interface Encoder {
  countTokens(
    text: string,
    options: { allowedSpecial: Set<string>; disallowedSpecial: Set<string> },
  ): number;
}

const encoders = new Map<EncodingName, Promise<Encoder>>();

async function loadEncoder(encoding: EncodingName): Promise<Encoder> {
  switch (encoding) {
    case 'o200k_base':
      return import('gpt-tokenizer/encoding/o200k_base');
    case 'cl100k_base':
      return import('gpt-tokenizer/encoding/cl100k_base');
    case 'p50k_base':
      return import('gpt-tokenizer/encoding/p50k_base');
    case 'p50k_edit':
      return import('gpt-tokenizer/encoding/p50k_edit');
    case 'r50k_base':
      return import('gpt-tokenizer/encoding/r50k_base');
    case 'gpt2':
      return import('gpt-tokenizer/encoding/gpt2');
  }
}

/** Called once per encoding per process with its load cost, for logging. */
export type EncoderLoadListener = (info: {
  /** The encoding loaded. */
  encoding: EncodingName;
  /** Load time, ms (module import plus a first count). */
  loadMs: number;
  /** Resident-set growth during the load, bytes (approximate: other work may allocate too). */
  rssDeltaBytes: number;
}) => void;

/** Options of {@link createTokenCounter}. */
export interface TokenCounterOptions {
  /** Told once per encoding per process how long its load took (for the log). */
  readonly onLoad?: EncoderLoadListener;
  /** Count cache shared by counters; absent = no caching. */
  readonly cache?: TokenCache;
}

/** Start of each slice of `text` (see {@link SLICE_CHARS}); the last slice runs to the end. */
export function sliceStarts(text: string): number[] {
  const starts = [0];
  let start = 0;
  while (text.length - start > SLICE_CHARS) {
    let cut = -1;
    for (let i = start + SLICE_CHARS - 1; i > start + SLICE_CHARS / 2; i--) {
      const code = text.charCodeAt(i);
      if (
        (code === 32 && isLower(text.charCodeAt(i - 1)) && isLower(text.charCodeAt(i + 1))) ||
        (code === 10 && isAlnum(text.charCodeAt(i - 1)) && isAlnum(text.charCodeAt(i + 1)))
      ) {
        cut = i;
        break;
      }
    }
    if (cut < 0) {
      cut = start + SLICE_CHARS;
      // Never cut a UTF-16 surrogate pair in two.
      if (isLowSurrogate(text.charCodeAt(cut))) cut -= 1;
    }
    starts.push(cut);
    start = cut;
  }
  return starts;
}

const isLower = (code: number) => code >= 97 && code <= 122;
const isAlnum = (code: number) =>
  isLower(code) || (code >= 65 && code <= 90) || (code >= 48 && code <= 57);
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/**
 * A counter for `encoding`, counting with gpt-tokenizer (exact: equal to js-tiktoken, the card's
 * tokenizer and the tests' oracle, and 3-8x faster on the mail corpus; docs/decisions.md). The
 * encoder is loaded once per encoding per process, lazily, and shared.
 */
export async function createTokenCounter(
  encoding: EncodingName,
  options: TokenCounterOptions = {},
): Promise<TokenCounter> {
  let pending = encoders.get(encoding);
  if (!pending) {
    pending = (async () => {
      const started = performance.now();
      const rssBefore = process.memoryUsage.rss();
      const encoder = await loadEncoder(encoding);
      encoder.countTokens('warm up', PLAIN_TEXT);
      options.onLoad?.({
        encoding,
        loadMs: Math.round(performance.now() - started),
        rssDeltaBytes: process.memoryUsage.rss() - rssBefore,
      });
      return encoder;
    })();
    encoders.set(encoding, pending);
  }
  const encoder = await pending;
  const { cache } = options;
  const keyOf = (text: string) =>
    text.length <= CACHE_KEY_INLINE_CHARS
      ? `${encoding}:${text}`
      : `${encoding}#${hash('sha256', text, 'base64url')}`;

  const countSlices = (text: string, starts: readonly number[], from: number, to: number) => {
    let tokens = 0;
    for (let i = from; i < to; i++) {
      tokens += encoder.countTokens(text.slice(starts[i], starts[i + 1]), PLAIN_TEXT);
    }
    return tokens;
  };
  const countText = (text: string): number => {
    const key = cache && text.length > 0 ? keyOf(text) : undefined;
    const cached = key === undefined ? undefined : cache!.get(key);
    if (cached !== undefined) return cached;
    const starts = sliceStarts(text);
    const tokens = countSlices(text, starts, 0, starts.length);
    if (key !== undefined) cache!.set(key, tokens);
    return tokens;
  };
  const countTextAsync = async (text: string, signal?: AbortSignal): Promise<number> => {
    if (text.length <= SLICE_CHARS) return countText(text);
    const key = cache ? keyOf(text) : undefined;
    const cached = key === undefined ? undefined : cache!.get(key);
    if (cached !== undefined) return cached;
    const starts = sliceStarts(text);
    let tokens = 0;
    let since = performance.now();
    for (let i = 0; i < starts.length; i++) {
      tokens += countSlices(text, starts, i, i + 1);
      if (performance.now() - since >= YIELD_EVERY_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        signal?.throwIfAborted();
        since = performance.now();
      }
    }
    if (key !== undefined) cache!.set(key, tokens);
    return tokens;
  };
  // Roles and names are short: counted directly, never through the content cache.
  const countRaw = (text: string) => {
    const starts = sliceStarts(text);
    return countSlices(text, starts, 0, starts.length);
  };
  const framing = (message: Omit<CountableMessage, 'content'>) =>
    TOKENS_PER_MESSAGE +
    countRaw(message.role) +
    (message.name !== undefined ? countRaw(message.name) + TOKENS_PER_NAME : 0);
  return {
    encoding,
    countText,
    countMessage: (message) => framing(message) + countText(message.content),
    countMessageAsync: async (message, signal) =>
      framing(message) + (await countTextAsync(message.content, signal)),
    countTextAsync,
    framing,
    probe(text) {
      if (!cache || text.length === 0) return { tokens: undefined, remember: () => {} };
      const key = keyOf(text);
      return { tokens: cache.get(key), remember: (tokens) => cache.set(key, tokens) };
    },
  };
}

/**
 * gpt-tokenizer options making special-token text (`<|endoftext|>`) plain text instead of a
 * special token or an error: messages are data, never control tokens.
 */
const PLAIN_TEXT = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };

/**
 * The append-time estimate of a message's tokens, before the exact count: ceil(chars / 4) plus
 * the per-message framing. chars/4 is OpenAI's rule of thumb for English text
 * ("What are tokens and how to count them?", OpenAI help center).
 */
export function estimateTokens(message: CountableMessage): number {
  const chars = message.role.length + message.content.length + (message.name?.length ?? 0);
  return TOKENS_PER_MESSAGE + Math.ceil(chars / 4);
}
