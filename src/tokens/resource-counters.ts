import type { Logger } from 'pino';
import type { MemoryRegistry } from '../config/load-memories.js';
import type { MemoryResource } from '../core/memory-resource.js';
import {
  createTokenCache,
  type CountableMessage,
  createTokenCounter,
  isRemoteTokenProvider,
  localEncodingFor,
  messageParts,
  type EncodingName,
  type TokenCounter,
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
import { createCountingThread } from './counting-thread.js';
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
   * Count batches of more than {@link INLINE_COUNT_CHARS} uncached characters in a worker
   * thread (default true), so counting uses another core and never holds the event loop.
   */
  readonly countInThread?: boolean;
}

/** Uncached characters up to which a batch is counted on the main thread (a thread hop costs more). */
export const INLINE_COUNT_CHARS = 4096;

/** The per-resource counters of a worker process. */
export interface TokenCounters {
  /**
   * The counter for `resource`: its provider's API with local fallback (approximate), or the
   * local tokenizer (exact for provider `openai`, approximate for any other provider:
   * `localApproximation`).
   */
  counterFor(resource: MemoryResource): Promise<MessageCounter>;
  /**
   * The local (tokenizer) counter of `resource`'s encoding, cached; summaries are counted with
   * it (exact only for provider `openai`: `localApproximation` names the approximation).
   */
  localCounterFor(resource: MemoryResource): Promise<TokenCounter>;
  /** True when some declared resource counts through a provider API. */
  readonly usesProviders: boolean;
  /** Resolves once every declared resource's local encoder is loaded, here and in the thread. */
  readonly ready: Promise<void>;
  /** Stops the breakers' timers and the counting thread. */
  close(): Promise<void>;
}

/**
 * Builds the counters a worker process needs: one local encoder per encoding (shared, with one
 * byte-bounded count cache), and one breaker-guarded API client per remote provider and model.
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
  const locals = new Map<EncodingName, Promise<TokenCounter>>();
  const local = (encoding: EncodingName) => {
    let counter = locals.get(encoding);
    if (!counter) {
      counter = createTokenCounter(encoding, {
        cache,
        onLoad: (info) =>
          log.info(
            {
              encoding: info.encoding,
              loadMs: info.loadMs,
              rssDeltaMB: Math.round(info.rssDeltaBytes / 2 ** 20),
            },
            'tokenizer loaded',
          ),
      });
      locals.set(encoding, counter);
    }
    return counter;
  };
  const thread =
    options.countInThread === false
      ? undefined
      : createCountingThread(log, {
          onBusy: (ms) => metrics.countingThreadBusy.inc(ms / 1000),
        });
  let threadFailed = false;
  /**
   * The local counter of `encoding` for `model`. `approximatedBy`: the resource's
   * `localApproximation`, set on every count when `encoding` only approximates the model's
   * tokenizer; a message with estimated parts is marked by `localCountApproximation` either way.
   */
  const localCounter = async (
    encoding: EncodingName,
    model: string,
    approximatedBy: string | undefined,
  ): Promise<MessageCounter> => {
    const counter = await local(encoding);
    // Counts misses and framing without touching the cache, so its hit/miss figures describe
    // message texts only (one lookup per text, one miss per uncached text).
    const raw = await createTokenCounter(encoding);
    return {
      async countMessages(messages, signal) {
        const parts = messages.map((m) => messageParts(m));
        // Every text of every message, flat: the cache and the thread count texts.
        const texts = parts.flatMap((p) => p.texts);
        const probes = texts.map((text) => counter.probe(text));
        const counts = probes.map((p) => p.tokens);
        const misses = texts.flatMap((_, i) => (counts[i] === undefined ? [i] : []));
        const missChars = misses.reduce((sum, i) => sum + texts[i]!.length, 0);
        let counted: number[] | undefined;
        if (thread && missChars > INLINE_COUNT_CHARS) {
          try {
            counted = await thread.count(
              encoding,
              misses.map((i) => texts[i]!),
            );
          } catch (error) {
            if (!threadFailed) {
              threadFailed = true;
              log.warn(
                { err: error instanceof Error ? error.message : String(error) },
                'counting thread unavailable; counting on the main thread',
              );
            }
          }
        }
        for (const [n, i] of misses.entries()) {
          const text = texts[i]!;
          const tokens = counted?.[n] ?? (await raw.countTextAsync(text, signal));
          counts[i] = tokens;
          probes[i]!.remember(tokens);
        }
        let next = 0;
        return messages.map((m, i) => {
          const p = parts[i]!;
          let tokens = raw.framing(m) + p.ruleTokens;
          for (let t = 0; t < p.texts.length; t++) tokens += counts[next++]!;
          const mark = localCountApproximation(p, encoding, model, approximatedBy);
          return {
            tokens,
            source: encoding,
            ...(mark !== undefined ? { approximatedBy: mark } : {}),
          };
        });
      },
    };
  };

  const remotes = new Map<string, Promise<RemoteCounter>>();

  return {
    usesProviders: apiKeys.size > 0,
    ready: Promise.all(
      [
        ...new Set(
          registry
            .list()
            .map((r) => localEncodingFor(r.tokenProvider.provider, r.tokenProvider.model)),
        ),
      ].map(async (encoding) => {
        // The counting thread is not warmed here: it starts with the first large batch (about
        // 1 s to load its encoder) and stops when idle, so an idle worker does not hold it.
        await local(encoding);
      }),
    ).then(() => undefined),
    localCounterFor(resource) {
      return local(localEncodingFor(resource.tokenProvider.provider, resource.tokenProvider.model));
    },
    counterFor(resource) {
      const { provider, model, endpoint } = resource.tokenProvider;
      const encoding = localEncodingFor(provider, model);
      if (!isRemoteTokenProvider(provider)) {
        return localCounter(encoding, model, localApproximation(provider, model));
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
        remote = local(encoding).then((fallback) =>
          createRemoteCounter({
            ...options.breaker,
            provider,
            model,
            apiKey,
            ...(endpoint !== undefined ? { baseUrl: endpoint } : {}),
            fallback,
            metrics,
            log,
          }),
        );
        remotes.set(key, remote);
      }
      return remote;
    },
    async close() {
      await Promise.allSettled([...remotes.values()].map(async (r) => (await r).close()));
      remotes.clear();
      await thread?.close();
    },
  };
}
