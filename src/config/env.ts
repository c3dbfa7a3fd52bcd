/**
 * Environment configuration. {@link ENV_VARS} is the one table of the variables memq reads: each
 * entry names a variable, the {@link EnvConfig} property it fills, its zod schema, its default, what
 * is allowed and what it means. {@link EnvConfig}, {@link loadEnvConfig}, the table in
 * docs/configuration.md ("Environment variables") and `.env.example` are derived from it (the last
 * two by `src/cli/env-docs-command.ts`). {@link loadEnvConfig} is pure: only `src/main.ts` passes
 * `process.env`; tests pass plain objects. An empty string counts as unset (what `VAR=` in a
 * compose file or `.env` produces).
 */

import { z } from 'zod';
import { ConfigError } from '../core/errors.js';

/** pino's levels, lowest-volume last. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Default `MEMQ_TOKEN_COUNT_CONCURRENCY`: token-count jobs at once per worker process. Four, not
 * two, so the counting thread always has the next memory's messages queued while the main thread
 * commits one job and reads another: with two, the thread sat idle 2-55 ms per ~650 ms of
 * counting waiting for the next read (`npm run bench:tokens` with a probe; docs/decisions.md,
 * "Tokens").
 */
export const DEFAULT_TOKEN_COUNT_CONCURRENCY = 4;

/** What producers do when a queue's backlog is above the high-water mark. */
export const BACKPRESSURE_POLICIES = ['reject', 'wait'] as const;
/** One of {@link BACKPRESSURE_POLICIES}. */
export type BackpressurePolicy = (typeof BACKPRESSURE_POLICIES)[number];

/**
 * Most messages one append job may carry, all its entries together (`MEMQ_APPEND_BATCH_MAX`'s
 * ceiling, `MAX_MESSAGES_PER_APPEND_JOB` of the job contract): ten full append calls, the
 * `memory-cleanup` write job's own limit.
 */
export const MAX_APPEND_BATCH_MESSAGES = 1000;

/**
 * Default `MEMQ_APPEND_BATCH_MAX`, messages: enough for the appends 64 concurrent callers make
 * during one enqueue round trip several times over, small enough that one job's commit
 * (one `append.lua` call per entry) stays in the low milliseconds.
 */
export const DEFAULT_APPEND_BATCH_MAX_MESSAGES = 256;

/**
 * Default `MEMQ_APPEND_BATCH_MAX_BYTES`: 1 MiB, the order of the largest single append the HTTP
 * API accepts, so batching never makes a job much larger than one append can be.
 */
export const DEFAULT_APPEND_BATCH_MAX_BYTES = 1024 * 1024;

/**
 * Default `MEMQ_BACKPRESSURE_HIGH_WATER`: 10 000 messages of append and write jobs not yet started,
 * every project. At the single-message append rates measured on the reference machine (630-1,813
 * messages/s, docs/benchmarks.md, "Side by side: npm run bench", row (b)) that is 6-16 s of work
 * waiting, which keeps
 * enqueue -> committed latency bounded while a burst is absorbed.
 */
export const DEFAULT_HIGH_WATER_MESSAGES = 10_000;

/**
 * Default `MEMQ_BACKPRESSURE_LOW_WATER`: 5 000 messages, half of
 * {@link DEFAULT_HIGH_WATER_MESSAGES}: a closed gate reopens after about 4-8 s of draining at the
 * rates above, so admissions do not flap at the mark.
 */
export const DEFAULT_LOW_WATER_MESSAGES = 5_000;

/**
 * Default `MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER`: 2 500 messages, a quarter of
 * {@link DEFAULT_HIGH_WATER_MESSAGES}, so one project alone cannot close the global gate for every
 * other project: four projects at their own mark are needed for that. It is 25 full appends (100
 * messages each) or two full writes (1 000 each).
 */
export const DEFAULT_PROJECT_HIGH_WATER_MESSAGES = 2_500;

/**
 * Default `MEMQ_BACKPRESSURE_MAX_BYTES`: 1 GiB of append and write job data not yet started. The
 * message mark alone would let 10 000 messages of 1 MiB (about 10 GiB) in before it closed; a
 * normal backlog (10 000 messages of a few KiB) is tens of MiB, far below this.
 */
export const DEFAULT_BACKLOG_MAX_BYTES = 2 ** 30;

/**
 * Default `MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES`: 256 MiB, a quarter of
 * {@link DEFAULT_BACKLOG_MAX_BYTES} (the same share as {@link DEFAULT_PROJECT_HIGH_WATER_MESSAGES}).
 */
export const DEFAULT_PROJECT_BACKLOG_MAX_BYTES = 2 ** 28;

/**
 * Window of the rate limits' burst allowance, seconds: `MEMQ_RATE_LIMIT_*_BURST` more requests or
 * messages may pass per this many seconds once a second's own allowance is used up.
 */
export const RATE_LIMIT_BURST_WINDOW_SECONDS = 10;

/**
 * Default `MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND` (100) and `MEMQ_RATE_LIMIT_REQUESTS_BURST` (1 000,
 * per {@link RATE_LIMIT_BURST_WINDOW_SECONDS}) per API key: an agent makes a few calls per turn,
 * so a normal one stays one to two orders of magnitude below.
 */
export const DEFAULT_RATE_LIMIT_REQUESTS = { perSecond: 100, burst: 1_000 } as const;

/**
 * Default `MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND` (1 000) and `MEMQ_RATE_LIMIT_MESSAGES_BURST`
 * (10 000, per {@link RATE_LIMIT_BURST_WINDOW_SECONDS}) per API key: one full write (1 000
 * messages) fits in a second's allowance.
 */
export const DEFAULT_RATE_LIMIT_MESSAGES = { perSecond: 1_000, burst: 10_000 } as const;

/**
 * The most messages one request carries (`MAX_MESSAGES_PER_WRITE` in queues/job-contracts.ts,
 * which this layer cannot import; a unit test keeps them equal): an enabled message rate limit
 * must let that many pass at once (per second or as a burst), or a full write could never pass.
 */
export const RATE_LIMIT_MIN_MESSAGES = 1_000;

/**
 * Default `MEMQ_MAX_CONCURRENT_WAITS` (32) and `MEMQ_MAX_CONCURRENT_DRY_RUNS` (4) per project and
 * serve process. A `?wait=true` call holds a connection and polls Redis until its job finishes;
 * each dry-run flush adds a flush job (never deduplicated) that the flush workers plan, so dry
 * runs get the smaller share.
 */
export const DEFAULT_MAX_CONCURRENT = { waits: 32, dryRuns: 4 } as const;

/**
 * Default `HOST`: loopback only, so a memq started on a laptop or a server is not reachable from
 * the network until someone decides it should be (the container image sets `0.0.0.0`).
 */
export const DEFAULT_HOST = '127.0.0.1';

const PROJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const PROJECT_ALLOWED = '1-64 characters of A-Z a-z 0-9 _ - starting with a letter or digit';

/**
 * A non-negative decimal integer in [min, max], written without sign, exponent or spaces (at most
 * 15 digits, so every accepted value is exact as a number).
 */
function integer(min: number, max: number): z.ZodType<number, string> {
  return z.string().transform((text, ctx) => {
    const value = /^\d{1,15}$/.test(text) ? Number(text) : Number.NaN;
    if (!(value >= min && value <= max)) {
      ctx.addIssue({ code: 'custom', message: `an integer in ${min}-${max}` });
      return z.NEVER;
    }
    return value;
  });
}

/** A `redis://` or `rediss://` URL; a problem names only the scheme found (the URL may carry a password). */
const RedisUrlSchema = z.string().superRefine((text, ctx) => {
  let protocol: string | undefined;
  try {
    protocol = new URL(text).protocol;
  } catch {
    protocol = undefined;
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    // The URL may carry a password, so only its scheme is echoed.
    const got =
      protocol === undefined ? 'a value that is not a URL' : `a URL with scheme ${protocol}`;
    ctx.addIssue({
      code: 'custom',
      message: 'expected a redis:// or rediss:// URL',
      params: { got },
    });
  }
});

/** What an API key may do: act for `project`, read only when `readOnly`. */
export interface ApiKeyGrant {
  /** The project (tenant) the key acts for. */
  readonly project: string;
  /** True for a `:read` key: reads only, every write is 403. */
  readonly readOnly: boolean;
}

/**
 * Shortest API key accepted, characters. A key is a bearer secret compared by digest; 16 is the
 * floor below which a guessable key (`k`, `test`) is more likely a mistake than a choice.
 * Generated keys (`.memq/api-key`) are 35 characters (`mq_` and 24 random bytes, base64url).
 */
export const API_KEY_MIN_LENGTH = 16;

/** The shape of API key entries in words (`MEMQ_API_KEYS`'s `allowed`). */
const API_KEYS_SHAPE =
  `key:project or key:project:read entries (key: at least ${API_KEY_MIN_LENGTH} ` +
  `characters, no ":", "," or whitespace; project: ${PROJECT_ALLOWED}; ` +
  '"read", lower case, is the only scope)';

/** The expected shape of API key entries, as error messages say it (`expected ...`). */
export const API_KEYS_ALLOWED = `expected ${API_KEYS_SHAPE}`;

/**
 * Parses API key entries, exactly `key:project` or `key:project:read` (read-only): a key has at
 * least {@link API_KEY_MIN_LENGTH} characters and no `:`, so the third part can only be the scope
 * and `k:acme:READ` or `k:acme:ro` is refused instead of naming a project `READ` or `ro`.
 * @param entries The entries (already split on `,` or lines).
 * @param where How a problem names entry `index` (0-based). Default `entry <index + 1>`.
 * @returns The keys and, for each bad entry, a description naming it by position only (an entry
 *   is a secret, so no part of it is echoed).
 */
export function parseApiKeys(
  entries: readonly string[],
  where: (index: number) => string = (index) => `entry ${index + 1}`,
): {
  keys: Map<string, ApiKeyGrant>;
  problems: string[];
} {
  const keys = new Map<string, ApiKeyGrant>();
  const problems: string[] = [];
  entries.forEach((entry, index) => {
    const at = where(index);
    const parts = entry.split(':');
    const [key = '', project = '', scope] = parts;
    let got: string | undefined;
    if (entry === '') got = `${at} empty`;
    else if (parts.length === 1) got = `${at} without ":"`;
    else if (parts.length > 3) got = `${at} with ${parts.length} parts (a key cannot contain ":")`;
    else if (scope !== undefined && scope !== 'read')
      got = `${at} whose third part is not "read" (the only scope, lower case)`;
    else if (key === '' || /[\s,]/.test(key))
      got = `${at} with an empty key or a key containing whitespace`;
    else if (key.length < API_KEY_MIN_LENGTH)
      got = `${at} with a key of ${key.length} characters (at least ${API_KEY_MIN_LENGTH})`;
    else if (!PROJECT_PATTERN.test(project)) got = `${at} with a project that is not valid`;
    else if (keys.has(key)) got = `${at} repeating an earlier key`;
    if (got !== undefined) problems.push(got);
    else keys.set(key, Object.freeze({ project, readOnly: scope === 'read' }));
  });
  return { keys, problems };
}

/** `MEMQ_API_KEYS`: comma-separated entries parsed by {@link parseApiKeys}; one issue per bad entry. */
const ApiKeysSchema = z.string().transform((text, ctx): ReadonlyMap<string, ApiKeyGrant> => {
  const { keys, problems } = parseApiKeys(text.split(',').map((entry) => entry.trim()));
  for (const got of problems) {
    ctx.addIssue({ code: 'custom', message: API_KEYS_ALLOWED, params: { got } });
  }
  return keys;
});

/**
 * The groups of {@link ENV_VARS}, in the order docs/configuration.md and `.env.example` show
 * them: key -> heading.
 */
export const ENV_GROUPS = Object.freeze({
  redis: 'Redis',
  http: 'HTTP server',
  access: 'Projects and credentials',
  producer: 'Producers',
  backpressure: 'Backpressure (producers)',
  limits: 'Tenant limits (HTTP)',
  workers: 'Workers',
  process: 'Process',
} as const);

/** A key of {@link ENV_GROUPS}. */
export type EnvGroup = keyof typeof ENV_GROUPS;

/**
 * One environment variable: everything memq knows about it. `P` is the {@link EnvConfig}
 * property it fills, `T` that property's type, `D` the default's type (`undefined` makes the
 * property optional).
 */
export interface EnvVar<
  P extends string = string,
  T = unknown,
  D extends string | undefined = string | undefined,
> {
  /** Variable name, e.g. `PORT`. */
  readonly name: string;
  /** The {@link EnvConfig} property it fills, e.g. `port`. */
  readonly property: P;
  /** Where the docs list it. */
  readonly group: EnvGroup;
  /**
   * Parses and validates the text (never empty: an empty string counts as unset) into the
   * property's value. Any issue is reported as `<name>: expected <allowed>, got <found>`, where
   * `<found>` is the issue's `params.got` when a custom issue sets one, `an invalid value (not
   * shown)` for a {@link EnvVar.secret} variable, else the text as a JSON string.
   */
  readonly schema: z.ZodType<T, string>;
  /**
   * Default as written in the environment (parsed by {@link EnvVar.schema} like a set value), or
   * `undefined`: then the property is absent unless the variable is set.
   */
  readonly default: D;
  /** What the schema accepts, in words, e.g. `an integer port in 0-65535` (errors say `expected ...`). */
  readonly allowed: string;
  /** What it does: meaning, units, what a special value (`0`, unset) means. One line of Markdown. */
  readonly doc: string;
  /** True when the value is a secret: never echoed in errors. */
  readonly secret: boolean;
}

/** {@link EnvVar} with `secret` optional (false). */
function envVar<const P extends string, T, const D extends string | undefined>(
  spec: Omit<EnvVar<P, T, D>, 'secret'> & { readonly secret?: boolean },
): EnvVar<P, T, D> {
  return Object.freeze({ ...spec, secret: spec.secret ?? false });
}

/**
 * A comma-separated list of `host:port` entries (a host name, an IPv4 address or a bracketed IPv6
 * address; port 1-65535), as `REDIS_CLUSTER_NODES` and `REDIS_SENTINELS` take them; spaces
 * around entries are dropped. Output: the entries, frozen.
 */
const HostPortListSchema = z
  .string()
  .transform((text) => text.split(',').map((node) => node.trim()))
  .pipe(
    z.array(
      z
        .string()
        .regex(/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/)
        .refine((node) => {
          const port = Number(node.slice(node.lastIndexOf(':') + 1));
          return port >= 1 && port <= 65_535;
        }),
    ),
  )
  .transform((nodes): readonly string[] => Object.freeze(nodes));

/** The unit the `allowed` text of a duration variable names. */
const MS = 'milliseconds';

/**
 * Every variable {@link loadEnvConfig} reads, grouped by {@link ENV_GROUPS} in their order. The
 * single source of {@link EnvConfig}, the parser, docs/configuration.md's table and
 * `.env.example`.
 */
export const ENV_VARS = Object.freeze([
  // Redis
  envVar({
    name: 'REDIS_URL',
    property: 'redisUrl',
    group: 'redis',
    schema: RedisUrlSchema,
    default: undefined,
    allowed: 'a redis:// or rediss:// URL',
    doc: 'Redis URL; credentials go in it. Unset: `redis://127.0.0.1:6379` if a Redis answers there, else `memq start`, `serve`, `work` and `replay` start a private `redis-server` (data in `.memq/redis`)',
    secret: true,
  }),
  envVar({
    name: 'REDIS_CLUSTER_NODES',
    property: 'redisClusterNodes',
    group: 'redis',
    schema: HostPortListSchema,
    default: undefined,
    allowed: 'comma-separated host:port entries (port 1-65535)',
    doc: 'Redis Cluster seed nodes; memq then talks to the cluster (credentials from `REDIS_URL`), every memq key and BullMQ queue being single-slot (hash tags). Unset: one server',
  }),
  envVar({
    name: 'REDIS_SENTINELS',
    property: 'redisSentinels',
    group: 'redis',
    schema: HostPortListSchema,
    default: undefined,
    allowed: 'comma-separated host:port entries (port 1-65535)',
    doc: "Redis Sentinel nodes (ioredis's Sentinel support): memq asks them for the primary of `REDIS_SENTINEL_NAME` and follows a failover; credentials and TLS of the data nodes from `REDIS_URL`. Unset: no Sentinel",
  }),
  envVar({
    name: 'REDIS_SENTINEL_NAME',
    property: 'redisSentinelName',
    group: 'redis',
    schema: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/),
    default: undefined,
    allowed: '1-128 letters, digits, dots, dashes or underscores',
    doc: 'The Sentinel master group name (`sentinel monitor <name> ...`); required with `REDIS_SENTINELS`',
  }),
  envVar({
    name: 'MEMQ_KEY_PREFIX',
    property: 'keyPrefix',
    group: 'redis',
    // Redis Cluster hashes only the first {...} of a key; a brace in the prefix would put every
    // memory instance in one slot, defeating the per-instance hash tags.
    schema: z.string().regex(/^[^{}\s]{1,64}$/),
    default: 'memq:',
    allowed: '1-64 characters without braces or whitespace',
    doc: 'Prefix of every memory key and rate-limit key (braces would defeat the per-memory hash tags)',
  }),
  envVar({
    name: 'MEMQ_QUEUE_PREFIX',
    property: 'queuePrefix',
    group: 'redis',
    schema: z.string().regex(/^[^\s]*\{[^{}\s]+\}[^\s]*$/),
    default: '{memq}',
    allowed: 'a prefix containing a {hash tag}, e.g. {memq}',
    doc: "BullMQ queue prefix; its hash tag keeps each queue's keys in one Redis Cluster slot",
  }),
  // HTTP server
  envVar({
    name: 'PORT',
    property: 'port',
    group: 'http',
    schema: integer(0, 65_535),
    default: '3000',
    allowed: 'an integer port in 0-65535',
    doc: 'HTTP listen port; `0` = any free port',
  }),
  envVar({
    name: 'HOST',
    property: 'host',
    group: 'http',
    schema: z.string().regex(/^[A-Za-z0-9._:%-]{1,253}$/),
    default: DEFAULT_HOST,
    allowed: 'an IP address or host name, e.g. 127.0.0.1, 0.0.0.0 or ::',
    doc: 'HTTP listen address; the default is loopback only, `0.0.0.0` (every IPv4 interface) or `::` accepts remote connections (the Docker image sets `0.0.0.0`)',
  }),
  envVar({
    name: 'MEMQ_MAX_BODY_BYTES',
    property: 'maxBodyBytes',
    group: 'http',
    schema: integer(1024, 64 * 2 ** 20),
    default: String(2 ** 20),
    allowed: 'an integer in 1024-67108864 (bytes)',
    doc: 'Largest HTTP request body, bytes (default 1 MiB); larger: `413`',
  }),
  envVar({
    name: 'MEMQ_MAX_MESSAGE_BYTES',
    property: 'maxMessageBytes',
    group: 'http',
    schema: integer(1, 4 * 2 ** 20),
    default: String(256 * 1024),
    allowed: 'an integer in 1-4194304 (bytes)',
    doc: 'Largest message content over HTTP, UTF-8 bytes (default 256 KiB); larger: `413`',
  }),
  // Projects and credentials
  envVar({
    name: 'MEMQ_PROJECT',
    property: 'project',
    group: 'access',
    schema: z.string().regex(PROJECT_PATTERN),
    default: 'default',
    allowed: PROJECT_ALLOWED,
    doc: 'Project (tenant) of CLI producers such as `memq replay`, and of the API key memq creates; HTTP callers get theirs from their API key',
  }),
  envVar({
    name: 'MEMQ_API_KEYS',
    property: 'apiKeys',
    group: 'access',
    schema: ApiKeysSchema,
    default: undefined,
    allowed: API_KEYS_SHAPE,
    doc: 'HTTP API keys, comma-separated `key:project` entries; a trailing `:read` makes a key read-only. Unset: `MEMQ_API_KEYS_FILE`',
    secret: true,
  }),
  envVar({
    name: 'MEMQ_API_KEYS_FILE',
    property: 'apiKeysFile',
    group: 'access',
    schema: z.string(),
    default: undefined,
    allowed: 'a file path',
    doc: 'File of API key entries, one `key:project[:read]` per line (`#` comments), read when `MEMQ_API_KEYS` is unset. Both unset: memq creates `.memq/api-key` once (project `MEMQ_PROJECT`)',
  }),
  envVar({
    name: 'MEMQ_BOARD_USER',
    property: 'boardUser',
    group: 'access',
    schema: z.string().regex(/^[^:\s]{1,64}$/),
    default: 'admin',
    allowed: '1-64 characters without ":" or whitespace',
    doc: 'Bull Board basic-auth user',
  }),
  envVar({
    name: 'MEMQ_BOARD_PASSWORD',
    property: 'boardPassword',
    group: 'access',
    schema: z.string().min(8),
    default: undefined,
    allowed: 'at least 8 characters',
    doc: 'Bull Board basic-auth password. Unset: memq creates `.memq/board-password` once',
    secret: true,
  }),
  envVar({
    name: 'MEMQ_BOARD_READ_ONLY',
    property: 'boardReadOnly',
    group: 'access',
    schema: z.enum(['true', 'false']).transform((text) => text === 'true'),
    default: 'false',
    allowed: 'true or false',
    doc: '`true`: Bull Board shows queues and jobs but offers no retry, clean, pause or remove',
  }),
  // Producers
  envVar({
    name: 'MEMQ_APPEND_BATCH_MAX',
    property: 'appendBatchMaxMessages',
    group: 'producer',
    schema: integer(1, MAX_APPEND_BATCH_MESSAGES),
    default: String(DEFAULT_APPEND_BATCH_MAX_MESSAGES),
    allowed: `an integer in 1-${MAX_APPEND_BATCH_MESSAGES} (messages)`,
    doc: 'Group commit: most messages one append job carries when appends arrive while an earlier enqueue is in flight; `1` = one job per append (batching off)',
  }),
  envVar({
    name: 'MEMQ_APPEND_BATCH_MAX_BYTES',
    property: 'appendBatchMaxBytes',
    group: 'producer',
    schema: integer(1024, 64 * 1024 * 1024),
    default: String(DEFAULT_APPEND_BATCH_MAX_BYTES),
    allowed: 'an integer in 1024-67108864 (bytes)',
    doc: 'Group commit: most bytes of messages (JSON) one append job carries; a larger append goes alone',
  }),
  envVar({
    name: 'MEMQ_WAIT_REPLICAS',
    property: 'waitReplicas',
    group: 'producer',
    schema: integer(0, 16),
    default: '0',
    allowed: 'an integer in 0-16 (replicas; 0 = off)',
    doc: 'Durability over latency: an append, write, clear or delete is acknowledged (202, receipt) only once this many replicas confirm the enqueued job (Redis `WAIT` on the connection that added it), and a worker completes it only once they confirm the commit. Too few: the call fails with 503 (retryable; the job stays enqueued and may still commit, a retry with the same message ids is deduplicated) and the worker retries the job. Equal to the number of replicas, a failover loses nothing acknowledged; below it, Sentinel may promote a replica that had not confirmed. `0`: acknowledged by the primary alone (a failover may lose what its replicas had not copied). Not with `REDIS_CLUSTER_NODES`',
  }),
  envVar({
    name: 'MEMQ_WAIT_REPLICAS_TIMEOUT_MS',
    property: 'waitReplicasTimeoutMs',
    group: 'producer',
    schema: integer(1, 4000),
    default: '1000',
    allowed: `an integer in 1-4000 (${MS})`,
    doc: "How long one `WAIT` for `MEMQ_WAIT_REPLICAS` replicas may take, milliseconds; fewer confirmations by then count as not confirmed. At most 4 s, inside a producer call's 5 s Redis deadline (longer, the deadline would answer every call first). The connection waits meanwhile, so the calls, lock extensions and job completions behind it wait too: keep it short",
  }),
  // Backpressure
  envVar({
    name: 'MEMQ_BACKPRESSURE_HIGH_WATER',
    property: 'backpressureHighWaterMessages',
    group: 'backpressure',
    schema: integer(1, 1e12),
    default: String(DEFAULT_HIGH_WATER_MESSAGES),
    allowed: 'a positive integer (messages)',
    doc: 'Backlog in messages (of append and write jobs not yet started, all projects) at or above which appends and writes push back (`details.bound` `messages`)',
  }),
  envVar({
    name: 'MEMQ_BACKPRESSURE_LOW_WATER',
    property: 'backpressureLowWaterMessages',
    group: 'backpressure',
    schema: integer(0, 1e12),
    default: String(DEFAULT_LOW_WATER_MESSAGES),
    allowed: 'a non-negative integer (messages)',
    doc: 'Backlog in messages at or below which producers resume once pushed back; must be below `MEMQ_BACKPRESSURE_HIGH_WATER`',
  }),
  envVar({
    name: 'MEMQ_BACKPRESSURE_POLICY',
    property: 'backpressurePolicy',
    group: 'backpressure',
    schema: z.enum(BACKPRESSURE_POLICIES),
    default: 'reject',
    allowed: `one of ${BACKPRESSURE_POLICIES.join(', ')}`,
    doc: '`reject` (fail with `BACKPRESSURE`, HTTP `429`) or `wait` (until the backlog is at or below the low-water mark, up to 30 s, then `BACKPRESSURE`); the per-project and byte bounds always reject',
  }),
  envVar({
    name: 'MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER',
    property: 'backpressureProjectHighWaterMessages',
    group: 'backpressure',
    schema: integer(0, 1e12),
    default: String(DEFAULT_PROJECT_HIGH_WATER_MESSAGES),
    allowed: 'a non-negative integer (messages; 0 = no per-project mark)',
    doc: "Messages of one project's append and write jobs not yet started at or above which that project's appends and writes are refused (`429 BACKPRESSURE`, `details.bound` `project_messages`) while other projects are admitted, whatever the policy; `0` = no per-project mark",
  }),
  envVar({
    name: 'MEMQ_BACKPRESSURE_MAX_BYTES',
    property: 'backpressureMaxBytes',
    group: 'backpressure',
    schema: integer(0, 2 ** 50),
    default: String(DEFAULT_BACKLOG_MAX_BYTES),
    allowed: 'a non-negative integer (bytes; 0 = no bound)',
    doc: 'Bytes of append and write job data not yet started, all projects (default 1 GiB), at or above which appends and writes are refused (`details.bound` `bytes`); `0` = no bound; keep it well below Redis `maxmemory`',
  }),
  envVar({
    name: 'MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES',
    property: 'backpressureProjectMaxBytes',
    group: 'backpressure',
    schema: integer(0, 2 ** 50),
    default: String(DEFAULT_PROJECT_BACKLOG_MAX_BYTES),
    allowed: 'a non-negative integer (bytes; 0 = no bound)',
    doc: 'The same bound per project (default 256 MiB; `details.bound` `project_bytes`); `0` = no bound',
  }),
  // Tenant limits
  envVar({
    name: 'MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND',
    property: 'rateLimitRequestsPerSecond',
    group: 'limits',
    schema: integer(0, 1e9),
    default: String(DEFAULT_RATE_LIMIT_REQUESTS.perSecond),
    allowed: 'a non-negative integer (requests; 0 = no limit)',
    doc: '`/v1` requests per API key per second, counted in Redis (shared by every memq process); over it: `429 RATE_LIMITED` with `Retry-After`; `0` = no request limit',
  }),
  envVar({
    name: 'MEMQ_RATE_LIMIT_REQUESTS_BURST',
    property: 'rateLimitRequestsBurst',
    group: 'limits',
    schema: integer(0, 1e9),
    default: String(DEFAULT_RATE_LIMIT_REQUESTS.burst),
    allowed: 'a non-negative integer (requests)',
    doc: `Requests per API key allowed beyond the per-second limit per ${RATE_LIMIT_BURST_WINDOW_SECONDS} seconds`,
  }),
  envVar({
    name: 'MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND',
    property: 'rateLimitMessagesPerSecond',
    group: 'limits',
    schema: integer(0, 1e9),
    default: String(DEFAULT_RATE_LIMIT_MESSAGES.perSecond),
    allowed: 'a non-negative integer (messages; 0 = no limit)',
    doc: 'Appended or written messages per API key per second; over it: `429 RATE_LIMITED`; `0` = no message limit',
  }),
  envVar({
    name: 'MEMQ_RATE_LIMIT_MESSAGES_BURST',
    property: 'rateLimitMessagesBurst',
    group: 'limits',
    schema: integer(0, 1e9),
    default: String(DEFAULT_RATE_LIMIT_MESSAGES.burst),
    allowed: 'a non-negative integer (messages)',
    doc: `Messages per API key allowed beyond the per-second limit per ${RATE_LIMIT_BURST_WINDOW_SECONDS} seconds; this or the per-second limit must be at least \`${RATE_LIMIT_MIN_MESSAGES}\` (a full write)`,
  }),
  envVar({
    name: 'MEMQ_MAX_CONCURRENT_WAITS',
    property: 'maxConcurrentWaits',
    group: 'limits',
    schema: integer(0, 1e6),
    default: String(DEFAULT_MAX_CONCURRENT.waits),
    allowed: 'an integer in 0-1000000 (calls; 0 = no cap)',
    doc: '`?wait=true` calls (append, write, flush, clear, delete; not dry-run flushes) one project may have running at once, per serve process; beyond: `429 RATE_LIMITED`; `0` = no cap',
  }),
  envVar({
    name: 'MEMQ_MAX_CONCURRENT_DRY_RUNS',
    property: 'maxConcurrentDryRuns',
    group: 'limits',
    schema: integer(0, 1e6),
    default: String(DEFAULT_MAX_CONCURRENT.dryRuns),
    allowed: 'an integer in 0-1000000 (calls; 0 = no cap)',
    doc: 'Dry-run flushes one project may have running at once, per serve process; beyond: `429 RATE_LIMITED`; `0` = no cap',
  }),
  // Workers
  envVar({
    name: 'MEMQ_APPEND_CONCURRENCY',
    property: 'appendConcurrency',
    group: 'workers',
    schema: integer(1, 10_000),
    default: '16',
    allowed: 'an integer in 1-10000',
    doc: 'Append jobs run at once per worker process',
  }),
  envVar({
    name: 'MEMQ_TOKEN_COUNT_CONCURRENCY',
    property: 'tokenCountConcurrency',
    group: 'workers',
    schema: integer(1, 10_000),
    default: String(DEFAULT_TOKEN_COUNT_CONCURRENCY),
    allowed: 'an integer in 1-10000',
    doc: 'Token-count jobs run at once per worker process (four keep the counting thread busy while the main thread reads and commits)',
  }),
  envVar({
    name: 'MEMQ_TOKEN_CACHE_BYTES',
    property: 'tokenCacheBytes',
    group: 'workers',
    schema: integer(1, 2 ** 40),
    default: String(16 * 2 ** 20),
    allowed: 'a positive integer (bytes)',
    doc: 'Bound of the token-count cache (content hash -> tokens) per worker process, bytes (default 16 MiB)',
  }),
  envVar({
    name: 'MEMQ_JOB_LOCK_MS',
    property: 'jobLockMs',
    group: 'workers',
    schema: integer(5_000, 600_000),
    default: '30000',
    allowed: `an integer in 5000-600000 (${MS})`,
    doc: "BullMQ job lock, milliseconds (BullMQ's default): a worker renews it every half; a dead worker's jobs return to waiting within about twice this",
  }),
  envVar({
    name: 'MEMQ_MAINTENANCE_INTERVAL_MS',
    property: 'maintenanceIntervalMs',
    group: 'workers',
    schema: integer(1000, 86_400_000),
    default: '300000',
    allowed: `an integer in 1000-86400000 (${MS})`,
    doc: 'How often the maintenance sweep runs (a BullMQ job scheduler; safe on every boot and replica), milliseconds (default 5 min)',
  }),
  envVar({
    name: 'MEMQ_IDEMPOTENCY_WINDOW_MS',
    property: 'idempotencyWindowMs',
    group: 'workers',
    schema: integer(60_000, 2_592_000_000),
    default: '86400000',
    allowed: `an integer in 60000-2592000000 (${MS})`,
    doc: 'How long an accepted message id is remembered for duplicate detection (producer retries within it are stored once), milliseconds (default 24 h); past it, maintenance prunes the id unless it is still in the log',
  }),
  // Process
  envVar({
    name: 'MEMQ_MEMORIES_DIR',
    property: 'memoriesDir',
    group: 'process',
    schema: z.string(),
    default: 'memories',
    allowed: 'a directory path',
    doc: 'Directory of memory resource YAML files',
  }),
  envVar({
    name: 'MEMQ_SHUTDOWN_GRACE_MS',
    property: 'shutdownGraceMs',
    group: 'process',
    schema: integer(1000, 3_600_000),
    default: '25000',
    allowed: `an integer in 1000-3600000 (${MS})`,
    doc: 'Shutdown deadline, milliseconds: after the first SIGTERM or SIGINT the process exits within this time whatever Redis does (HTTP, workers, queues, connections share it; what cannot finish is abandoned, and BullMQ takes unfinished jobs back through their locks). The default fits a 30 s termination grace',
  }),
  envVar({
    name: 'MEMQ_LOG_LEVEL',
    property: 'logLevel',
    group: 'process',
    schema: z.enum(LOG_LEVELS),
    default: 'info',
    allowed: `one of ${LOG_LEVELS.join(', ')}`,
    doc: 'pino level; logs are JSON lines on stderr with job and memory ids, never message content',
  }),
] as const);

/** One entry of {@link ENV_VARS}, with its literal property and default types. */
type EnvEntry = (typeof ENV_VARS)[number];

/** `T` with its intersections flattened (modifiers kept), so editors show one object type. */
type Flatten<T> = { [K in keyof T]: T[K] } & {};

/**
 * Resolved environment configuration (frozen), derived from {@link ENV_VARS}: one read-only
 * property per variable, typed by its schema's output; optional when the variable has no default
 * (`redisUrl`, `redisClusterNodes`, `redisSentinels`, `redisSentinelName`, `apiKeys`, `apiKeysFile`, `boardPassword`). What a property
 * means, its unit, range and default: the `doc`, `allowed` and `default` of the entry whose
 * `property` it is (rendered in docs/configuration.md, "Environment variables").
 */
export type EnvConfig = Flatten<
  {
    readonly [E in EnvEntry as undefined extends E['default'] ? never : E['property']]: z.output<
      E['schema']
    >;
  } & {
    readonly [E in EnvEntry as undefined extends E['default'] ? E['property'] : never]?: z.output<
      E['schema']
    >;
  }
>;

/**
 * A rule over several variables, checked once every variable is valid: a violation is reported
 * under `variable` as `<variable>: <message>, got <got>`.
 */
interface EnvRule {
  /** The variable a violation is reported under. */
  readonly variable: string;
  /** The violation (what is expected, and the value found), or undefined when the rule holds. */
  readonly check: (config: EnvConfig) => { message: string; got: string } | undefined;
}

/** The rules over several variables, in the order their violations are reported. */
const ENV_RULES: readonly EnvRule[] = [
  {
    variable: 'MEMQ_RATE_LIMIT_MESSAGES_BURST',
    check: ({ rateLimitMessagesPerSecond: perSecond, rateLimitMessagesBurst: burst }) =>
      perSecond > 0 && Math.max(perSecond, burst) < RATE_LIMIT_MIN_MESSAGES
        ? {
            message: `expected at least ${RATE_LIMIT_MIN_MESSAGES} while MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND (${perSecond}) is below it (a write carries up to ${RATE_LIMIT_MIN_MESSAGES} messages; 0 per second turns the limit off)`,
            got: String(burst),
          }
        : undefined,
  },
  {
    variable: 'REDIS_SENTINEL_NAME',
    check: ({ redisSentinels: sentinels, redisSentinelName: name }) =>
      (sentinels !== undefined) !== (name !== undefined)
        ? {
            message: 'expected REDIS_SENTINELS and REDIS_SENTINEL_NAME together',
            got: name === undefined ? 'unset' : JSON.stringify(name),
          }
        : undefined,
  },
  {
    variable: 'REDIS_SENTINELS',
    check: ({ redisSentinels: sentinels, redisClusterNodes: cluster }) =>
      sentinels !== undefined && cluster !== undefined
        ? {
            message: 'expected either REDIS_SENTINELS or REDIS_CLUSTER_NODES, not both',
            got: sentinels.join(','),
          }
        : undefined,
  },
  {
    variable: 'MEMQ_WAIT_REPLICAS',
    check: ({ waitReplicas, redisClusterNodes: cluster }) =>
      waitReplicas > 0 && cluster !== undefined
        ? {
            message:
              'expected 0 with REDIS_CLUSTER_NODES (WAIT has no key: a cluster client cannot send it to the node that took the writes)',
            got: String(waitReplicas),
          }
        : undefined,
  },
  {
    variable: 'MEMQ_BACKPRESSURE_LOW_WATER',
    check: ({ backpressureLowWaterMessages: low, backpressureHighWaterMessages: high }) =>
      low >= high
        ? {
            message: `expected an integer below MEMQ_BACKPRESSURE_HIGH_WATER (${high})`,
            got: String(low),
          }
        : undefined,
  },
];

/**
 * Variables memq no longer reads, by name, with what replaced each: set in a deployment, they
 * would otherwise be ignored without a word ({@link retiredEnvVariables}).
 */
export const RETIRED_ENV_VARS: Readonly<Record<string, string>> = Object.freeze({
  MEMQ_TOKEN_COUNT_DELAY_MS:
    'token-count jobs always wait 250 ms (DEFAULT_TOKEN_COUNT_DELAY_MS in queues/memory-queues.ts); remove it',
});

/**
 * The retired variables set in `env` (non-empty), each as `<NAME>: ignored: <what replaced it>`,
 * for the CLI to warn about. Pure.
 * @param env Variables, e.g. `process.env`.
 */
export function retiredEnvVariables(env: Record<string, string | undefined>): string[] {
  return Object.entries(RETIRED_ENV_VARS)
    .filter(([name]) => env[name] !== undefined && env[name] !== '')
    .map(([name, why]) => `${name}: ignored: ${why}`);
}

/**
 * Resolves the environment configuration from {@link ENV_VARS}. Pure: reads only `env`.
 *
 * @param env Variables, e.g. `process.env` (passed by the CLI) or `{}` in tests. Empty strings
 *   count as unset; variables not in {@link ENV_VARS} are ignored.
 * @returns The frozen configuration: each variable set, else its default, parsed by its schema;
 *   a variable without a default that is unset leaves its property absent.
 * @throws ConfigError (`CONFIG_INVALID`) listing every invalid variable, one per line, in table
 *   order: `<NAME>: expected <allowed>, got <what was found>` (secrets are described, not
 *   echoed), then, once every variable is valid, each violated rule over several variables
 *   (`MEMQ_RATE_LIMIT_MESSAGES_BURST` against the per-second limit, `MEMQ_BACKPRESSURE_LOW_WATER`
 *   below the high-water mark). `details.variables` names the variable of each line.
 */
export function loadEnvConfig(env: Record<string, string | undefined>): EnvConfig {
  const table: readonly EnvVar[] = ENV_VARS;
  const config: Record<string, unknown> = {};
  const lines: string[] = [];
  const variables: string[] = [];
  for (const entry of table) {
    const set = env[entry.name];
    const text = set !== undefined && set !== '' ? set : entry.default;
    if (text === undefined) continue;
    const parsed = entry.schema.safeParse(text);
    if (parsed.success) {
      config[entry.property] = parsed.data;
      continue;
    }
    for (const issue of parsed.error.issues) {
      const params =
        issue.code === 'custom' ? (issue.params as { got?: unknown } | undefined) : undefined;
      const got =
        typeof params?.got === 'string'
          ? params.got
          : entry.secret
            ? 'an invalid value (not shown)'
            : JSON.stringify(text);
      lines.push(`${entry.name}: expected ${entry.allowed}, got ${got}`);
      variables.push(entry.name);
    }
  }
  if (lines.length === 0) {
    for (const rule of ENV_RULES) {
      const violation = rule.check(config as EnvConfig);
      if (violation === undefined) continue;
      lines.push(`${rule.variable}: ${violation.message}, got ${violation.got}`);
      variables.push(rule.variable);
    }
  }
  if (lines.length > 0) {
    throw new ConfigError(lines.join('\n'), { details: { variables } });
  }
  return Object.freeze(config) as EnvConfig;
}
