/**
 * The summarizers of a worker process: one LLM summarizer (with its breaker) per resource that
 * configures `flushing.summarizer`, the rule-based summarizer for every other resource
 * (docs/architecture.md, "Flush").
 */
import type { Logger } from 'pino';
import type { MemoryRegistry } from '../config/load-memories.js';
import { ConfigError } from '../core/errors.js';
import type { MemoryResource } from '../core/memory-resource.js';
import { RULE_BASED_SUMMARIZER, type Summarizer } from '../flush/summary.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import { createLlmSummarizer } from './llm-summarizer.js';

/** Options of {@link createResourceSummarizers}. */
export interface ResourceSummarizersOptions {
  /** Declared resources. */
  readonly registry: MemoryRegistry;
  /**
   * Resource id -> bearer token of its summarizer (`ProviderApiKeys.summarizers`, read at
   * start-up by `resolveProviderApiKeys`). A summarizer that names `api_key_env` must have its
   * key here; one that names none sends no Authorization header.
   */
  readonly apiKeys: ReadonlyMap<string, string>;
  /** Fallback and breaker metrics. */
  readonly metrics: MemqMetrics;
  /** Breaker transitions and fallbacks (reasons only, never content or keys). */
  readonly log: Logger;
}

/** The summarizer of each declared resource. */
export interface ResourceSummarizers {
  /** `resource`'s LLM summarizer, or {@link RULE_BASED_SUMMARIZER} when it configures none. */
  summarizerFor(resource: MemoryResource): Summarizer;
  /** True when some declared resource has an LLM summarizer (its flushes make paid calls). */
  readonly usesLlm: boolean;
  /** Stops the breakers' timers. Idempotent. */
  close(): void;
}

/**
 * Builds one LLM summarizer per resource that configures `flushing.summarizer`.
 * @throws ConfigError, before any summarizer is built, when a summarizer names `api_key_env` and
 *   `apiKeys` holds no key for its resource (the keys were resolved for another registry).
 */
export function createResourceSummarizers(
  options: ResourceSummarizersOptions,
): ResourceSummarizers {
  const configured = options.registry.list().flatMap((resource) => {
    const config = resource.flushing.summarizer;
    if (!config) return [];
    const apiKey = options.apiKeys.get(resource.id);
    if (config.apiKeyEnv !== undefined && apiKey === undefined) {
      throw new ConfigError(
        `memory ${JSON.stringify(resource.id)}: no API key was resolved for its summarizer (resolveProviderApiKeys over this registry)`,
      );
    }
    return [{ id: resource.id, config, apiKey }];
  });
  const summarizers = new Map(
    configured.map(({ id, config, apiKey }) => [
      id,
      createLlmSummarizer({
        endpoint: config.endpoint,
        model: config.model,
        ...(apiKey !== undefined ? { apiKey } : {}),
        timeoutMs: config.timeoutMs,
        metrics: options.metrics,
        log: options.log,
      }),
    ]),
  );
  return {
    summarizerFor: (resource) => summarizers.get(resource.id) ?? RULE_BASED_SUMMARIZER,
    usesLlm: summarizers.size > 0,
    close() {
      for (const summarizer of summarizers.values()) summarizer.close();
    },
  };
}
