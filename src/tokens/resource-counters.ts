import type { Logger } from 'pino';
import type { MemoryRegistry } from '../config/load-memories.js';
import type { MemoryResource } from '../core/memory-resource.js';
import {
  createCacheProbe,
  createTokenCache,
  type CountableMessage,
  createTokenCounter,
  type EncoderLoadListener,
  isRemoteTokenProvider,
  localEncodingFor,
  messageParts,
  type EncodingName,
  type CacheProbe,
  type MessageParts,
  type TokenCache,
  type TokenCounter,
  TOKENS_PER_MESSAGE,
  TOKENS_PER_NAME,
} from './counter.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import {
  createRemoteCounter,
  localApproximation,
  localCountApproximation,
  type MessageCount,
  type ProviderBreakerOptions,
  type RemoteCounter,
} from './remote-providers.js';
import { createCountingThread, type CountingThread } from './counting-thread.js';
import { ConfigError } from '../core/errors.js';

/**
 * Counts a batch of messages for one resource: the local tokenizer, or a provider's API with the
 * local tokenizer as fallback (`src/tokens/remote-providers.ts`).
 */
export interface MessageCounter {
  /**
   * Tokens per message, in order, with where each count came from (an encoding name or a
   * provider) and, for an approximate count, how it was approximated. Rejects only when
   * `signal` aborts.
   */
  countMessages(
    messages: readonly CountableMessage[],
    signal?: AbortSignal,
  ): Promise<readonly MessageCount[]>;
}

/** Options of {@link createTokenCounters}. */
export interface TokenCountersOptions {
  /** Declared resources; every remote provider among them must have its key in {@link apiKeys}. */
  readonly registry: MemoryRegistry;
  /**
   * Resource id -> API key of its counting API, for every resource with a remote provider
   * (`ProviderApiKeys.tokenProviders`, read at start-up by `resolveProviderApiKeys` in
   * src/providers/api-keys.ts). Default none.
   */
  readonly apiKeys?: ReadonlyMap<string, string>;
  /** Bound of the shared count cache, bytes; default `DEFAULT_TOKEN_CACHE_BYTES`. */
  readonly cacheBytes?: number;
  /** Cache gauges, provider fallbacks, breaker state. */
  readonly metrics: MemqMetrics;
  /** Tokenizer loads and breaker transitions (never keys or content). */
  readonly log: Logger;
  /** Breaker settings for every provider (defaults in {@link ProviderBreakerOptions}). */
  readonly breaker?: ProviderBreakerOptions;
  /**
   * Count in a worker thread (default true): the thread is then the only place of the process
   * that loads a tokenizer, counting uses another core and never holds the event loop. False:
   * every count runs on the main thread, whose encoders {@link TokenCounters.ready} loads.
   */
  readonly countInThread?: boolean;
}

/** The per-resource counters of a worker process. */
export interface TokenCounters {
  /**
   * The counter for `resource`: its provider's API with local fallback (approximate), or the
   * local tokenizer (exact for provider `openai`, approximate for any other provider:
   * `localApproximation`).
   */
  counterFor(resource: MemoryResource): Promise<MessageCounter>;
  /**
   * The local (tokenizer) counter of `resource`'s encoding, one per encoding, through the count
   * cache; summaries are counted with it (exact only for provider `openai`:
   * `localApproximation` names the approximation). With the counting thread, its synchronous
   * methods block until the thread answers (`CountingThread.countSync`) and throw when it
   * cannot; its asynchronous ones fall back to the main thread.
   */
  localCounterFor(resource: MemoryResource): Promise<TokenCounter>;
  /** True when some declared resource counts through a provider API. */
  readonly usesProviders: boolean;
  /**
   * Resolves once the workers may take jobs: at once with the counting thread (it loads its
   * encoders on its first count, off the event loop); without it, once every declared
   * resource's encoder is loaded on the main thread.
   */
  readonly ready: Promise<void>;
  /** Stops the breakers' timers and the counting thread. */
  close(): Promise<void>;
}

/**
 * Most characters sent to the counting thread in one request (2^22, 4 Mi): a larger batch goes
 * in several, one after the other, so the copy of a batch (on both sides of the hand-off) and
 * the thread's share of it stay bounded whatever the messages' sizes. A single longer text
 * (messages are capped at 4 Mi characters) is a request of its own.
 */
export const THREAD_REQUEST_CHARS = 2 ** 22;

/** `texts` in consecutive runs of at most {@link THREAD_REQUEST_CHARS} characters (or one text). */
function threadRequests(texts: readonly string[]): string[][] {
  const requests: string[][] = [];
  let current: string[] = [];
  let chars = 0;
  for (const text of texts) {
    if (current.length > 0 && chars + text.length > THREAD_REQUEST_CHARS) {
      requests.push(current);
      current = [];
      chars = 0;
    }
    current.push(text);
    chars += text.length;
  }
  if (current.length > 0) requests.push(current);
  return requests;
}

/** How a batch of texts gets counted: the thread, or the main thread's encoder. */
interface TextCounting {
  /** Tokens of each text, in order (no cache). Rejects only when `signal` aborts. */
  count(texts: readonly string[], signal?: AbortSignal): Promise<number[]>;
  /** The same, synchronously. @throws Error when it cannot count (see `localCounterFor`). */
  countSync(texts: readonly string[]): number[];
}

/** One thing to count: texts whose tokens add up, plus a message's framing when given. */
interface CountItem {
  /** Role and name of the message whose framing is added; absent for plain text. */
  readonly framing?: Omit<CountableMessage, 'content'>;
  /** Texts counted through the cache (a message's `messageParts` texts). */
  readonly texts: readonly string[];
}

/** A {@link TokenCounter} that also counts a batch of messages in one request. */
interface CachedCounter extends TokenCounter {
  /** Tokens of each message, whose `messageParts` are `parts`, in order. */
  countParts(
    messages: readonly CountableMessage[],
    parts: readonly MessageParts[],
    signal?: AbortSignal,
  ): Promise<number[]>;
}

/**
 * A {@link TokenCounter} of `encoding` that looks every content text up in `cache` and has the
 * rest counted by `counting`, with the framing of {@link TokenCounter.countMessage}: role tokens
 * (remembered per role: `Role` has five values) and name tokens (counted each time, not cached,
 * so the cache's hit and miss figures describe message texts only). A batch is one request to
 * `counting` for all its uncached texts, roles not yet known and names.
 */
function cachedCounter(
  encoding: EncodingName,
  cache: TokenCache,
  counting: TextCounting,
): CachedCounter {
  const probe = createCacheProbe(encoding, cache);
  const roleTokens = new Map<string, number>();
  /** The texts `items` need counted, and how their counts make each item's tokens. */
  const plan = (items: readonly CountItem[]) => {
    const probes = items.map((item) => item.texts.map((text) => probe(text)));
    const request: string[] = [];
    const misses: CacheProbe[] = [];
    items.forEach((item, i) =>
      probes[i]!.forEach((p, t) => {
        if (p.tokens !== undefined) return;
        misses.push(p);
        request.push(item.texts[t]!);
      }),
    );
    const roles = [
      ...new Set(items.flatMap((item) => (item.framing ? [item.framing.role] : []))),
    ].filter((role) => !roleTokens.has(role));
    request.push(...roles);
    for (const item of items) if (item.framing?.name !== undefined) request.push(item.framing.name);
    const finish = (counted: readonly number[]): number[] => {
      let next = 0;
      const found = new Map<CacheProbe, number>();
      for (const p of misses) {
        const tokens = counted[next++]!;
        found.set(p, tokens);
        p.remember(tokens);
      }
      for (const role of roles) roleTokens.set(role, counted[next++]!);
      return items.map((item, i) => {
        let tokens = 0;
        for (const p of probes[i]!) tokens += p.tokens ?? found.get(p)!;
        const { framing } = item;
        if (framing) {
          tokens += TOKENS_PER_MESSAGE + roleTokens.get(framing.role)!;
          if (framing.name !== undefined) tokens += counted[next++]! + TOKENS_PER_NAME;
        }
        return tokens;
      });
    };
    return { request, finish };
  };
  const countAsync = async (items: readonly CountItem[], signal?: AbortSignal) => {
    const { request, finish } = plan(items);
    const counted = request.length > 0 ? await counting.count(request, signal) : [];
    signal?.throwIfAborted();
    return finish(counted);
  };
  const countSync = (items: readonly CountItem[]) => {
    const { request, finish } = plan(items);
    return finish(request.length > 0 ? counting.countSync(request) : []);
  };
  const messageItem = (message: CountableMessage, parts: MessageParts): CountItem => ({
    framing: message,
    texts: parts.texts,
  });
  return {
    encoding,
    countText: (text) => countSync([{ texts: [text] }])[0]!,
    countTextAsync: async (text, signal) => (await countAsync([{ texts: [text] }], signal))[0]!,
    countMessage(message) {
      const parts = messageParts(message);
      return countSync([messageItem(message, parts)])[0]! + parts.ruleTokens;
    },
    async countMessageAsync(message, signal) {
      const parts = messageParts(message);
      return (await countAsync([messageItem(message, parts)], signal))[0]! + parts.ruleTokens;
    },
    framing: (message) => countSync([{ framing: message, texts: [] }])[0]!,
    probe,
    async countParts(messages, parts, signal) {
      const counts = await countAsync(
        messages.map((m, i) => messageItem(m, parts[i]!)),
        signal,
      );
      return counts.map((n, i) => n + parts[i]!.ruleTokens);
    },
  };
}

/**
 * Builds the counters a worker process needs: one count cache (byte-bounded) and, per encoding,
 * one local counter; and one breaker-guarded API client per remote provider and model. Every
 * local count runs in the counting thread (`src/tokens/counting-thread.ts`), the only place that
 * loads a tokenizer, unless `countInThread` is false or the thread fails (the main thread then
 * loads the encoder and counts, logged once).
 * @throws ConfigError, before anything is started, when a resource with provider `anthropic` or
 *   `google` has no key in `apiKeys` (the keys were resolved for other resources).
 */
export function createTokenCounters(options: TokenCountersOptions): TokenCounters {
  const { metrics, log, registry } = options;
  const apiKeys = new Map<string, string>();
  for (const resource of registry.list()) {
    if (!isRemoteTokenProvider(resource.tokenProvider.provider)) continue;
    const key = options.apiKeys?.get(resource.id);
    if (key === undefined) {
      throw new ConfigError(
        `memory ${JSON.stringify(resource.id)}: no API key was resolved for its token provider ${resource.tokenProvider.provider} (resolveProviderApiKeys over this registry)`,
      );
    }
    apiKeys.set(resource.id, key);
  }
  const cache = createTokenCache(options.cacheBytes);
  metrics.setTokenCacheSource(() => cache.stats());
  const onLoad: EncoderLoadListener = (info) =>
    log.info(
      {
        encoding: info.encoding,
        loadMs: info.loadMs,
        rssDeltaMB: Math.round(info.rssDeltaBytes / 2 ** 20),
      },
      'tokenizer loaded',
    );
  /** Main-thread encoders (no cache: misses are remembered through the cache probes). */
  const mains = new Map<EncodingName, Promise<TokenCounter>>();
  /** Main-thread encoders loaded so far, for synchronous counts after a thread failure. */
  const mainsLoaded = new Map<EncodingName, TokenCounter>();
  const main = (encoding: EncodingName) => {
    let counter = mains.get(encoding);
    if (!counter) {
      counter = createTokenCounter(encoding, { onLoad }).then((c) => {
        mainsLoaded.set(encoding, c);
        return c;
      });
      mains.set(encoding, counter);
    }
    return counter;
  };
  const thread: CountingThread | undefined =
    options.countInThread === false
      ? undefined
      : createCountingThread(log, {
          onBusy: (ms) => metrics.countingThreadBusy.inc(ms / 1000),
          onLoad,
        });
  let threadFailed = false;
  /** Logs the first thread failure and starts loading the main thread's encoder. */
  const threadFailure = (encoding: EncodingName, error: unknown) => {
    if (!threadFailed) {
      threadFailed = true;
      log.warn(
        { err: error instanceof Error ? error.message : String(error) },
        'counting thread unavailable; counting on the main thread',
      );
    }
    void main(encoding).catch(() => {});
  };
  const countingOf = (encoding: EncodingName): TextCounting => {
    const onMain = async (texts: readonly string[], signal?: AbortSignal) => {
      const counter = await main(encoding);
      const counts: number[] = [];
      for (const text of texts) counts.push(await counter.countTextAsync(text, signal));
      return counts;
    };
    if (!thread) {
      return {
        count: onMain,
        countSync(texts) {
          const counter = mainsLoaded.get(encoding);
          if (!counter) throw new Error(`token counter: ${encoding} is not loaded (await ready)`);
          return texts.map((text) => counter.countText(text));
        },
      };
    }
    return {
      async count(texts, signal) {
        const counts: number[] = [];
        for (const request of threadRequests(texts)) {
          try {
            counts.push(...(await thread.count(encoding, request)));
          } catch (error) {
            threadFailure(encoding, error);
            counts.push(...(await onMain(request, signal)));
          }
          signal?.throwIfAborted();
        }
        return counts;
      },
      countSync(texts) {
        try {
          return thread.countSync(encoding, texts);
        } catch (error) {
          threadFailure(encoding, error);
          const counter = mainsLoaded.get(encoding);
          if (!counter) throw error;
          return texts.map((text) => counter.countText(text));
        }
      },
    };
  };
  const locals = new Map<EncodingName, CachedCounter>();
  const local = (encoding: EncodingName) => {
    let counter = locals.get(encoding);
    if (!counter) {
      counter = cachedCounter(encoding, cache, countingOf(encoding));
      locals.set(encoding, counter);
    }
    return counter;
  };
  /**
   * The local counter of `encoding` for `model`. `approximatedBy`: the resource's
   * `localApproximation`, set on every count when `encoding` only approximates the model's
   * tokenizer; a message with estimated parts is marked by `localCountApproximation` either way.
   */
  const localCounter = (
    encoding: EncodingName,
    model: string,
    approximatedBy: string | undefined,
  ): MessageCounter => {
    const counter = local(encoding);
    return {
      async countMessages(messages, signal) {
        const parts = messages.map((m) => messageParts(m));
        const counts = await counter.countParts(messages, parts, signal);
        return messages.map((_, i) => {
          const mark = localCountApproximation(parts[i]!, encoding, model, approximatedBy);
          return {
            tokens: counts[i]!,
            source: encoding,
            ...(mark !== undefined ? { approximatedBy: mark } : {}),
          };
        });
      },
    };
  };

  const remotes = new Map<string, RemoteCounter>();
  const encodings = [
    ...new Set(
      registry.list().map((r) => localEncodingFor(r.tokenProvider.provider, r.tokenProvider.model)),
    ),
  ];

  return {
    usesProviders: apiKeys.size > 0,
    ready: thread
      ? Promise.resolve()
      : Promise.all(encodings.map((encoding) => main(encoding))).then(() => undefined),
    localCounterFor(resource) {
      return Promise.resolve(
        local(localEncodingFor(resource.tokenProvider.provider, resource.tokenProvider.model)),
      );
    },
    counterFor(resource) {
      const { provider, model, endpoint } = resource.tokenProvider;
      const encoding = localEncodingFor(provider, model);
      if (!isRemoteTokenProvider(provider)) {
        return Promise.resolve(localCounter(encoding, model, localApproximation(provider, model)));
      }
      const apiKey = apiKeys.get(resource.id);
      if (apiKey === undefined) {
        // A resource outside the registry the counters were built for.
        return Promise.reject(
          new ConfigError(
            `memory ${JSON.stringify(resource.id)}: not declared when the token counters were built`,
          ),
        );
      }
      const key = `${provider}\u0000${model}\u0000${endpoint ?? ''}\u0000${apiKey}`;
      let remote = remotes.get(key);
      if (!remote) {
        remote = createRemoteCounter({
          ...options.breaker,
          provider,
          model,
          apiKey,
          ...(endpoint !== undefined ? { baseUrl: endpoint } : {}),
          fallback: local(encoding),
          metrics,
          log,
        });
        remotes.set(key, remote);
      }
      return Promise.resolve(remote);
    },
    async close() {
      for (const remote of remotes.values()) remote.close();
      remotes.clear();
      await thread?.close();
    },
  };
}
