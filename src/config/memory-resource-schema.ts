/**
 * The strict zod schema of a memory resource file (`memories/*.yaml`), the schema of Compozy's
 * memory engine (the Go engine memq succeeds) with snake_case keys as written in YAML.
 *
 * The schema validates every field, applies the defaults and resolves durations to milliseconds;
 * `load-memories.ts` maps its output to the camelCase, frozen `MemoryResource`. Every issue
 * message is the "what is allowed" half of a problem line; the loader appends ", got <value>"
 * (from the issue's `params.got` when a rule supplies it, else from the input at the issue path).
 */

import { z } from 'zod';
import {
  DETECTORS,
  PRIVACY_ACTIONS,
  PRIVACY_SCOPES,
  REDACT_PATTERN_ALLOWED,
  compileRedactPattern,
  findRedactable,
} from '../core/privacy.js';
import { CONTEXT_WINDOW_ALLOWED, contextWindowOf } from '../core/context-window.js';
import { ENCODING_MODEL_ALLOWED, encodingForModel } from '../tokens/counter.js';
import { KEY_TEMPLATE_MAX_CHARS, findKeyTemplateProblem } from '../core/key-template.js';
import { ROLES } from '../core/message.js';
import { DURATION_FORMAT, parseDurationMs } from './duration.js';
import { FLUSH_STRATEGIES, MEMORY_TYPES } from '../core/memory-resource.js';

/** Defaults applied when a key is absent (Compozy's, plus memq's `target_ratio`). */
export const MEMORY_DEFAULTS = Object.freeze({
  /** `flushing.type`: Compozy `DefaultFlushingStrategy`. */
  flushingType: 'simple_fifo',
  /** `flushing.summarize_threshold`: Compozy `getStrategyConfig` default (0.8 of the limit). */
  summarizeThreshold: 0.8,
  /** `flushing.summarize_oldest_percent`. */
  summarizeOldestPercent: 0.3,
  /** `flushing.target_ratio` (docs/architecture.md, "Flush"); half of `summarize_threshold` when that is <= 0.5. */
  targetRatio: 0.5,
  /** `persistence.type` (Compozy accepts a missing type when `ttl` is set). */
  persistenceType: 'redis',
  /** `privacy_policy.default_redaction_string`. */
  redactionString: '[REDACTED]',
  /** `privacy_policy.hash_key_env`. */
  hashKeyEnv: 'MEMQ_PRIVACY_HASH_KEY',
  /** `privacy_scope`. */
  privacyScope: 'global',
  /** `locking.clear_ttl`: 10 s. */
  clearTtlMs: 10_000,
  /** `locking.flush_ttl`: 5 min. */
  flushTtlMs: 300_000,
  /** `token_provider.provider`: local tiktoken counting. */
  tokenProvider: 'openai',
  /** `token_provider.model`. */
  tokenModel: 'gpt-4o',
} as const);

/** Allowed resource id: 1-100 of `[A-Za-z0-9_-]`, starting with a letter or digit. */
export const RESOURCE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;

/** Allowed `token_provider.api_key_env` value: an environment variable name. */
export const ENV_VAR_NAME_PATTERN = /^[A-Z_][A-Z0-9_]*$/;

/** Tolerance of the `token_allocation` sum around 1 (Compozy: 1.0 +- 0.001). */
export const TOKEN_ALLOCATION_TOLERANCE = 0.001;

/**
 * Fields memq refuses at load, by dotted path, with the text a user reads after
 * `<file>: <path>: `: each was part of Compozy's schema but would do nothing in memq.
 */
export const UNSUPPORTED_MEMORY_FIELDS: Readonly<Record<string, string>> = Object.freeze({
  'locking.append_ttl':
    'not supported by memq: appends commit atomically in one Lua script and take no lock; use locking.flush_ttl or locking.clear_ttl for the locks memq takes',
  'token_allocation.user_defined':
    'not supported by memq: memq has no caller-defined part of the window to give a share to; give that share to short_term, long_term or system (the three sum to 1)',
  'token_provider.settings':
    'not supported by memq: no token provider reads provider-specific settings; the supported token_provider fields are provider, model, api_key_env and endpoint',
  'persistence.circuit_breaker':
    'not supported by memq: Redis failures are handled by ioredis reconnection and job retries (circuit breakers guard the token providers and the summarizer); remove it',
});

/**
 * Values memq refuses at load, by the dotted path of their field and then the value, with the
 * text a user reads after `<file>: <path>: ` (the field itself is supported with other values).
 */
export const UNSUPPORTED_MEMORY_VALUES: Readonly<Record<string, Readonly<Record<string, string>>>> =
  Object.freeze({
    'persistence.type': Object.freeze({
      in_memory:
        'not supported by memq: in_memory (every memory is stored in Redis); use type: redis with a ttl',
    }),
    privacy_scope: Object.freeze({
      user: 'not supported by memq: user (memq has no user identity: a memory instance is known by project, resource and key only); use session for one pseudonym space per memory instance (key instances by user, e.g. default_key_template: "support:{{ .user_id }}", for one per user) or global',
    }),
  });

/**
 * A string field limited to `values`; a value of {@link UNSUPPORTED_MEMORY_VALUES} for `path` is
 * refused with its message (the issue's `params.refused` tells the loader not to append "got").
 */
function supportedValue<const T extends readonly [string, ...string[]]>(
  path: string,
  values: T,
  allowed: string,
) {
  const refused = UNSUPPORTED_MEMORY_VALUES[path] ?? {};
  return z
    .string({ error: allowed })
    .superRefine((value, ctx) => {
      const why = Object.hasOwn(refused, value) ? refused[value] : undefined;
      if (why !== undefined)
        ctx.addIssue({ code: 'custom', message: why, params: { refused: true } });
    })
    .pipe(z.enum(values, { error: allowed }));
}

const RATIO = 'expected a number in (0, 1]';
const OPEN_RATIO = 'expected a number in (0, 1)';
const SHARE = 'expected a number in [0, 1]';
const POSITIVE_INT = 'expected a positive integer';

/** A number in (0, 1]. */
const ratio = () => z.number({ error: RATIO }).gt(0, { error: RATIO }).lte(1, { error: RATIO });

/** A positive integer (tokens or messages). */
const positiveInt = () =>
  z.number({ error: POSITIVE_INT }).int({ error: POSITIVE_INT }).positive({ error: POSITIVE_INT });

interface DurationRule {
  /** Whether `0` / `"0"` is allowed (meaning "never" / "none"). */
  allowZero: boolean;
  /** Whether the value must be whole seconds (it becomes a Redis `EXPIRE` argument). */
  wholeSeconds: boolean;
}

/**
 * A duration string (see `duration.ts`) or the number `0`, resolved to milliseconds.
 * A bare non-zero number is rejected: its unit would be a guess.
 */
function durationMs(rule: DurationRule) {
  const allowed = rule.allowZero
    ? `expected 0 (none) or ${DURATION_FORMAT}${rule.wholeSeconds ? ' in whole seconds' : ''}`
    : `expected ${DURATION_FORMAT} (greater than 0)`;
  return z.union([z.string(), z.number()], { error: allowed }).transform((raw, ctx) => {
    const ms = typeof raw === 'number' ? (raw === 0 ? 0 : undefined) : parseDurationMs(raw);
    const ok =
      ms !== undefined && (rule.allowZero || ms > 0) && (!rule.wholeSeconds || ms % 1000 === 0);
    if (!ok) {
      const got =
        typeof raw === 'number' && raw !== 0
          ? `${raw} (a number needs a unit, e.g. ${raw}s)`
          : JSON.stringify(raw);
      ctx.addIssue({ code: 'custom', message: allowed, params: { got } });
      return z.NEVER;
    }
    return ms;
  });
}

/**
 * Checks a key template's syntax with the key template parser (`core/key-template.ts`): literal
 * key characters (`[A-Za-z0-9_:\-@.]`) and `{{ .path.to.var }}` placeholders.
 *
 * Templates longer than the parser's limit are left to the schema's `.max()` check (one problem,
 * not two).
 *
 * @returns `undefined` when valid, else the quoted template and the first offending part.
 */
export function findKeyTemplateError(template: string): string | undefined {
  if (template.length > KEY_TEMPLATE_MAX_CHARS) return undefined;
  const problem = findKeyTemplateProblem(template);
  return problem && `${JSON.stringify(template)} (${problem.message})`;
}

const TokenAllocationShape = {
  /**
   * Cap on the raw non-system messages a flush keeps, as a share of the token limit, in [0, 1]:
   * after the strategy's plan, the oldest of them go (folded for hybrid_summary, evicted
   * otherwise) until they fit `limit x short_term` minus what system messages take beyond
   * their `system` share. Default 0.
   */
  short_term: z
    .number({ error: SHARE })
    .min(0, { error: SHARE })
    .max(1, { error: SHARE })
    .default(0),
  /**
   * Cap on the rolling summary, as a share of the token limit, in [0, 1]: the summarizer's
   * budget is `min(flushing.summary_tokens, limit x long_term)`. Default 0.
   */
  long_term: z
    .number({ error: SHARE })
    .min(0, { error: SHARE })
    .max(1, { error: SHARE })
    .default(0),
  /**
   * Share of the token limit reserved for system messages, in [0, 1]. No flush removes a system
   * message; the short-term and long-term caps never use this share, and system messages'
   * tokens beyond it are taken from the short-term cap, so system messages, raw messages and
   * summary together stay within the limit. Default 0.
   */
  system: z.number({ error: SHARE }).min(0, { error: SHARE }).max(1, { error: SHARE }).default(0),
};

/**
 * `token_allocation`: how the effective token limit is split between raw messages, the summary
 * and system messages, enforced by every flush of a token-limited memory
 * (`enforceAllocation` in src/flush/strategies.ts). The three shares must sum to 1 +-
 * {@link TOKEN_ALLOCATION_TOLERANCE}.
 */
export const TokenAllocationSchema = z
  .strictObject(TokenAllocationShape, {
    error: 'expected a mapping with short_term, long_term and system',
  })
  .superRefine((allocation, ctx) => {
    const parts = [allocation.short_term, allocation.long_term, allocation.system];
    const sum = parts.reduce((a, b) => a + b, 0);
    if (Math.abs(sum - 1) > TOKEN_ALLOCATION_TOLERANCE) {
      ctx.addIssue({
        code: 'custom',
        message: 'expected short_term + long_term + system to sum to 1 (± 0.001)',
        params: { got: `${Number(sum.toFixed(6))} (${parts.join(' + ')})` },
      });
    }
  });

const FLUSH_TYPE_ALLOWED = `expected one of ${FLUSH_STRATEGIES.join(', ')} (fifo = simple_fifo)`;

const SummarizerShape = {
  /** Base URL of an OpenAI-compatible API; memq calls `{endpoint}/v1/chat/completions`. Required. */
  endpoint: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
  /** Model name sent in the request. Required. */
  model: z
    .string({ error: 'expected a model name' })
    .min(1, { error: 'expected a model name' })
    .max(200, { error: 'expected a model name' }),
  /** Environment variable holding the API key (`^[A-Z_][A-Z0-9_]*$`), sent as a bearer token. */
  api_key_env: z
    .string({ error: 'expected an environment variable name matching ^[A-Z_][A-Z0-9_]*$' })
    .regex(ENV_VAR_NAME_PATTERN, {
      error: 'expected an environment variable name matching ^[A-Z_][A-Z0-9_]*$',
    })
    .optional(),
  /** Per-call timeout, ms, positive integer. Default 30 000. */
  timeout_ms: positiveInt().default(30_000),
};

/**
 * `flushing.summarizer`: an OpenAI-compatible chat endpoint that writes the rolling summary,
 * behind a circuit breaker, falling back to the rule-based summarizer. Absent -> rule-based only.
 */
export const SummarizerSchema = z.strictObject(SummarizerShape, {
  error: 'expected a mapping with endpoint, model, api_key_env, timeout_ms',
});

const FlushingShape = {
  /**
   * Strategy: `simple_fifo` (alias `fifo`), `hybrid_summary`, `lru`, `lfu`, `token_aware_lru`,
   * `priority` (docs/architecture.md, "Flush"). Default `simple_fifo`.
   */
  type: z
    .enum([...FLUSH_STRATEGIES, 'fifo'], { error: FLUSH_TYPE_ALLOWED })
    .transform((type) => (type === 'fifo' ? 'simple_fifo' : type))
    .default(MEMORY_DEFAULTS.flushingType),
  /**
   * Flush trigger as a fraction of the limit, in (0, 1]. Default 0.8; required for
   * `hybrid_summary`.
   */
  summarize_threshold: ratio().optional(),
  /** Max tokens of the rolling summary, positive integer. Required for `hybrid_summary`. */
  summary_tokens: positiveInt().optional(),
  /** Fraction of the oldest messages folded per flush, in (0, 1]. Default 0.3. */
  summarize_oldest_percent: ratio().default(MEMORY_DEFAULTS.summarizeOldestPercent),
  /**
   * Fraction of the limit a flush brings the memory down to, in (0, 1), below
   * `summarize_threshold`. Default 0.5, or `summarize_threshold / 2` when the threshold is <= 0.5.
   */
  target_ratio: z
    .number({ error: OPEN_RATIO })
    .gt(0, { error: OPEN_RATIO })
    .lt(1, { error: OPEN_RATIO })
    .optional(),
  /** LLM summarizer for `hybrid_summary` (see {@link SummarizerSchema}); absent = rule-based. */
  summarizer: SummarizerSchema.optional(),
  /**
   * Record every read of a message (count and time) for `lru`, `lfu` and `token_aware_lru`.
   * Default false (they then evict oldest first).
   */
  track_access: z.boolean({ error: 'expected true or false' }).default(false),
};

/**
 * `flushing`: when and how a memory is flushed. Absent -> `simple_fifo` at 0.8, oldest 0.3,
 * target 0.5. Output has every default applied.
 */
export const FlushingSchema = z
  .strictObject(FlushingShape, {
    error: 'expected a mapping with type, summarize_threshold, summary_tokens, ...',
  })
  .superRefine((flushing, ctx) => {
    if (flushing.type === 'hybrid_summary') {
      for (const key of ['summarize_threshold', 'summary_tokens'] as const) {
        if (flushing[key] === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: `required for type hybrid_summary: ${key === 'summary_tokens' ? POSITIVE_INT : RATIO}`,
          });
        }
      }
    }
    const threshold = flushing.summarize_threshold ?? MEMORY_DEFAULTS.summarizeThreshold;
    if (flushing.target_ratio !== undefined && flushing.target_ratio >= threshold) {
      ctx.addIssue({
        code: 'custom',
        path: ['target_ratio'],
        message: `expected a number below summarize_threshold (${threshold})`,
      });
    }
  })
  .transform((flushing) => {
    const summarizeThreshold = flushing.summarize_threshold ?? MEMORY_DEFAULTS.summarizeThreshold;
    return {
      ...flushing,
      summarize_threshold: summarizeThreshold,
      target_ratio:
        flushing.target_ratio ??
        (summarizeThreshold > MEMORY_DEFAULTS.targetRatio
          ? MEMORY_DEFAULTS.targetRatio
          : summarizeThreshold / 2),
    };
  });

const PersistenceShape = {
  /**
   * `redis`, the only store (`in_memory` is refused: {@link UNSUPPORTED_MEMORY_VALUES}).
   * Default `redis`.
   */
  type: supportedValue('persistence.type', ['redis'], 'expected redis').default(
    MEMORY_DEFAULTS.persistenceType,
  ),
  /**
   * Sliding TTL of an instance's keys, restarted by each append, write and flush: `0` / `"0"`
   * (never expires) or a duration in whole seconds (`24h`, `7d`). Required. Never extends an
   * instance past its `expiration`. Output: milliseconds.
   */
  ttl: durationMs({ allowZero: true, wholeSeconds: true }).optional(),
};

/** `persistence`: where instances live and for how long. Required. */
export const PersistenceSchema = z
  .strictObject(PersistenceShape, { error: 'expected a mapping with type and ttl' })
  .superRefine((persistence, ctx) => {
    if (persistence.type === 'redis' && persistence.ttl === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['ttl'],
        message: `required for persistence type redis: expected 0 (never expires) or ${DURATION_FORMAT}`,
      });
    }
  });

const RedactPatternSchema = z
  .string({ error: 'expected a regular expression (a string)' })
  .min(1, { error: 'expected a non-empty regular expression' })
  .superRefine((pattern, ctx) => {
    try {
      // A pattern matching "" would insert the redaction string between every character.
      if (compileRedactPattern(pattern).test('')) {
        ctx.addIssue({
          code: 'custom',
          message: 'expected a regular expression that does not match the empty string',
        });
      }
    } catch (error) {
      // re2js's message is "error parsing regexp: <reason>".
      const reason =
        error instanceof Error ? error.message.replace(/^error parsing regexp: /, '') : '';
      ctx.addIssue({
        code: 'custom',
        message: REDACT_PATTERN_ALLOWED,
        params: { got: `${JSON.stringify(pattern)} (${reason})` },
      });
    }
  });

/** Pseudonyms the schema tries against a `hash` policy's rules: hex mixes, all digits, all letters. */
const PSEUDONYM_SAMPLES = ['pii_0f1e2d3c4b5a6978', 'pii_4111111111111111', 'pii_abcdefabcdefabcd'];

const ROLE_ALLOWED = `expected one of ${ROLES.join(', ')}`;

const PrivacyPolicyShape = {
  /**
   * Regular expressions in RE2 syntax (compiled with flags `gu`; linear-time matching, so no
   * lookarounds or backreferences) whose matches are redacted. Default `[]`.
   */
  redact_patterns: z
    .array(RedactPatternSchema, { error: 'expected a list of regular expressions' })
    .default([]),
  /** Roles ({@link ROLES}) that are never stored. Default `[]`. */
  non_persistable_message_types: z
    .array(z.enum(ROLES, { error: ROLE_ALLOWED }), { error: `a list of roles: ${ROLE_ALLOWED}` })
    .default([]),
  /**
   * Built-in detectors by name ({@link DETECTORS}: email, phone, credit_card with a Luhn check,
   * us_ssn, ipv4, ipv6, api_key), applied after `redact_patterns`. Default `[]`.
   */
  detectors: z
    .array(z.enum(DETECTORS, { error: `expected one of ${DETECTORS.join(', ')}` }), {
      error: `expected a list of detectors: ${DETECTORS.join(', ')}`,
    })
    .default([]),
  /**
   * What happens to a match ({@link PRIVACY_ACTIONS}): `redact` (the redaction string), `mask`
   * (all but the last 4 characters as `*`), `hash` (a stable keyed pseudonym `pii_<16 hex>`,
   * keyed by the variable `hash_key_env` names) or `drop` (the message is not stored).
   * Default `redact`.
   */
  action: z
    .enum(PRIVACY_ACTIONS, { error: `expected one of ${PRIVACY_ACTIONS.join(', ')}` })
    .default('redact'),
  /**
   * For `action: hash`: the environment variable holding the HMAC key (at least 16 characters),
   * which producers and workers must share so they pseudonymise alike. Never the key itself.
   * Default `MEMQ_PRIVACY_HASH_KEY`.
   */
  hash_key_env: z
    .string({ error: 'expected an environment variable name' })
    .regex(ENV_VAR_NAME_PATTERN, {
      error: 'expected an environment variable name such as MEMQ_PRIVACY_HASH_KEY',
    })
    .default(MEMORY_DEFAULTS.hashKeyEnv),
  /** Replacement text for redacted matches, at most 100 characters. Default `[REDACTED]`. */
  default_redaction_string: z
    .string({ error: 'expected a string of at most 100 characters' })
    .max(100, { error: 'expected a string of at most 100 characters' })
    .default(MEMORY_DEFAULTS.redactionString),
};

/**
 * `privacy_policy`: redaction and non-persistable roles, applied before anything is stored.
 * The redaction string must match none of the patterns, so applying the policy twice (producer
 * and processor) changes nothing the second time.
 */
export const PrivacyPolicySchema = z
  .strictObject(PrivacyPolicyShape, {
    error:
      'expected a mapping with redact_patterns, non_persistable_message_types, default_redaction_string',
  })
  .superRefine((policy, ctx) => {
    const detector = findRedactable(
      {
        redactPatterns: [],
        detectors: policy.detectors,
        nonPersistableMessageTypes: [],
        defaultRedactionString: '',
      },
      policy.default_redaction_string,
    );
    if (detector !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['default_redaction_string'],
        message:
          'expected a redaction string that no detector matches (or redaction would not be idempotent)',
        params: { got: JSON.stringify(policy.default_redaction_string) },
      });
    }
    if (policy.action === 'hash') {
      const rule = PSEUDONYM_SAMPLES.map((sample) =>
        findRedactable(
          {
            redactPatterns: policy.redact_patterns,
            detectors: policy.detectors,
            nonPersistableMessageTypes: [],
            defaultRedactionString: '',
          },
          `(${sample})`,
        ),
      ).find((found) => found !== undefined);
      if (rule !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['action'],
          message: `expected patterns that do not match a hash pseudonym such as ${PSEUDONYM_SAMPLES[0]} (rule ${rule} does, so hashing would not be idempotent)`,
          params: { got: 'hash' },
        });
      }
    }
    policy.redact_patterns.forEach((pattern, i) => {
      let regex: ReturnType<typeof compileRedactPattern>;
      try {
        regex = compileRedactPattern(pattern);
      } catch {
        return; // reported by the pattern's own check
      }
      if (regex.test('')) return; // reported by the pattern's own check
      if (regex.test(policy.default_redaction_string)) {
        ctx.addIssue({
          code: 'custom',
          path: ['default_redaction_string'],
          message: `expected a redaction string that redact_patterns[${i}] does not match (or redaction would not be idempotent)`,
          params: { got: JSON.stringify(policy.default_redaction_string) },
        });
      }
    });
  });

const LockingShape = {
  /** Lock TTL of a clear, duration > 0. Default `10s`. Output: milliseconds. */
  clear_ttl: durationMs({ allowZero: false, wholeSeconds: false }).default(
    MEMORY_DEFAULTS.clearTtlMs,
  ),
  /** Lock TTL of a flush, duration > 0. Default `5m`. Output: milliseconds. */
  flush_ttl: durationMs({ allowZero: false, wholeSeconds: false }).default(
    MEMORY_DEFAULTS.flushTtlMs,
  ),
};

/**
 * `locking`: TTLs of the instance locks memq takes (clear and delete, flush). Absent -> 10s / 5m.
 * `append_ttl` is refused ({@link UNSUPPORTED_MEMORY_FIELDS}).
 */
export const LockingSchema = z.strictObject(LockingShape, {
  error: 'expected a mapping with clear_ttl and flush_ttl',
});

const TokenProviderShape = {
  /** Provider name, lowercase (`openai`, `anthropic`, `google`, ...). Default `openai`. */
  provider: z
    .string({ error: 'expected a provider name like openai, anthropic or google' })
    .regex(/^[a-z][a-z0-9_-]{0,63}$/, {
      error: 'expected a provider name like openai, anthropic or google',
    })
    .default(MEMORY_DEFAULTS.tokenProvider),
  /** Model name (selects encoding and context window). Default `gpt-4o`; required with `max_context_ratio`. */
  model: z
    .string({ error: 'expected a model name like gpt-4o' })
    .min(1, { error: 'expected a model name like gpt-4o' })
    .max(200, { error: 'expected a model name like gpt-4o' })
    .optional(),
  /** Name of the environment variable holding the API key (`^[A-Z_][A-Z0-9_]*$`). Never the key. */
  api_key_env: z
    .string({ error: 'expected an environment variable name matching ^[A-Z_][A-Z0-9_]*$' })
    .regex(ENV_VAR_NAME_PATTERN, {
      error: 'expected an environment variable name matching ^[A-Z_][A-Z0-9_]*$',
    })
    .optional(),
  /** Override of the provider's counting endpoint, an http(s) URL. */
  endpoint: z
    .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
    .optional(),
};

/**
 * `token_provider`: how tokens are counted. Literal `api_key` values are rejected; `settings`
 * is refused ({@link UNSUPPORTED_MEMORY_FIELDS}).
 */
export const TokenProviderSchema = z.strictObject(TokenProviderShape, {
  error: 'expected a mapping with provider, model, api_key_env, endpoint',
});

const PRIVACY_SCOPE_ALLOWED = `expected one of ${PRIVACY_SCOPES.join(', ')}`;
const ID_ALLOWED = 'expected 1-100 characters of A-Z a-z 0-9 _ - starting with a letter or digit';
const TYPE_ALLOWED = `expected one of ${MEMORY_TYPES.join(', ')}`;
const KEY_TEMPLATE_ALLOWED =
  'expected key characters [A-Za-z0-9_:-@.] and placeholders like {{ .conversation_id }}';

const MemoryResourceShape = {
  /** Must be `memory`. Required. */
  resource: z.literal('memory', { error: 'expected "memory"' }),
  /** Resource id ({@link RESOURCE_ID_PATTERN}), unique across files; producers' `memory_ref`. Required. */
  id: z.string({ error: ID_ALLOWED }).regex(RESOURCE_ID_PATTERN, { error: ID_ALLOWED }),
  /** Human description. */
  description: z.string({ error: 'expected a string' }).optional(),
  /** Free-form version string (quote numbers: `"1.0"`). */
  version: z.string({ error: 'expected a string (quote versions like "1.0")' }).optional(),
  /** `token_based`, `message_count_based` or `buffer`. Required. */
  type: z.enum(MEMORY_TYPES, { error: TYPE_ALLOWED }),
  /** Token limit, positive integer. `token_based` needs this or `max_context_ratio`; wins over the ratio. */
  max_tokens: positiveInt().optional(),
  /** Message limit, positive integer. Required for `message_count_based`. */
  max_messages: positiveInt().optional(),
  /** Fraction (0, 1] of the model's context window used as the token limit; needs `token_provider.model`. */
  max_context_ratio: ratio().optional(),
  /** Token budget split; see {@link TokenAllocationSchema}. */
  token_allocation: TokenAllocationSchema.optional(),
  /** Flushing; see {@link FlushingSchema}. Default simple_fifo at 0.8. */
  flushing: FlushingSchema.prefault({}),
  /** Persistence; see {@link PersistenceSchema}. Required. */
  persistence: PersistenceSchema,
  /** Privacy policy; see {@link PrivacyPolicySchema}. */
  privacy_policy: PrivacyPolicySchema.optional(),
  /**
   * Scope of `hash` pseudonyms ({@link PRIVACY_SCOPES}): `global`, the same text gives the same
   * pseudonym in every instance sharing the hash key; `session`, one pseudonym space per memory
   * instance (project, resource, key), so instances cannot be linked through a pseudonym. Only
   * with `privacy_policy.action: hash`; `user` is refused ({@link UNSUPPORTED_MEMORY_VALUES}).
   * Default `global`.
   */
  privacy_scope: supportedValue('privacy_scope', PRIVACY_SCOPES, PRIVACY_SCOPE_ALLOWED).optional(),
  /**
   * Absolute lifetime of an instance, counted from its creation (`meta.created_at`): `0` / `"0"`
   * (none) or a duration in whole seconds. Every key of the instance expires at creation +
   * expiration at the latest, however often appends, writes and flushes restart the sliding
   * `persistence.ttl`; an append or write after that starts a new instance. Output: milliseconds.
   */
  expiration: durationMs({ allowZero: true, wholeSeconds: true }).optional(),
  /** Lock TTLs; see {@link LockingSchema}. Default 10s / 5m. */
  locking: LockingSchema.prefault({}),
  /** Token counting; see {@link TokenProviderSchema}. Default openai / gpt-4o. */
  token_provider: TokenProviderSchema.optional(),
  /** Key template used when a caller gives no key, e.g. `support:{{ .conversation_id }}` (1-256 chars). */
  default_key_template: z
    .string({ error: KEY_TEMPLATE_ALLOWED })
    .min(1, { error: KEY_TEMPLATE_ALLOWED })
    .max(256, { error: `${KEY_TEMPLATE_ALLOWED}, at most 256 characters` })
    .superRefine((template, ctx) => {
      const got = findKeyTemplateError(template);
      if (got !== undefined)
        ctx.addIssue({ code: 'custom', message: KEY_TEMPLATE_ALLOWED, params: { got } });
    })
    .optional(),
};

/**
 * One memory resource file. Strict: unknown keys are issues (`unrecognized_keys`; see
 * {@link explainUnknownKey} for their wording). Cross-field rules: `token_based` needs
 * `max_tokens` or `max_context_ratio`; `message_count_based` needs `max_messages`;
 * `max_context_ratio` needs `token_provider.model`; `flushing.summary_tokens` must be below
 * `max_tokens`. Output: snake_case, defaults applied, durations in milliseconds.
 */
export const MemoryResourceFileSchema = z
  .strictObject(MemoryResourceShape, { error: 'expected a mapping of memory resource keys' })
  .superRefine((file, ctx) => {
    if (
      file.type === 'token_based' &&
      file.max_tokens === undefined &&
      file.max_context_ratio === undefined
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['max_tokens'],
        message: `required for type token_based (or max_context_ratio): ${POSITIVE_INT}`,
      });
    }
    if (file.type === 'message_count_based' && file.max_messages === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['max_messages'],
        message: `required for type message_count_based: ${POSITIVE_INT}`,
      });
    }
    if (file.max_context_ratio !== undefined && file.token_provider?.model === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['token_provider', 'model'],
        message:
          'required with max_context_ratio (the ratio applies to the model context window): expected a model name like gpt-4o',
      });
    }
    const model = file.token_provider?.model;
    const fails = (check: () => unknown) => {
      try {
        check();
        return false;
      } catch {
        return true;
      }
    };
    if (
      model !== undefined &&
      file.max_context_ratio !== undefined &&
      fails(() => contextWindowOf(model))
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['token_provider', 'model'],
        message: CONTEXT_WINDOW_ALLOWED,
      });
    }
    const provider = file.token_provider?.provider ?? MEMORY_DEFAULTS.tokenProvider;
    if (model !== undefined && provider === 'openai' && fails(() => encodingForModel(model))) {
      ctx.addIssue({
        code: 'custom',
        path: ['token_provider', 'model'],
        message: ENCODING_MODEL_ALLOWED,
      });
    }
    if (
      file.privacy_scope !== undefined &&
      // a refused value has its own problem already
      !Object.hasOwn(UNSUPPORTED_MEMORY_VALUES.privacy_scope ?? {}, file.privacy_scope) &&
      file.privacy_policy?.action !== 'hash'
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['privacy_scope'],
        message:
          'expected only with privacy_policy.action: hash (privacy_scope scopes hash pseudonyms; redact, mask and drop make none)',
      });
    }
    const summaryTokens = file.flushing.summary_tokens;
    if (
      summaryTokens !== undefined &&
      file.max_tokens !== undefined &&
      summaryTokens >= file.max_tokens
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['flushing', 'summary_tokens'],
        message: `expected a positive integer below max_tokens (${file.max_tokens})`,
      });
    }
  })
  .transform((file) => ({
    ...file,
    privacy_scope: file.privacy_scope ?? MEMORY_DEFAULTS.privacyScope,
    token_provider: {
      provider: file.token_provider?.provider ?? MEMORY_DEFAULTS.tokenProvider,
      model: file.token_provider?.model ?? MEMORY_DEFAULTS.tokenModel,
      api_key_env: file.token_provider?.api_key_env,
      endpoint: file.token_provider?.endpoint,
    },
  }));

/** What a YAML file may say (before defaults). */
export type MemoryResourceFileInput = z.input<typeof MemoryResourceFileSchema>;
/** Parsed file: snake_case, defaults applied, durations in milliseconds. Mapped to `MemoryResource`. */
export type MemoryResourceFile = z.output<typeof MemoryResourceFileSchema>;

/**
 * Supported keys of every mapping in a resource file, by dotted path (`''` = top level). Keys
 * memq refuses are in {@link UNSUPPORTED_MEMORY_FIELDS} instead.
 */
export const MEMORY_RESOURCE_KEYS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  '': Object.keys(MemoryResourceShape),
  token_allocation: Object.keys(TokenAllocationShape),
  flushing: Object.keys(FlushingShape),
  'flushing.summarizer': Object.keys(SummarizerShape),
  persistence: Object.keys(PersistenceShape),
  privacy_policy: Object.keys(PrivacyPolicyShape),
  locking: Object.keys(LockingShape),
  token_provider: Object.keys(TokenProviderShape),
});

/**
 * Keys Compozy's docs and examples used but its parser ignored, by the
 * dotted path of the mapping they appear in, with the key that does the job here.
 */
export const DOC_ONLY_KEYS: Readonly<Record<string, Readonly<Record<string, string>>>> =
  Object.freeze({
    '': {
      key: 'default_key_template',
      flushing_strategy: 'flushing',
      clear_ttl: 'locking.clear_ttl',
      flush_ttl: 'locking.flush_ttl',
    },
    flushing: { threshold: 'summarize_threshold' },
    flushing_strategy: { threshold: 'summarize_threshold' },
  });

/** One problem about an unknown key: where, and the text after the path. */
export interface UnknownKeyProblem {
  /** Path of the unknown key itself, e.g. `['flushing', 'threshold']`. */
  readonly path: readonly (string | number)[];
  /** E.g. `unknown key, did you mean summarize_threshold?`. */
  readonly message: string;
}

/**
 * Explains an unknown key found in the mapping at `objectPath`: a key memq refuses gets its
 * {@link UNSUPPORTED_MEMORY_FIELDS} message; Compozy's doc-only keys and near-misses (Levenshtein distance <= max(1, len/3)) get "did you mean", a literal
 * `token_provider.api_key` is refused without echoing it, anything else lists the allowed keys.
 * A top-level `flushing_strategy` mapping is also searched for `threshold`.
 *
 * @param objectPath Path of the mapping holding the key (`[]` for the top level).
 * @param key The unknown key.
 * @param value The key's value (inspected only for `api_key` and `flushing_strategy`).
 */
export function explainUnknownKey(
  objectPath: readonly (string | number)[],
  key: string,
  value: unknown,
): UnknownKeyProblem[] {
  const at = objectPath.join('.');
  const path = [...objectPath, key];
  if (at === 'token_provider' && key === 'api_key') {
    const reference = typeof value === 'string' ? /^\$\{([A-Z_][A-Z0-9_]*)\}$/.exec(value) : null;
    const got = reference
      ? `a reference to \${${reference[1]}} (did you mean api_key_env: ${reference[1]}?)`
      : 'a literal key (not shown)';
    return [
      {
        path,
        message: `literal API keys are not allowed, expected api_key_env naming the environment variable that holds the key, got ${got}`,
      },
    ];
  }
  const dotted = at === '' ? key : `${at}.${key}`;
  if (Object.hasOwn(UNSUPPORTED_MEMORY_FIELDS, dotted)) {
    return [{ path, message: UNSUPPORTED_MEMORY_FIELDS[dotted]! }];
  }
  const known = MEMORY_RESOURCE_KEYS[at] ?? [];
  const suggestion = DOC_ONLY_KEYS[at]?.[key] ?? closestKey(key, known);
  const problems: UnknownKeyProblem[] = [
    {
      path,
      message:
        suggestion !== undefined
          ? `unknown key, did you mean ${suggestion}?`
          : `unknown key, expected one of ${known.join(', ')}`,
    },
  ];
  if (at === '' && key === 'flushing_strategy' && isPlainObject(value)) {
    for (const inner of Object.keys(value)) {
      const hint = DOC_ONLY_KEYS.flushing_strategy?.[inner];
      if (hint !== undefined) {
        problems.push({ path: [key, inner], message: `unknown key, did you mean ${hint}?` });
      }
    }
  }
  return problems;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function closestKey(key: string, known: readonly string[]): string | undefined {
  const limit = Math.max(1, Math.floor(key.length / 3));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of known) {
    const distance = levenshtein(key, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
