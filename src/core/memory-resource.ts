import type { Detector, PrivacyAction, PrivacyScope, Pseudonymizer } from './privacy.js';
/**
 * The resolved, frozen shape of one memory resource (one YAML file in `memories/`).
 * Produced only by the loader in `load-memories.ts` from the strict zod schema in
 * `memory-resource-schema.ts`; everything downstream trusts it.
 *
 * Field names are camelCase versions of the YAML keys (Compozy's schema); durations are resolved
 * to numbers with their unit in the name.
 */

import type { Role } from './message.js';

/** Memory types (Compozy `type`). */
export const MEMORY_TYPES = ['token_based', 'message_count_based', 'buffer'] as const;
/** One of {@link MEMORY_TYPES}. */
export type MemoryType = (typeof MEMORY_TYPES)[number];

/** Flush strategies (docs/architecture.md, "Flush"). `fifo` is accepted as an alias of `simple_fifo`. */
export const FLUSH_STRATEGIES = [
  'simple_fifo',
  'hybrid_summary',
  'lru',
  'lfu',
  'token_aware_lru',
  'priority',
] as const;
/** One of {@link FLUSH_STRATEGIES}. */
export type FlushStrategy = (typeof FLUSH_STRATEGIES)[number];

/**
 * Token budget split: fractions of the effective token limit that sum to 1 +- 0.001, enforced by
 * every flush (`enforceAllocation` in src/flush/strategies.ts).
 */
export interface TokenAllocation {
  /** Cap on the raw non-system messages a flush keeps, less what system messages take beyond `system`. */
  readonly shortTerm: number;
  /** Cap on the rolling summary (with `flushing.summary_tokens`, the smaller wins). */
  readonly longTerm: number;
  /**
   * Reserved for system messages, which no flush removes: the raw messages' and the summary's
   * caps never use it, and system tokens beyond it come out of the short-term cap.
   */
  readonly system: number;
}

/** When and how a memory is flushed. */
export interface FlushingConfig {
  /** Strategy; default `simple_fifo`. */
  readonly type: FlushStrategy;
  /** Trigger fraction of the limit, in (0, 1]; default 0.8. */
  readonly summarizeThreshold: number;
  /** Max tokens of the rolling summary; required (> 0) for `hybrid_summary`. */
  readonly summaryTokens?: number;
  /** Fraction of the oldest messages folded per flush, in (0, 1]; default 0.3. */
  readonly summarizeOldestPercent: number;
  /**
   * Fraction of the limit a flush brings the memory down to, in (0, 1) and below
   * `summarizeThreshold`; default 0.5, or `summarizeThreshold / 2` when the threshold is <= 0.5.
   */
  readonly targetRatio: number;
  /** LLM summarizer for `hybrid_summary`; absent = the rule-based summarizer only. */
  readonly summarizer?: SummarizerConfig;
  /** Record reads of messages for lru, lfu and token_aware_lru (`flushing.track_access`). */
  readonly trackAccess?: boolean;
}

/** An OpenAI-compatible chat endpoint that writes summaries (`flushing.summarizer`). */
export interface SummarizerConfig {
  /** Base URL; memq calls `{endpoint}/v1/chat/completions`. */
  readonly endpoint: string;
  /** Model name sent in the request. */
  readonly model: string;
  /** Environment variable holding the API key (bearer token); absent = no Authorization header. */
  readonly apiKeyEnv?: string;
  /** Per-call timeout, ms. */
  readonly timeoutMs: number;
}

/** Where and how long instances live. */
export interface PersistenceConfig {
  /** Every memory is stored in Redis (`persistence.type: in_memory` is refused at load). */
  readonly type: 'redis';
  /**
   * Sliding TTL of every key of an instance, seconds, restarted by each append, write and flush;
   * 0 = never expires. Never extends an instance past `MemoryResource.expirationSeconds`.
   */
  readonly ttlSeconds: number;
}

/** Privacy policy (applied before anything reaches Redis; see the privacy issue). */
export interface PrivacyPolicy {
  /** Regular expressions (RE2 syntax) whose matches are redacted. */
  readonly redactPatterns: readonly string[];
  /** Built-in detectors (see `DETECTORS` in `privacy.ts`); default none. */
  readonly detectors?: readonly Detector[];
  /** What happens to a match; default `redact`. */
  readonly action?: PrivacyAction;
  /** Roles that are never stored. */
  readonly nonPersistableMessageTypes: readonly Role[];
  /** Replacement text; default `[REDACTED]`. */
  readonly defaultRedactionString: string;
  /** For action `hash`: the environment variable holding the key; default `MEMQ_PRIVACY_HASH_KEY`. */
  readonly hashKeyEnv?: string;
  /** For action `hash`: the keyed pseudonym, set by the registry from `hashKeyEnv` (never the key). */
  readonly pseudonym?: Pseudonymizer;
  /**
   * For action `hash`: the pseudonyms' scope, the resource's `privacy_scope` (set by the loader;
   * see `PRIVACY_SCOPES` in privacy.ts); default `global`.
   */
  readonly scope?: PrivacyScope;
}

/** Lock TTLs per operation, milliseconds. */
export interface LockingConfig {
  /** Default 10 000 ms (`10s`). */
  readonly clearTtlMs: number;
  /** Default 300 000 ms (`5m`). */
  readonly flushTtlMs: number;
}

/** How tokens are counted. */
export interface TokenProviderConfig {
  /** `openai` (tiktoken, local), `anthropic`, `google`, ...; default `openai`. */
  readonly provider: string;
  /** Model name that selects the encoding / context window; default `gpt-4o`. */
  readonly model: string;
  /** Name of the environment variable holding the provider API key (never the key itself). */
  readonly apiKeyEnv?: string;
  /** Override of the provider's counting endpoint URL. */
  readonly endpoint?: string;
}

/** One memory resource, resolved and frozen. */
export interface MemoryResource {
  /** Resource id, referenced by producers (`memory_ref`). */
  readonly id: string;
  /** Human description. */
  readonly description?: string;
  /** Free-form version string. */
  readonly version?: string;
  /** Memory type. */
  readonly type: MemoryType;
  /** Token limit; effective default 2000 when neither this nor `maxContextRatio` is set. */
  readonly maxTokens?: number;
  /** Message limit; effective default 100 for message-count memories. */
  readonly maxMessages?: number;
  /** Fraction (0, 1] of the model's context window used as the token limit. */
  readonly maxContextRatio?: number;
  /** Optional budget split. */
  readonly tokenAllocation?: TokenAllocation;
  /** Flushing (defaults applied). */
  readonly flushing: FlushingConfig;
  /** Persistence (defaults applied). */
  readonly persistence: PersistenceConfig;
  /** Privacy policy, if any. */
  readonly privacyPolicy?: PrivacyPolicy;
  /**
   * Scope of `hash` pseudonyms (`privacy_scope`): `global` (default) or `session`; the loader
   * copies it into `privacyPolicy.scope`, which is what the redactor reads.
   */
  readonly privacyScope: PrivacyScope;
  /**
   * Absolute lifetime of an instance, seconds, counted from its creation (`meta.created_at`):
   * every key of the instance expires at `created_at + expirationSeconds` at the latest, however
   * often the sliding TTL is restarted. Absent or 0 = none.
   */
  readonly expirationSeconds?: number;
  /** Lock TTLs (defaults applied). */
  readonly locking: LockingConfig;
  /** Token provider (defaults applied). */
  readonly tokenProvider: TokenProviderConfig;
  /** Go-template-style key template used when a caller gives no key. */
  readonly defaultKeyTemplate?: string;
  /** The file this resource came from (for error messages). */
  readonly sourceFile: string;
}
