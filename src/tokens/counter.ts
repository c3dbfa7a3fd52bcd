import { hash } from 'node:crypto';
import { getEncodingNameForModel } from 'js-tiktoken/lite';
import { LRUCache } from 'lru-cache';
import { countPieces, createMergeTable, type MergeTable, type RankList } from './bpe-merge.js';
import { ConfigError } from '../core/errors.js';
import type { Content, Role, ToolCall } from '../core/message.js';
import { imageTokens } from './image-tokens.js';

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

/**
 * Tokens each tool call of an assistant message costs on top of its function name's and its
 * arguments' tokens. OpenAI publishes no rule for tool calls: LangChain's
 * `get_num_tokens_from_messages` (langchain-openai) counts the name and the arguments text only,
 * and calls it an approximation; langchain4j's `OpenAiTokenCountEstimator` measured about 7 more
 * tokens per call of a parallel call (plus a per-message constant) against the API. memq counts
 * name + arguments + 7 per call and marks the count estimated (`tool calls`).
 */
export const TOKENS_PER_TOOL_CALL = 7;

/**
 * What of a message's count no published rule gives, so the count is marked approximate
 * (`approximatedBy`, see `withEstimates` in remote-providers.ts):
 * - `tool calls`: an assistant message's `tool_calls` ({@link TOKENS_PER_TOOL_CALL});
 * - `tool_call_id`: a tool message's `tool_call_id`, counted as text (how the API renders it is
 *   not published; LangChain adds a flat 3 tokens instead);
 * - `images`: an image counted as `auto`, or of unknown size, or for a model whose image costs
 *   are not the vision guide's 85 / 170 figures (src/tokens/image-tokens.ts).
 */
export const ESTIMATED_PARTS = ['tool calls', 'tool_call_id', 'images'] as const;
/** One of {@link ESTIMATED_PARTS}. */
export type EstimatedPart = (typeof ESTIMATED_PARTS)[number];

/** The parts of a message that cost tokens. */
export interface CountableMessage {
  /** Who spoke; its text is counted. */
  readonly role: Role;
  /** The content: a string, a list of parts, or null (see `ContentSchema`). */
  readonly content: Content;
  /** An assistant message's tool calls. */
  readonly tool_calls?: readonly ToolCall[] | undefined;
  /** A tool message's answered call id; counted as text (estimated). */
  readonly tool_call_id?: string | undefined;
  /** Optional participant name; counted plus {@link TOKENS_PER_NAME}. */
  readonly name?: string | undefined;
}

/**
 * How a message's content costs tokens beyond its framing ({@link TokenCounter.framing}): texts
 * to tokenize, tokens by rule, and what is estimated. See {@link messageParts}.
 */
export interface MessageParts {
  /**
   * Texts whose tokens the message costs, each tokenized on its own and summed: the string
   * content, or each text part; each tool call's function name and arguments; the
   * `tool_call_id`. In that order.
   */
  readonly texts: readonly string[];
  /** Tokens given by rule, not by the tokenizer: images, and {@link TOKENS_PER_TOOL_CALL} per call. */
  readonly ruleTokens: number;
  /** Image parts in the content. */
  readonly images: number;
  /** What of the count is estimated, in the order of {@link ESTIMATED_PARTS}, no repeats. */
  readonly estimated: readonly EstimatedPart[];
}

/**
 * Splits a message into what its tokens are made of (the counting rules; docs/decisions.md,
 * "Tokens"):
 * - a string content is one text (OpenAI's cookbook "How to count tokens with tiktoken");
 * - a list of parts: each text part is tokenized on its own and the counts summed, as the API
 *   receives them as separate parts (LangChain's `get_num_tokens_from_messages` does the same);
 *   each image part costs `imageTokens` (OpenAI's vision guide, "Calculating costs");
 * - `null` content costs nothing;
 * - each tool call: its function name and its arguments text, plus {@link TOKENS_PER_TOOL_CALL}
 *   (estimated); the call's `id` is not counted (LangChain and langchain4j do not count it);
 * - a `tool_call_id`: its text (estimated).
 * Pure; reads at most `IMAGE_HEADER_BYTES` of each image.
 */
export function messageParts(message: CountableMessage): MessageParts {
  const texts: string[] = [];
  let ruleTokens = 0;
  let images = 0;
  const estimated = new Set<EstimatedPart>();
  const { content } = message;
  if (typeof content === 'string') texts.push(content);
  else if (content) {
    for (const part of content) {
      if (part.type === 'text') texts.push(part.text);
      else {
        images += 1;
        const image = imageTokens(part);
        ruleTokens += image.tokens;
        if (!image.exact) estimated.add('images');
      }
    }
  }
  for (const call of message.tool_calls ?? []) {
    texts.push(call.function.name, call.function.arguments);
    ruleTokens += TOKENS_PER_TOOL_CALL;
    estimated.add('tool calls');
  }
  if (message.tool_call_id !== undefined) {
    texts.push(message.tool_call_id);
    estimated.add('tool_call_id');
  }
  return {
    texts,
    ruleTokens,
    images,
    estimated: ESTIMATED_PARTS.filter((p) => estimated.has(p)),
  };
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
   * Tokens one stored message costs in a chat request: {@link TOKENS_PER_MESSAGE} + role (+ name
   * + {@link TOKENS_PER_NAME}) + the tokens of each of its {@link messageParts} texts (each
   * through the cache) + its rule tokens (images, tool calls).
   */
  countMessage(message: CountableMessage): number;
  /**
   * {@link TokenCounter.countMessage}, yielding to the event loop whenever
   * {@link YIELD_EVERY_MS} of counting has passed (between slices of {@link SLICE_CHARS}, and
   * every few thousand bytes within a longer slice), so a multi-megabyte message never starves
   * BullMQ's lock renewal. One pre-tokenizer regex match is never interrupted: a single piece of
   * a megabyte (one "word") holds the event loop for its match, 0.3-0.6 s per MiB measured here.
   * @throws the signal's reason when `signal` aborts between two yields.
   */
  countMessageAsync(message: CountableMessage, signal?: AbortSignal): Promise<number>;
  /**
   * {@link TokenCounter.countText}, yielding to the event loop every {@link YIELD_EVERY_MS} of
   * counting (see {@link TokenCounter.countMessageAsync}).
   * @throws the signal's reason when `signal` aborts between two yields.
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
 * Longest slice counted in one gpt-tokenizer call, characters. Longer text is cut into slices
 * only where a cut is provably exact ({@link sliceStarts}): the slices' counts add up to the
 * whole text's count, for every input and every shipped encoding. The reason to cut at all: the
 * textbook byte-pair merge (gpt-tokenizer's, js-tiktoken's) is quadratic in a pre-tokenizer
 * piece's length (20,000 `a`s took 250 ms in gpt-tokenizer and 25 s in js-tiktoken, measured
 * here), and a slice bounds every piece inside it. A stretch of more than SLICE_CHARS characters
 * with no exact cut (one long "word", a whitespace, digit or punctuation run, unspaced CJK, an
 * emoji sequence) is one slice, counted by `countPieces` (`bpe-merge.ts`), which merges in
 * O(n log n). 2,048 keeps the worst ordinary slice near 20 ms (unspaced CJK).
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
 * Default {@link createTokenCache} bound: 16 MiB, about 46,000 entries of hashed content (each
 * entry is a 54-character key and a number, estimated at {@link tokenCacheEntryBytes}).
 */
export const DEFAULT_TOKEN_CACHE_BYTES = 16 * 2 ** 20;
/**
 * Estimated heap bytes of one count-cache entry with key `key`: 2 per key character (a V8 string
 * holds 1 or 2) plus 256 for the key string's headers (a concatenation and its flattened copy),
 * the Map entry and lru-cache's per-entry arrays. An upper bound of what was measured here: heap
 * growth per entry after a full collection, in a full cache that evicts (100,000 texts into
 * 4 MiB), 218-257 bytes for a hashed key (54 characters; estimated 364) and 248 for a short
 * inline key (19 characters; estimated 294).
 */
export function tokenCacheEntryBytes(key: string): number {
  return key.length * 2 + 256;
}
/** Texts up to this many characters are their own cache key; longer ones are keyed by SHA-256. */
const CACHE_KEY_INLINE_CHARS = 64;

/**
 * A {@link TokenCache} holding at most `maxBytes` (estimated: {@link tokenCacheEntryBytes}
 * per entry), least recently used entries evicted first.
 * @throws RangeError when `maxBytes` is not a positive integer.
 */
export function createTokenCache(maxBytes = DEFAULT_TOKEN_CACHE_BYTES): TokenCache {
  if (!Number.isInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError(`token cache size: expected a positive integer of bytes, got ${maxBytes}`);
  }
  const cache = new LRUCache<string, number>({
    maxSize: maxBytes,
    sizeCalculation: (_value, key) => tokenCacheEntryBytes(key),
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

/**
 * The count-cache lookup of {@link TokenCounter.probe} for `encoding`, without a tokenizer: a text
 * of up to 64 characters is its own key, a longer one is keyed by its SHA-256 (hashed once per
 * probe, for the lookup and the later `remember`). Without `cache` (or for empty text) every
 * probe misses and `remember` does nothing.
 */
export function createCacheProbe(
  encoding: EncodingName,
  cache: TokenCache | undefined,
): (text: string) => CacheProbe {
  return (text) => {
    if (!cache || text.length === 0) return { tokens: undefined, remember: () => {} };
    const key = cacheKeyOf(encoding, text);
    return { tokens: cache.get(key), remember: (tokens) => cache.set(key, tokens) };
  };
}

/** The count-cache key of `text` under `encoding` (see {@link createCacheProbe}). */
function cacheKeyOf(encoding: EncodingName, text: string): string {
  return text.length <= CACHE_KEY_INLINE_CHARS
    ? `${encoding}:${text}`
    : `${encoding}#${hash('sha256', text, 'base64url')}`;
}

/** The part of a gpt-tokenizer encoding module memq uses. */
interface Encoder {
  countTokens(
    text: string,
    options: { allowedSpecial: Set<string>; disallowedSpecial: Set<string> },
  ): number;
  /** Sets the merge cache's bound, entries (0 = no cache, Infinity = unbounded). */
  setMergeCacheSize(size: number): void;
  /** The module's `GptEncoding` instance, whose internals {@link boundMergeCache} reaches. */
  readonly default: unknown;
}

/**
 * Bytes the merge cache of one loaded encoding may hold (estimated, see
 * {@link boundMergeCache}): 8 MiB. The 3,867 messages of the ham corpus leave ~30,000 pieces in
 * it, ~7.7 MiB of heap measured here, and counting them again takes half the time it takes
 * without the cache (gpt-tokenizer merges a piece that is not a token anew each time).
 */
export const MERGE_CACHE_BYTES = 8 * 2 ** 20;

/** The Map methods gpt-tokenizer 4.0.0's `BytePairEncodingCore` calls on its `mergeCache`. */
interface MergeCacheLike {
  has(key: string): boolean;
  get(key: string): number[] | undefined;
  delete(key: string): boolean;
  set(key: string, value: number[]): unknown;
  clear(): void;
  readonly size: number;
  keys(): Iterator<string>;
}

/**
 * Replaces gpt-tokenizer's merge cache (piece -> its tokens, bounded at 100,000 entries, which a
 * piece of up to {@link SLICE_CHARS} characters and its ~2,000 token ids could make ~2 GB) by an
 * lru-cache bounded at `maxBytes`, estimating an entry at 2 bytes per key character (a V8 string
 * holds 1 or 2 per character), 8 per token id (a small-integer array element) and 96 for the
 * Map entry, the array and lru-cache's bookkeeping. The library's own bound is lifted
 * (`setMergeCacheSize(Infinity)`) so it never evicts on its own; its LRU bump (delete, then set
 * again after a hit) becomes lru-cache's `get`. Reaches a private field of gpt-tokenizer 4.0.0
 * (`bytePairEncodingCoreProcessor.mergeCache`, pinned in package.json); should that field be
 * missing, the library keeps its own cache, bounded at `maxBytes` / 20 KiB entries instead (the
 * largest entry: a 2,048-character piece).
 */
function boundMergeCache(encoder: Encoder, maxBytes = MERGE_CACHE_BYTES): void {
  const core = (encoder.default as { bytePairEncodingCoreProcessor?: { mergeCache?: unknown } })
    .bytePairEncodingCoreProcessor;
  if (!core || !(core.mergeCache instanceof Map)) {
    encoder.setMergeCacheSize(Math.max(1, Math.floor(maxBytes / (20 * 2 ** 10))));
    return;
  }
  const lru = new LRUCache<string, number[]>({
    maxSize: maxBytes,
    sizeCalculation: (tokens, piece) => piece.length * 2 + tokens.length * 8 + 200,
  });
  const cache: MergeCacheLike = {
    has: (key) => lru.has(key),
    get: (key) => lru.get(key),
    // Called only to move a hit to the end: `get` did that already.
    delete: (key) => lru.has(key),
    set(key, value) {
      // Copies: a regex match of 13 or more characters is a slice of the text it was found in,
      // and as a key it would keep that whole text alive; the tokens array may have spare
      // capacity from being pushed to.
      if (!lru.has(key)) lru.set(JSON.parse(JSON.stringify(key)) as string, value.slice());
      return cache;
    },
    clear: () => lru.clear(),
    get size() {
      return lru.size;
    },
    keys: () => lru.keys(),
  };
  encoder.setMergeCacheSize(Infinity);
  core.mergeCache = cache;
}

/** An encoding as memq counts with it (see {@link createTokenCounter}). */
interface LoadedEncoding {
  /** gpt-tokenizer's module: ordinary slices. */
  readonly encoder: Encoder;
  /** The encoding's pre-tokenizer ({@link PRETOKENIZER_PATTERNS}), for `countPieces`. */
  readonly pattern: RegExp;
  /**
   * The encoding's ranks prepared for `countPieces`, built on first use (0.3-0.8 s and 15-30 MB
   * of RSS for o200k_base, measured here): text with no long stretch never pays for it.
   */
  readonly mergeTable: () => MergeTable;
}

const encoders = new Map<EncodingName, Promise<LoadedEncoding>>();

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

/**
 * The rank list gpt-tokenizer's encoding module was built from (the same module instance it
 * imports, so no second copy): p50k_edit shares p50k_base's ranks, gpt2 r50k_base's.
 */
async function loadRanks(encoding: EncodingName): Promise<RankList> {
  switch (encoding) {
    case 'o200k_base':
      return (await import('gpt-tokenizer/bpeRanks/o200k_base')).default;
    case 'cl100k_base':
      return (await import('gpt-tokenizer/bpeRanks/cl100k_base')).default;
    case 'p50k_base':
    case 'p50k_edit':
      return (await import('gpt-tokenizer/bpeRanks/p50k_base')).default;
    case 'r50k_base':
    case 'gpt2':
      return (await import('gpt-tokenizer/bpeRanks/r50k_base')).default;
  }
}

/** Contraction alternatives as js-tiktoken spells them (every letter case listed). */
const CONTRACTIONS = "'s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D";
/** GPT-2's pre-tokenizer, shared by r50k_base, p50k_base, p50k_edit and gpt2. */
const GPT2_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/**
 * Each encoding's pre-tokenizer regex, compiled with flags `u` and `g` as js-tiktoken compiles
 * it: the reference memq's counts must equal. Source: js-tiktoken 1.0.21 `ranks/<encoding>`
 * `pat_str` (from openai/tiktoken `tiktoken_ext/openai_public.py`; a unit test checks they are
 * still equal). gpt-tokenizer's own cl100k_base pattern differs in form (`\s+$|\s*[\r\n]|..`),
 * not in the pieces' counts (checked by the property test).
 */
export const PRETOKENIZER_PATTERNS: Readonly<Record<EncodingName, string>> = {
  o200k_base: String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(${CONTRACTIONS})?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(${CONTRACTIONS})?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  cl100k_base: String.raw`(${CONTRACTIONS})|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  p50k_base: GPT2_PATTERN,
  p50k_edit: GPT2_PATTERN,
  r50k_base: GPT2_PATTERN,
  gpt2: GPT2_PATTERN,
};

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

/**
 * Start of each slice of `text`: `[0]` for text of at most {@link SLICE_CHARS} characters, else
 * cut at the last exact cut ({@link isExactCut}) among the slice's characters SLICE_CHARS / 2 + 1
 * to SLICE_CHARS, or, when there is none, at the first exact cut after that (a slice longer than
 * SLICE_CHARS; with none at all, the rest of the text is one slice). The last slice runs to the
 * end. Linear time: the windows searched backwards never overlap (each cut lies beyond the
 * previous window, the next window starts SLICE_CHARS / 2 + 1 after it), and a forward search
 * resumes past the characters it read, so each position is tested at most once.
 */
export function sliceStarts(text: string): number[] {
  const starts = [0];
  let start = 0;
  while (text.length - start > SLICE_CHARS) {
    let cut = -1;
    for (let c = start + SLICE_CHARS; c > start + SLICE_CHARS / 2; c--) {
      if (isExactCut(text, c)) {
        cut = c;
        break;
      }
    }
    for (let c = start + SLICE_CHARS + 1; cut < 0 && c < text.length; c++) {
      if (isExactCut(text, c)) cut = c;
    }
    if (cut < 0) break;
    starts.push(cut);
    start = cut;
  }
  return starts;
}

/**
 * True when counting `text[0, cut)` and `text[cut, end)` separately gives exactly the count of
 * `text` with every shipped encoding: the rule of {@link sliceStarts}, derived from the
 * encodings' pre-tokenizers ({@link PRETOKENIZER_PATTERNS}) as follows.
 *
 * A pre-tokenizer splits text into pieces left to right: at a position p, the pattern's first
 * alternative that matches gives the piece starting at p, and the next piece starts where it
 * ends. The pieces tile the text (every code point is \p{L}, \p{N}, \s or
 * [^\s\p{L}\p{N}], each of which some alternative matches, and none matches the empty string)
 * and byte-pair merging runs on each piece alone, so a text's count is the sum of its pieces'.
 * Counting the two sides of a cut separately therefore gives the same sum when
 * (a) the cut is a piece boundary of the whole text,
 * (b) `text[0, cut)` splits into the whole text's pieces before the cut, and
 * (c) `text[cut, end)` splits into the whole text's pieces after it.
 *
 * (c) holds at every boundary: no pattern looks behind, so matching from the cut sees the same
 * characters either way. (b): from each boundary before the cut, the same alternatives are tried
 * on the same characters (an attempt reaching past the cut fails in the whole text, or its piece
 * would straddle the boundary), except where an alternative tests what follows: the lookahead of
 * `\s+(?!\S)` (and gpt-tokenizer's cl100k `\s+$`) succeeds at the end of `text[0, cut)` and
 * fails before a non-space at the cut. Both follow `\s+`, so they can only decide differently
 * when the character before the cut is whitespace: r50k splits "a\n\nb" into a, \n, \n, b,
 * but "a\n\n" into a, \n\n. A cut never follows whitespace.
 *
 * (a): the cut is a boundary when no alternative of any pattern can match a string holding both
 * x, the code point before the cut, and y, the one at it. Classes: L = \p{L}, N = \p{N},
 * M = \p{M}, A = the apostrophe U+0027, B = \r or \n, S = any other \s, O = the rest; punctuation
 * P = O, M or A (= [^\s\p{L}\p{N}]). What each pattern's alternatives can hold:
 * - o200k_base: `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+('s|..)?`
 *   and its twin: one optional P or S character, then letters and marks (M is in both classes,
 *   so P is also M), then optionally A and letters (`'s`, `'ll`, ...); `\p{N}{1,3}`: N only;
 *   ` ?[^\s\p{L}\p{N}]+[\r\n/]*`: an optional space, P, then B or '/'; `\s*[\r\n]+`,
 *   `\s+(?!\S)`, `\s+`: whitespace only.
 * - cl100k_base: `'s|'t|..`: A then letters; `[^\r\n\p{L}\p{N}]?\p{L}+`: one optional P or S, then
 *   L (a mark is P here); `\p{N}{1,3}`; ` ?[^\s\p{L}\p{N}]+[\r\n]*`; whitespace as above.
 * - p50k_base, p50k_edit, r50k_base, gpt2: `'s|'t|..`; ` ?\p{L}+`; ` ?\p{N}+`;
 *   ` ?[^\s\p{L}\p{N}]+`; `\s+(?!\S)`; `\s+`.
 * The pairs none of them can hold, which are the exact cuts (x, y):
 * - x in L or N, y in S or B: nothing follows a letter or a digit within a piece but letters,
 *   marks, a contraction or digits.
 * - x in L, y in N; x in N, y in L: no alternative holds both (a letter's prefix character is
 *   never N, a digit's is nothing or a space).
 * - x in N, y in P: digits are followed only by digits.
 * - x in L, y in O: letters are followed only by letters, marks (o200k) or A (contractions).
 * - x in P, y in S: punctuation is followed only by punctuation, letters (as their prefix), B
 *   and '/'.
 * - x in P, y in N: a digit is preceded within a piece by nothing or a space.
 * Everything else can be joined: after whitespace (see (b)), letters after P or S (the prefix),
 * marks and A after letters (o200k), B after punctuation, and runs of one class. A cut also never
 * splits a UTF-16 surrogate pair. `token-counter-property.test.ts` checks the rule against
 * js-tiktoken on generated texts.
 */
export function isExactCut(text: string, cut: number): boolean {
  if (cut <= 0 || cut >= text.length) return false;
  let before = text.charCodeAt(cut - 1);
  let at = text.charCodeAt(cut);
  if (isHighSurrogate(before) && isLowSurrogate(at)) return false;
  if (isLowSurrogate(before) && cut >= 2 && isHighSurrogate(text.charCodeAt(cut - 2))) {
    before = text.codePointAt(cut - 2)!;
  }
  if (isHighSurrogate(at)) at = text.codePointAt(cut)!;
  return (EXACT_BEFORE[classOf(before)]! & (1 << classOf(at))) !== 0;
}

/** Character classes of {@link isExactCut}: L, N, M, A, B, S, O. */
const LETTER = 0;
const NUMBER = 1;
const MARK = 2;
const APOSTROPHE = 3;
const LINE_BREAK = 4;
const SPACE = 5;
const OTHER = 6;
const PUNCTUATION = (1 << OTHER) | (1 << MARK) | (1 << APOSTROPHE);
/** For each class of the character before a cut, the classes after it that make it exact. */
const EXACT_BEFORE: readonly number[] = (() => {
  const after: number[] = [];
  after[LETTER] = (1 << SPACE) | (1 << LINE_BREAK) | (1 << NUMBER) | (1 << OTHER);
  after[NUMBER] = (1 << SPACE) | (1 << LINE_BREAK) | (1 << LETTER) | PUNCTUATION;
  after[MARK] = after[APOSTROPHE] = after[OTHER] = (1 << SPACE) | (1 << NUMBER);
  after[LINE_BREAK] = after[SPACE] = 0;
  return after;
})();

/** Classes of the Basic Multilingual Plane's code points, plus one, filled as they are met. */
const bmpClasses = new Uint8Array(0x10000);

/** The {@link isExactCut} class of a code point (a lone surrogate is O, as in the patterns). */
function classOf(codePoint: number): number {
  if (codePoint > 0xffff) return classify(codePoint);
  const known = bmpClasses[codePoint]!;
  if (known !== 0) return known - 1;
  const found = classify(codePoint);
  bmpClasses[codePoint] = found + 1;
  return found;
}

function classify(codePoint: number): number {
  if (codePoint === 0x27) return APOSTROPHE;
  if (codePoint === 0x0a || codePoint === 0x0d) return LINE_BREAK;
  const char = String.fromCodePoint(codePoint);
  if (/\p{L}/u.test(char)) return LETTER;
  if (/\p{N}/u.test(char)) return NUMBER;
  if (/\p{M}/u.test(char)) return MARK;
  if (/\s/u.test(char)) return SPACE;
  return OTHER;
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/**
 * A counter for `encoding`. Text is cut into slices at exact cuts ({@link sliceStarts}); an
 * ordinary slice is counted by gpt-tokenizer (equal to js-tiktoken, the card's tokenizer and the
 * tests' oracle, and 3-8x faster on the mail corpus; docs/decisions.md), a slice longer than
 * {@link SLICE_CHARS} (no exact cut inside) or holding U+FEFF ({@link BYTE_ORDER_MARK}) by
 * `countPieces`: js-tiktoken's pre-tokenizer ({@link PRETOKENIZER_PATTERNS}) and gpt-tokenizer's
 * ranks, merged on a heap. The encoder is loaded once per encoding per process, lazily, and
 * shared; the rank table of `countPieces` is built on its first use.
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
      const [encoder, ranks] = await Promise.all([loadEncoder(encoding), loadRanks(encoding)]);
      boundMergeCache(encoder);
      encoder.countTokens('warm up', PLAIN_TEXT);
      options.onLoad?.({
        encoding,
        loadMs: Math.round(performance.now() - started),
        rssDeltaBytes: process.memoryUsage.rss() - rssBefore,
      });
      let table: MergeTable | undefined;
      return {
        encoder,
        pattern: new RegExp(PRETOKENIZER_PATTERNS[encoding], 'gu'),
        mergeTable: () => (table ??= createMergeTable(ranks)),
      };
    })();
    encoders.set(encoding, pending);
  }
  const { encoder, pattern, mergeTable } = await pending;
  const { cache } = options;
  const keyOf = (text: string) => cacheKeyOf(encoding, text);

  /** True for a slice gpt-tokenizer counts: at most SLICE_CHARS, without U+FEFF. */
  const ordinary = (slice: string) =>
    slice.length <= SLICE_CHARS && !slice.includes(BYTE_ORDER_MARK);
  /**
   * Tokens of a slice that is not {@link ordinary}: longer than SLICE_CHARS (no exact cut
   * inside; may be one huge piece) or holding a byte-order mark. Yields as `countPieces` does.
   */
  const countLongSlice = (slice: string) => countPieces(slice, pattern, mergeTable());
  const countSlices = (text: string, starts: readonly number[]) => {
    let tokens = 0;
    for (let i = 0; i < starts.length; i++) {
      const slice = text.slice(starts[i], starts[i + 1]);
      if (ordinary(slice)) {
        tokens += encoder.countTokens(slice, PLAIN_TEXT);
        continue;
      }
      const steps = countLongSlice(slice);
      for (let step = steps.next(); ; step = steps.next()) {
        if (step.done) {
          tokens += step.value;
          break;
        }
      }
    }
    return tokens;
  };
  const countText = (text: string): number => {
    const key = cache && text.length > 0 ? keyOf(text) : undefined;
    const cached = key === undefined ? undefined : cache!.get(key);
    if (cached !== undefined) return cached;
    const tokens = countSlices(text, sliceStarts(text));
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
    /** True once {@link YIELD_EVERY_MS} of counting has passed since the last turn. */
    const due = () => performance.now() - since >= YIELD_EVERY_MS;
    /** Gives the event loop a turn. */
    const pause = async () => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
      since = performance.now();
    };
    for (let i = 0; i < starts.length; i++) {
      const slice = text.slice(starts[i], starts[i + 1]);
      if (ordinary(slice)) {
        tokens += encoder.countTokens(slice, PLAIN_TEXT);
        if (due()) await pause();
        continue;
      }
      const steps = countLongSlice(slice);
      for (let step = steps.next(); ; step = steps.next()) {
        if (step.done) {
          tokens += step.value;
          break;
        }
        if (due()) await pause();
      }
      if (due()) await pause();
    }
    if (key !== undefined) cache!.set(key, tokens);
    return tokens;
  };
  // Roles and names are short: counted directly, never through the content cache.
  const countRaw = (text: string) => countSlices(text, sliceStarts(text));
  const framing = (message: Omit<CountableMessage, 'content'>) =>
    TOKENS_PER_MESSAGE +
    countRaw(message.role) +
    (message.name !== undefined ? countRaw(message.name) + TOKENS_PER_NAME : 0);
  return {
    encoding,
    countText,
    countMessage(message) {
      const parts = messageParts(message);
      let tokens = framing(message) + parts.ruleTokens;
      for (const text of parts.texts) tokens += countText(text);
      return tokens;
    },
    async countMessageAsync(message, signal) {
      const parts = messageParts(message);
      let tokens = framing(message) + parts.ruleTokens;
      for (const text of parts.texts) tokens += await countTextAsync(text, signal);
      return tokens;
    },
    countTextAsync,
    framing,
    probe: createCacheProbe(encoding, cache),
  };
}

/**
 * U+FEFF, which gpt-tokenizer 4.0.0 miscounts: it looks a merge candidate's bytes up by decoding
 * them with a TextDecoder that drops a leading byte-order mark, so a candidate starting with
 * U+FEFF passes for the token without it ("\uFEFF " counted 3 tokens, js-tiktoken 2; found by
 * the property test). Slices holding one are counted by `countPieces`, which looks bytes up as
 * bytes.
 */
const BYTE_ORDER_MARK = '\ufeff';

/**
 * gpt-tokenizer options making special-token text (`<|endoftext|>`) plain text instead of a
 * special token or an error: messages are data, never control tokens.
 */
const PLAIN_TEXT = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };

/**
 * The append-time estimate of a message's tokens, before the exact count: {@link TOKENS_PER_MESSAGE}
 * + ceil(chars / 4), where chars are the role's, the name's and the {@link messageParts} texts'
 * (so a string message is estimated from role + content + name), plus the parts' rule tokens
 * (each image by the same rule as the count, not by its URL's length: a 1 MB base64 image is at
 * most 1,445 tokens, not 250,000; and {@link TOKENS_PER_TOOL_CALL} per tool call). chars/4 is
 * OpenAI's rule of thumb for English text ("What are tokens and how to count them?", OpenAI help
 * center). Linear in the texts' number, not their length, plus the bounded image header reads.
 */
export function estimateTokens(message: CountableMessage): number {
  const parts = messageParts(message);
  let chars = message.role.length + (message.name?.length ?? 0);
  for (const text of parts.texts) chars += text.length;
  return TOKENS_PER_MESSAGE + Math.ceil(chars / 4) + parts.ruleTokens;
}
