/**
 * Environment configuration: one pure function from an env record to a frozen {@link EnvConfig}.
 * Only `src/cli` / `src/main` pass `process.env`; tests pass plain objects. An empty string counts
 * as unset (what `VAR=` in a compose file or `.env` produces).
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
 * "Token-count concurrency, and where the counting window goes").
 */
export const DEFAULT_TOKEN_COUNT_CONCURRENCY = 4;

/** What producers do when a queue's backlog is above the high-water mark. */
export const BACKPRESSURE_POLICIES = ['reject', 'wait'] as const;
/** One of {@link BACKPRESSURE_POLICIES}. */
export type BackpressurePolicy = (typeof BACKPRESSURE_POLICIES)[number];

/**
 * Default `MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER`: 2 500 jobs, a quarter of the default global
 * high-water mark (10 000), so one project alone cannot close the global gate for every other
 * project: four projects at their own mark are needed for that.
 */
export const DEFAULT_PROJECT_HIGH_WATER_JOBS = 2_500;

/**
 * Default `MEMQ_BACKPRESSURE_MAX_BYTES`: 1 GiB of append and write job data not yet started. The
 * job mark alone let 10 000 jobs of 1 MiB bodies (about 10 GiB) in before it closed; a normal
 * backlog (10 000 appends of a few KiB) is tens of MiB, far below this.
 */
export const DEFAULT_BACKLOG_MAX_BYTES = 2 ** 30;

/**
 * Default `MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES`: 256 MiB, a quarter of
 * {@link DEFAULT_BACKLOG_MAX_BYTES} (the same share as {@link DEFAULT_PROJECT_HIGH_WATER_JOBS}).
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

/** Resolved environment configuration (frozen). */
export interface EnvConfig {
  /**
   * `REDIS_URL`: `redis://` or `rediss://` URL. Default `undefined`: the CLI decides (an embedded
   * or local default).
   */
  readonly redisUrl?: string;
  /**
   * `REDIS_CLUSTER_NODES`: Redis Cluster seed nodes, `host:port` comma-separated; memq then
   * talks to the cluster (credentials from `REDIS_URL`, if set). Default `undefined` (one server).
   */
  readonly redisClusterNodes?: readonly string[];
  /** `MEMQ_MEMORIES_DIR`: directory of memory resource YAML files. Default `memories`. */
  readonly memoriesDir: string;
  /** `PORT`: HTTP listen port, 0-65535 (0 = any free port). Default 3000. */
  readonly port: number;
  /**
   * `HOST`: HTTP listen address (an IP address or host name). Default {@link DEFAULT_HOST}
   * (loopback only); `0.0.0.0` (all IPv4 interfaces) or `::` to accept remote connections, as the
   * Docker image does.
   */
  readonly host: string;
  /** `MEMQ_KEY_PREFIX`: prefix of every memory key; no braces or whitespace. Default `memq:`. */
  readonly keyPrefix: string;
  /** `MEMQ_QUEUE_PREFIX`: BullMQ prefix, must contain a `{...}` hash tag. Default `{memq}`. */
  readonly queuePrefix: string;
  /** `MEMQ_APPEND_CONCURRENCY`: append jobs run at once per worker process, >= 1. Default 16. */
  readonly appendConcurrency: number;
  /**
   * `MEMQ_TOKEN_COUNT_CONCURRENCY`: token-count jobs at once per worker process, >= 1. Default
   * {@link DEFAULT_TOKEN_COUNT_CONCURRENCY} (4).
   */
  readonly tokenCountConcurrency: number;
  /** `MEMQ_TOKEN_CACHE_BYTES`: bound of the token-count cache per worker process, bytes, >= 1. Default 16 777 216 (16 MiB). */
  readonly tokenCacheBytes: number;
  /** `MEMQ_BACKPRESSURE_HIGH_WATER`: waiting + delayed jobs above which producers push back, >= 1. Default 10 000. */
  readonly backpressureHighWaterJobs: number;
  /** `MEMQ_BACKPRESSURE_LOW_WATER`: backlog below which producers resume, < high water. Default 5 000. */
  readonly backpressureLowWaterJobs: number;
  /** `MEMQ_BACKPRESSURE_POLICY`: `reject` (BackpressureError) or `wait` (until below low water). Default `reject`. */
  readonly backpressurePolicy: BackpressurePolicy;
  /**
   * `MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER`: append and write jobs of one project not yet started at
   * or above which that project's appends and writes are refused (`BACKPRESSURE`) while other
   * projects' are admitted, >= 0 (0 = no per-project mark). Always rejects, whatever the policy.
   * Default {@link DEFAULT_PROJECT_HIGH_WATER_JOBS} (2 500).
   */
  readonly backpressureProjectHighWaterJobs: number;
  /**
   * `MEMQ_BACKPRESSURE_MAX_BYTES`: bytes of append and write job data (JSON) not yet started, of
   * all projects, at or above which appends and writes are refused, >= 0 (0 = no bound). Default
   * {@link DEFAULT_BACKLOG_MAX_BYTES} (1 GiB).
   */
  readonly backpressureMaxBytes: number;
  /**
   * `MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES`: the same bound per project, >= 0 (0 = no bound).
   * Default {@link DEFAULT_PROJECT_BACKLOG_MAX_BYTES} (256 MiB).
   */
  readonly backpressureProjectMaxBytes: number;
  /** `MEMQ_SHUTDOWN_GRACE_MS`: how long shutdown waits for each step, milliseconds, >= 0. Default 30 000. */
  readonly shutdownGraceMs: number;
  /** `MEMQ_MAINTENANCE_INTERVAL_MS`: how often the maintenance sweep runs, milliseconds, 1 000-86 400 000. Default 300 000 (5 min). */
  readonly maintenanceIntervalMs: number;
  /**
   * `MEMQ_IDEMPOTENCY_WINDOW_MS`: how long an accepted message id is remembered for duplicate
   * detection (producers may retry within it), milliseconds, 60 000-2 592 000 000. Default
   * 86 400 000 (24 h). Past it, maintenance prunes the id unless it is still in the log.
   */
  readonly idempotencyWindowMs: number;
  /**
   * `MEMQ_JOB_LOCK_MS`: BullMQ job lock duration, milliseconds, 5 000-600 000. Default 30 000
   * (BullMQ's). A worker renews the lock of each active job every half of it; when a worker dies
   * (SIGKILL, OOM, lost host) its jobs go back to waiting within about twice this (one lock
   * expiry plus one stalled-job check), so smaller recovers sooner and costs more renewals.
   */
  readonly jobLockMs: number;
  /**
   * `MEMQ_TOKEN_COUNT_DELAY_MS`: how long a token-count job waits before it runs, milliseconds,
   * 0-60 000. Default 250: appends to a memory within that time are counted by one job; exact
   * counts (and the flush trigger) come that much later.
   */
  readonly tokenCountDelayMs: number;
  /** `MEMQ_PROJECT`: default project of CLI producers (HTTP callers get theirs from their API key) (1-64 of `[A-Za-z0-9_-]`). Default `default`. */
  readonly project: string;
  /**
   * `MEMQ_API_KEYS`: `key:project,key2:project2:read` parsed by {@link parseApiKeys} (keys of
   * {@link API_KEY_MIN_LENGTH}+ characters without `:`). Default
   * `undefined` (no keys configured; the CLI then reads `MEMQ_API_KEYS_FILE` or creates one).
   */
  readonly apiKeys?: ReadonlyMap<string, ApiKeyGrant>;
  /** `MEMQ_API_KEYS_FILE`: a file of API key entries, one per line (`#` comments). Default unset. */
  readonly apiKeysFile?: string;
  /** `MEMQ_BOARD_USER`: Bull Board basic-auth user. Default `admin`. */
  readonly boardUser: string;
  /** `MEMQ_BOARD_PASSWORD`: Bull Board basic-auth password. Default unset (the CLI creates one). */
  readonly boardPassword?: string;
  /** `MEMQ_BOARD_READ_ONLY`: `true` hides Bull Board's retry/remove/pause actions. Default `false`. */
  readonly boardReadOnly: boolean;
  /** `MEMQ_MAX_BODY_BYTES`: largest HTTP request body, bytes, 1 KiB-64 MiB. Default 1 048 576 (1 MiB). */
  readonly maxBodyBytes: number;
  /** `MEMQ_MAX_MESSAGE_BYTES`: largest message content over HTTP, UTF-8 bytes, 1-4 MiB. Default 262 144 (256 KiB). */
  readonly maxMessageBytes: number;
  /**
   * `MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND`: `/v1` requests per API key per second, >= 0 (0 = no
   * request limit). Default 100 ({@link DEFAULT_RATE_LIMIT_REQUESTS}).
   */
  readonly rateLimitRequestsPerSecond: number;
  /**
   * `MEMQ_RATE_LIMIT_REQUESTS_BURST`: requests per API key allowed beyond the per-second limit per
   * {@link RATE_LIMIT_BURST_WINDOW_SECONDS} seconds, >= 0. Default 1 000.
   */
  readonly rateLimitRequestsBurst: number;
  /**
   * `MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND`: appended or written messages per API key per second,
   * >= 0 (0 = no message limit). Default 1 000 ({@link DEFAULT_RATE_LIMIT_MESSAGES}).
   */
  readonly rateLimitMessagesPerSecond: number;
  /**
   * `MEMQ_RATE_LIMIT_MESSAGES_BURST`: messages per API key allowed beyond the per-second limit per
   * {@link RATE_LIMIT_BURST_WINDOW_SECONDS} seconds, >= 0; this or the per-second limit must be at
   * least {@link RATE_LIMIT_MIN_MESSAGES}. Default 10 000.
   */
  readonly rateLimitMessagesBurst: number;
  /**
   * `MEMQ_MAX_CONCURRENT_WAITS`: `?wait=true` calls (other than dry-run flushes) one project may
   * have running at once in one serve process, >= 0 (0 = no cap). Default 32
   * ({@link DEFAULT_MAX_CONCURRENT}).
   */
  readonly maxConcurrentWaits: number;
  /**
   * `MEMQ_MAX_CONCURRENT_DRY_RUNS`: dry-run flushes one project may have running at once in one
   * serve process, >= 0 (0 = no cap). Default 4 ({@link DEFAULT_MAX_CONCURRENT}).
   */
  readonly maxConcurrentDryRuns: number;
  /** `MEMQ_LOG_LEVEL`: one of {@link LOG_LEVELS}. Default `info`. */
  readonly logLevel: LogLevel;
}

/** One documented environment variable (the README's table is checked against this). */
export interface EnvVarDoc {
  /** Variable name. */
  readonly name: string;
  /** Default as written in the environment, or `undefined` when unset by default. */
  readonly default: string | undefined;
  /** What it does, with units and allowed values. */
  readonly description: string;
}

/** Every variable {@link loadEnvConfig} reads, in README order. */
export const ENV_VARS: readonly EnvVarDoc[] = Object.freeze(
  [
    {
      name: 'REDIS_URL',
      default: undefined,
      description: 'Redis URL (redis:// or rediss://); unset = the CLI default',
    },
    {
      name: 'REDIS_CLUSTER_NODES',
      default: undefined,
      description:
        'Redis Cluster seed nodes as host:port,host:port; unset = one server (REDIS_URL)',
    },
    {
      name: 'MEMQ_MEMORIES_DIR',
      default: 'memories',
      description: 'Directory of memory resource YAML files',
    },
    { name: 'PORT', default: '3000', description: 'HTTP listen port (0-65535, 0 = any free port)' },
    {
      name: 'HOST',
      default: DEFAULT_HOST,
      description:
        'HTTP listen address; 0.0.0.0 (all IPv4 interfaces) or :: to accept remote connections (the Docker image sets 0.0.0.0)',
    },
    {
      name: 'MEMQ_KEY_PREFIX',
      default: 'memq:',
      description: 'Prefix of every memory key (no braces or whitespace)',
    },
    {
      name: 'MEMQ_QUEUE_PREFIX',
      default: '{memq}',
      description: 'BullMQ queue prefix; must contain a {hash tag}',
    },
    {
      name: 'MEMQ_APPEND_CONCURRENCY',
      default: '16',
      description: 'Append jobs run at once per worker process',
    },
    {
      name: 'MEMQ_TOKEN_COUNT_CONCURRENCY',
      default: String(DEFAULT_TOKEN_COUNT_CONCURRENCY),
      description: 'Token-count jobs run at once per worker process',
    },
    {
      name: 'MEMQ_TOKEN_CACHE_BYTES',
      default: '16777216',
      description:
        'Bound of the token-count cache (content hash -> tokens) per worker process, bytes',
    },
    {
      name: 'MEMQ_BACKPRESSURE_HIGH_WATER',
      default: '10000',
      description: 'Waiting + delayed jobs above which producers push back',
    },
    {
      name: 'MEMQ_BACKPRESSURE_LOW_WATER',
      default: '5000',
      description: 'Backlog below which producers resume (< high water)',
    },
    {
      name: 'MEMQ_BACKPRESSURE_POLICY',
      default: 'reject',
      description: 'reject (fail with BACKPRESSURE) or wait (until below low water)',
    },
    {
      name: 'MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER',
      default: String(DEFAULT_PROJECT_HIGH_WATER_JOBS),
      description:
        'Append and write jobs of one project not yet started at or above which that project is refused (BACKPRESSURE) while others are admitted; 0 = no per-project mark',
    },
    {
      name: 'MEMQ_BACKPRESSURE_MAX_BYTES',
      default: String(DEFAULT_BACKLOG_MAX_BYTES),
      description:
        'Bytes of append and write job data not yet started (all projects) at or above which appends and writes are refused; 0 = no bound',
    },
    {
      name: 'MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES',
      default: String(DEFAULT_PROJECT_BACKLOG_MAX_BYTES),
      description: 'The same bound per project; 0 = no bound',
    },
    {
      name: 'MEMQ_SHUTDOWN_GRACE_MS',
      default: '30000',
      description: 'Grace per shutdown step, milliseconds',
    },
    {
      name: 'MEMQ_MAINTENANCE_INTERVAL_MS',
      default: '300000',
      description: 'How often the maintenance sweep runs, milliseconds',
    },
    {
      name: 'MEMQ_IDEMPOTENCY_WINDOW_MS',
      default: '86400000',
      description:
        'How long accepted message ids are remembered for duplicate detection, milliseconds',
    },
    {
      name: 'MEMQ_JOB_LOCK_MS',
      default: '30000',
      description:
        "BullMQ job lock, milliseconds (5000-600000); a dead worker's jobs return to waiting within about twice this",
    },
    {
      name: 'MEMQ_TOKEN_COUNT_DELAY_MS',
      default: '250',
      description:
        'Delay of token-count jobs, milliseconds (0-60000): appends to a memory within it are counted by one job',
    },
    { name: 'MEMQ_PROJECT', default: 'default', description: 'Project of CLI producers' },
    {
      name: 'MEMQ_API_KEYS',
      default: undefined,
      description:
        'HTTP API keys as key:project or key:project:read entries (read-only), comma-separated; keys of 16+ characters without ":"',
    },
    {
      name: 'MEMQ_API_KEYS_FILE',
      default: undefined,
      description:
        'File of API key entries (one key:project[:read] per line, # comments); unset with MEMQ_API_KEYS unset: memq creates .memq/api-key (project default)',
    },
    { name: 'MEMQ_BOARD_USER', default: 'admin', description: 'Bull Board basic-auth user' },
    {
      name: 'MEMQ_BOARD_PASSWORD',
      default: undefined,
      description: 'Bull Board basic-auth password; unset: memq creates .memq/board-password',
    },
    {
      name: 'MEMQ_BOARD_READ_ONLY',
      default: 'false',
      description: 'true: Bull Board shows queues and jobs but offers no retry, remove or pause',
    },
    {
      name: 'MEMQ_MAX_BODY_BYTES',
      default: '1048576',
      description: 'Largest HTTP request body, bytes (1024-67108864); larger: 413',
    },
    {
      name: 'MEMQ_MAX_MESSAGE_BYTES',
      default: '262144',
      description: 'Largest message content over HTTP, UTF-8 bytes (1-4194304); larger: 413',
    },
    {
      name: 'MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND',
      default: String(DEFAULT_RATE_LIMIT_REQUESTS.perSecond),
      description:
        '/v1 requests per API key per second, shared by every process on the Redis; over it: 429 RATE_LIMITED; 0 = no limit',
    },
    {
      name: 'MEMQ_RATE_LIMIT_REQUESTS_BURST',
      default: String(DEFAULT_RATE_LIMIT_REQUESTS.burst),
      description: `Requests per API key allowed beyond the per-second limit per ${RATE_LIMIT_BURST_WINDOW_SECONDS} seconds`,
    },
    {
      name: 'MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND',
      default: String(DEFAULT_RATE_LIMIT_MESSAGES.perSecond),
      description:
        'Appended or written messages per API key per second; over it: 429 RATE_LIMITED; 0 = no limit',
    },
    {
      name: 'MEMQ_RATE_LIMIT_MESSAGES_BURST',
      default: String(DEFAULT_RATE_LIMIT_MESSAGES.burst),
      description: `Messages per API key allowed beyond the per-second limit per ${RATE_LIMIT_BURST_WINDOW_SECONDS} seconds; this or the per-second limit must be at least ${RATE_LIMIT_MIN_MESSAGES}`,
    },
    {
      name: 'MEMQ_MAX_CONCURRENT_WAITS',
      default: String(DEFAULT_MAX_CONCURRENT.waits),
      description:
        '?wait=true calls one project may have running at once per serve process; beyond: 429 RATE_LIMITED; 0 = no cap',
    },
    {
      name: 'MEMQ_MAX_CONCURRENT_DRY_RUNS',
      default: String(DEFAULT_MAX_CONCURRENT.dryRuns),
      description:
        'Dry-run flushes one project may have running at once per serve process; beyond: 429 RATE_LIMITED; 0 = no cap',
    },
    {
      name: 'MEMQ_LOG_LEVEL',
      default: 'info',
      description: 'pino level: fatal, error, warn, info, debug, trace, silent',
    },
  ].map((entry) => Object.freeze(entry)),
);

const PROJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const PROJECT_ALLOWED = '1-64 characters of A-Z a-z 0-9 _ - starting with a letter or digit';

/** A non-negative decimal integer in [min, max], written without sign, exponent or spaces. */
function integer(min: number, max: number, allowed: string) {
  return z.string().transform((text, ctx) => {
    const value = /^\d{1,15}$/.test(text) ? Number(text) : Number.NaN;
    if (!(value >= min && value <= max)) {
      ctx.addIssue({ code: 'custom', message: allowed, params: { got: JSON.stringify(text) } });
      return z.NEVER;
    }
    return value;
  });
}

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

/** The expected shape of API key entries, as error messages say it. */
export const API_KEYS_ALLOWED =
  `expected key:project or key:project:read entries (key: at least ${API_KEY_MIN_LENGTH} ` +
  `characters, no ":", "," or whitespace; project: ${PROJECT_ALLOWED}; ` +
  '"read", lower case, is the only scope)';

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

const ApiKeysSchema = z.string().transform((text, ctx) => {
  const { keys, problems } = parseApiKeys(text.split(',').map((entry) => entry.trim()));
  for (const got of problems) {
    ctx.addIssue({ code: 'custom', message: API_KEYS_ALLOWED, params: { got } });
  }
  return keys;
});

const KEY_PREFIX_ALLOWED = 'expected 1-64 characters without braces or whitespace';
const LOG_LEVEL_ALLOWED = `expected one of ${LOG_LEVELS.join(', ')}`;
const POLICY_ALLOWED = `expected one of ${BACKPRESSURE_POLICIES.join(', ')}`;

const EnvSchema = z
  .object({
    REDIS_URL: RedisUrlSchema.optional(),
    REDIS_CLUSTER_NODES: z
      .string()
      .transform((text) => text.split(',').map((node) => node.trim()))
      .pipe(
        z.array(
          z.string().regex(/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/, {
            error: 'expected comma-separated host:port entries',
          }),
        ),
      )
      .optional(),
    MEMQ_MEMORIES_DIR: z.string().default('memories'),
    PORT: integer(0, 65_535, 'expected an integer port in 0-65535').default(3000),
    HOST: z
      .string()
      .regex(/^[A-Za-z0-9._:%-]{1,253}$/, {
        error: 'expected an IP address or host name, e.g. 127.0.0.1, 0.0.0.0 or ::',
      })
      .default(DEFAULT_HOST),
    // Redis Cluster hashes only the first {...} of a key; a brace in the prefix would put every
    // memory instance in one slot, defeating the per-instance hash tags.
    MEMQ_KEY_PREFIX: z
      .string()
      .regex(/^[^{}\s]{1,64}$/, { error: KEY_PREFIX_ALLOWED })
      .default('memq:'),
    MEMQ_QUEUE_PREFIX: z
      .string()
      .regex(/^[^\s]*\{[^{}\s]+\}[^\s]*$/, {
        error: 'expected a prefix containing a {hash tag}, e.g. {memq}',
      })
      .default('{memq}'),
    MEMQ_APPEND_CONCURRENCY: integer(1, 10_000, 'expected an integer in 1-10000').default(16),
    MEMQ_TOKEN_COUNT_CONCURRENCY: integer(1, 10_000, 'expected an integer in 1-10000').default(
      DEFAULT_TOKEN_COUNT_CONCURRENCY,
    ),
    MEMQ_TOKEN_CACHE_BYTES: integer(1, 2 ** 40, 'expected a positive integer (bytes)').default(
      16 * 2 ** 20,
    ),
    MEMQ_BACKPRESSURE_HIGH_WATER: integer(1, 1e12, 'expected a positive integer (jobs)').default(
      10_000,
    ),
    MEMQ_BACKPRESSURE_LOW_WATER: integer(0, 1e12, 'expected a non-negative integer (jobs)').default(
      5_000,
    ),
    MEMQ_BACKPRESSURE_POLICY: z
      .enum(BACKPRESSURE_POLICIES, { error: POLICY_ALLOWED })
      .default('reject'),
    MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER: integer(
      0,
      1e12,
      'expected a non-negative integer (jobs; 0 = no per-project mark)',
    ).default(DEFAULT_PROJECT_HIGH_WATER_JOBS),
    MEMQ_BACKPRESSURE_MAX_BYTES: integer(
      0,
      2 ** 50,
      'expected a non-negative integer (bytes; 0 = no bound)',
    ).default(DEFAULT_BACKLOG_MAX_BYTES),
    MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES: integer(
      0,
      2 ** 50,
      'expected a non-negative integer (bytes; 0 = no bound)',
    ).default(DEFAULT_PROJECT_BACKLOG_MAX_BYTES),
    MEMQ_SHUTDOWN_GRACE_MS: integer(
      0,
      3_600_000,
      'expected an integer in 0-3600000 (milliseconds)',
    ).default(30_000),
    MEMQ_MAINTENANCE_INTERVAL_MS: integer(
      1000,
      86_400_000,
      'expected an integer in 1000-86400000 (milliseconds)',
    ).default(300_000),
    MEMQ_IDEMPOTENCY_WINDOW_MS: integer(
      60_000,
      2_592_000_000,
      'expected an integer in 60000-2592000000 (milliseconds)',
    ).default(86_400_000),
    MEMQ_JOB_LOCK_MS: integer(
      5_000,
      600_000,
      'expected an integer in 5000-600000 (milliseconds)',
    ).default(30_000),
    MEMQ_TOKEN_COUNT_DELAY_MS: integer(
      0,
      60_000,
      'expected an integer in 0-60000 (milliseconds)',
    ).default(250),
    MEMQ_PROJECT: z
      .string()
      .regex(PROJECT_PATTERN, { error: `expected ${PROJECT_ALLOWED}` })
      .default('default'),
    MEMQ_API_KEYS: ApiKeysSchema.optional(),
    MEMQ_API_KEYS_FILE: z.string().optional(),
    MEMQ_BOARD_USER: z
      .string()
      .regex(/^[^:\s]{1,64}$/, { error: 'expected 1-64 characters without ":" or whitespace' })
      .default('admin'),
    MEMQ_BOARD_PASSWORD: z.string().min(8, { error: 'expected at least 8 characters' }).optional(),
    MEMQ_BOARD_READ_ONLY: z
      .enum(['true', 'false'], { error: 'expected true or false' })
      .default('false'),
    MEMQ_MAX_BODY_BYTES: integer(
      1024,
      64 * 2 ** 20,
      'expected an integer in 1024-67108864 (bytes)',
    ).default(2 ** 20),
    MEMQ_MAX_MESSAGE_BYTES: integer(
      1,
      4 * 2 ** 20,
      'expected an integer in 1-4194304 (bytes)',
    ).default(256 * 1024),
    MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND: integer(
      0,
      1e9,
      'expected a non-negative integer (requests; 0 = no limit)',
    ).default(DEFAULT_RATE_LIMIT_REQUESTS.perSecond),
    MEMQ_RATE_LIMIT_REQUESTS_BURST: integer(
      0,
      1e9,
      'expected a non-negative integer (requests)',
    ).default(DEFAULT_RATE_LIMIT_REQUESTS.burst),
    MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND: integer(
      0,
      1e9,
      'expected a non-negative integer (messages; 0 = no limit)',
    ).default(DEFAULT_RATE_LIMIT_MESSAGES.perSecond),
    MEMQ_RATE_LIMIT_MESSAGES_BURST: integer(
      0,
      1e9,
      'expected a non-negative integer (messages)',
    ).default(DEFAULT_RATE_LIMIT_MESSAGES.burst),
    MEMQ_MAX_CONCURRENT_WAITS: integer(
      0,
      1e6,
      'expected an integer in 0-1000000 (calls; 0 = no cap)',
    ).default(DEFAULT_MAX_CONCURRENT.waits),
    MEMQ_MAX_CONCURRENT_DRY_RUNS: integer(
      0,
      1e6,
      'expected an integer in 0-1000000 (calls; 0 = no cap)',
    ).default(DEFAULT_MAX_CONCURRENT.dryRuns),
    MEMQ_LOG_LEVEL: z.enum(LOG_LEVELS, { error: LOG_LEVEL_ALLOWED }).default('info'),
  })
  .superRefine((env, ctx) => {
    const messagesPerSecond = env.MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND;
    if (
      messagesPerSecond > 0 &&
      Math.max(messagesPerSecond, env.MEMQ_RATE_LIMIT_MESSAGES_BURST) < RATE_LIMIT_MIN_MESSAGES
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['MEMQ_RATE_LIMIT_MESSAGES_BURST'],
        message: `expected at least ${RATE_LIMIT_MIN_MESSAGES} while MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND (${messagesPerSecond}) is below it (a write carries up to ${RATE_LIMIT_MIN_MESSAGES} messages; 0 per second turns the limit off)`,
        params: { got: String(env.MEMQ_RATE_LIMIT_MESSAGES_BURST) },
      });
    }
    if (env.MEMQ_BACKPRESSURE_LOW_WATER >= env.MEMQ_BACKPRESSURE_HIGH_WATER) {
      ctx.addIssue({
        code: 'custom',
        path: ['MEMQ_BACKPRESSURE_LOW_WATER'],
        message: `expected an integer below MEMQ_BACKPRESSURE_HIGH_WATER (${env.MEMQ_BACKPRESSURE_HIGH_WATER})`,
        params: { got: String(env.MEMQ_BACKPRESSURE_LOW_WATER) },
      });
    }
  });

/** Variables whose values are never echoed in messages. */
const SECRET_VARS = new Set(['REDIS_URL', 'MEMQ_API_KEYS', 'MEMQ_BOARD_PASSWORD']);

/**
 * Resolves the environment configuration. Pure: reads only `env`.
 *
 * @param env Variables, e.g. `process.env` (passed by the CLI) or `{}` in tests. Empty strings
 *   count as unset.
 * @returns The frozen configuration with defaults applied (see {@link ENV_VARS}).
 * @throws ConfigError listing every invalid variable, one per line:
 *   `<NAME>: <what is allowed>, got <what was found>` (secrets are described, not echoed).
 */
export function loadEnvConfig(env: Record<string, string | undefined>): EnvConfig {
  const input: Record<string, string> = {};
  for (const { name } of ENV_VARS) {
    const value = env[name];
    if (value !== undefined && value !== '') input[name] = value;
  }
  const parsed = EnvSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? '');
      const params =
        issue.code === 'custom' ? (issue.params as { got?: unknown } | undefined) : undefined;
      const got =
        typeof params?.got === 'string'
          ? params.got
          : SECRET_VARS.has(name)
            ? 'an invalid value (not shown)'
            : JSON.stringify(input[name]);
      return `${name}: ${issue.message}, got ${got}`;
    });
    throw new ConfigError(lines.join('\n'), {
      details: { variables: parsed.error.issues.map((i) => i.path[0]) },
    });
  }
  const e = parsed.data;
  return Object.freeze({
    ...(e.REDIS_URL !== undefined ? { redisUrl: e.REDIS_URL } : {}),
    ...(e.REDIS_CLUSTER_NODES !== undefined
      ? { redisClusterNodes: Object.freeze(e.REDIS_CLUSTER_NODES) }
      : {}),
    memoriesDir: e.MEMQ_MEMORIES_DIR,
    port: e.PORT,
    host: e.HOST,
    keyPrefix: e.MEMQ_KEY_PREFIX,
    queuePrefix: e.MEMQ_QUEUE_PREFIX,
    appendConcurrency: e.MEMQ_APPEND_CONCURRENCY,
    tokenCountConcurrency: e.MEMQ_TOKEN_COUNT_CONCURRENCY,
    tokenCacheBytes: e.MEMQ_TOKEN_CACHE_BYTES,
    backpressureHighWaterJobs: e.MEMQ_BACKPRESSURE_HIGH_WATER,
    backpressureLowWaterJobs: e.MEMQ_BACKPRESSURE_LOW_WATER,
    backpressurePolicy: e.MEMQ_BACKPRESSURE_POLICY,
    backpressureProjectHighWaterJobs: e.MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER,
    backpressureMaxBytes: e.MEMQ_BACKPRESSURE_MAX_BYTES,
    backpressureProjectMaxBytes: e.MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES,
    shutdownGraceMs: e.MEMQ_SHUTDOWN_GRACE_MS,
    maintenanceIntervalMs: e.MEMQ_MAINTENANCE_INTERVAL_MS,
    idempotencyWindowMs: e.MEMQ_IDEMPOTENCY_WINDOW_MS,
    jobLockMs: e.MEMQ_JOB_LOCK_MS,
    tokenCountDelayMs: e.MEMQ_TOKEN_COUNT_DELAY_MS,
    project: e.MEMQ_PROJECT,
    ...(e.MEMQ_API_KEYS !== undefined ? { apiKeys: e.MEMQ_API_KEYS } : {}),
    ...(e.MEMQ_API_KEYS_FILE !== undefined ? { apiKeysFile: e.MEMQ_API_KEYS_FILE } : {}),
    boardUser: e.MEMQ_BOARD_USER,
    ...(e.MEMQ_BOARD_PASSWORD !== undefined ? { boardPassword: e.MEMQ_BOARD_PASSWORD } : {}),
    boardReadOnly: e.MEMQ_BOARD_READ_ONLY === 'true',
    maxBodyBytes: e.MEMQ_MAX_BODY_BYTES,
    maxMessageBytes: e.MEMQ_MAX_MESSAGE_BYTES,
    rateLimitRequestsPerSecond: e.MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND,
    rateLimitRequestsBurst: e.MEMQ_RATE_LIMIT_REQUESTS_BURST,
    rateLimitMessagesPerSecond: e.MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND,
    rateLimitMessagesBurst: e.MEMQ_RATE_LIMIT_MESSAGES_BURST,
    maxConcurrentWaits: e.MEMQ_MAX_CONCURRENT_WAITS,
    maxConcurrentDryRuns: e.MEMQ_MAX_CONCURRENT_DRY_RUNS,
    logLevel: e.MEMQ_LOG_LEVEL,
  });
}
