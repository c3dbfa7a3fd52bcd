/**
 * `connect()`: memq in-process, for a service that imports `memq` (docs/architecture.md,
 * "Surfaces and processes"). It validates its options, loads the memory resources and builds
 * the process through the composition root ({@link compose}) -- a producer, or with
 * `workers: true` a producer plus the workers (`memq start` without HTTP) -- and hands back the
 * {@link MemoryClient} with a `close()` that stops everything it started. Nothing here reads the
 * environment for configuration; `env` only supplies the secrets memory files name.
 */
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import {
  BACKPRESSURE_POLICIES,
  ENV_VARS,
  loadEnvConfig,
  type BackpressurePolicy,
  type EnvConfig,
} from '../config/env.js';
import {
  createMemoryRegistry,
  loadMemoryResources,
  type MemoryRegistry,
} from '../config/load-memories.js';
import { ConfigError } from '../core/errors.js';
import type { MemoryResource } from '../core/memory-resource.js';
import { createMetrics, METRIC_PREFIX, type MemqMetrics } from '../metrics/metrics.js';
import { resolveProviderApiKeys } from '../providers/api-keys.js';
import type { SentinelTarget } from '../redis/connection.js';
import type { MemoryClient } from '../../queues/memory-client.js';
import { closeInOrder, compose, type Composition, type RedisEndpoint } from './compose.js';

/**
 * Where Redis is: a `redis://` / `rediss://` URL (one server); `{ url, clusterNodes?, sentinel? }`
 * (the runtime's endpoint shape: with `clusterNodes`, a Redis Cluster whose credentials come from
 * `url`; with `sentinel` (`{ nodes: ['host:port', ...], name }`), the primary Redis Sentinel names
 * for the group, with `url`'s credentials, database and TLS); or `{ cluster: ['host:port', ...], username?, password?, tls? }` (a Redis Cluster).
 * On a cluster every memq key and queue is single-slot (hash tags in the prefixes).
 */
export type ConnectRedis =
  | string
  | {
      readonly url: string;
      readonly clusterNodes?: readonly string[];
      readonly sentinel?: SentinelTarget;
    }
  | {
      readonly cluster: readonly string[];
      readonly username?: string;
      readonly password?: string;
      /** `rediss://`: TLS to every node. Default false. */
      readonly tls?: boolean;
    };

/** Producer backpressure (the `MEMQ_BACKPRESSURE_*` variables; defaults as theirs). */
export interface ConnectBackpressure {
  /**
   * Backlog in messages (append and write jobs not yet started, every project) at or above which
   * appends and writes push back; default 10 000.
   */
  readonly highWaterMessages?: number;
  /** Backlog in messages a `wait` policy waits for; below `highWaterMessages`; default 5 000. */
  readonly lowWaterMessages?: number;
  /** `reject` (BackpressureError) or `wait` (for the low-water mark); default `reject`. */
  readonly policy?: BackpressurePolicy;
  /**
   * Messages of one project's append and write jobs not yet started at or above which its
   * appends and writes are refused; 0 = off; default 2 500.
   */
  readonly projectHighWaterMessages?: number;
  /** Bytes of append and write job data not yet started, all projects; 0 = off; default 1 GiB. */
  readonly maxBytes?: number;
  /** The same per project; 0 = off; default 256 MiB. */
  readonly projectMaxBytes?: number;
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** Where Redis is (see {@link ConnectRedis}). */
  readonly redis: ConnectRedis;
  /**
   * The memory resources: a directory of resource YAML files (as `MEMQ_MEMORIES_DIR`), a
   * `MemoryRegistry` (`loadMemoryResources(dir, env)` or `createMemoryRegistry(resources, env)`,
   * both exported by `memq`), or resolved resources (`parseMemoryResource(yamlText,
   * fileName).resource`, also exported by `memq`).
   */
  readonly memories: string | MemoryRegistry | readonly MemoryResource[];
  /** Project (tenant) the client acts for (`forProject` switches); default `default`. */
  readonly project?: string;
  /** Prefix of memory keys (`MEMQ_KEY_PREFIX`); default `memq:`. */
  readonly keyPrefix?: string;
  /** BullMQ prefix with a hash tag (`MEMQ_QUEUE_PREFIX`); default `{memq}`. */
  readonly queuePrefix?: string;
  /** Producer backpressure; unset fields take the `MEMQ_BACKPRESSURE_*` defaults. */
  readonly backpressure?: ConnectBackpressure;
  /** Run the BullMQ workers in this process too (as `memq start` without HTTP); default false (a producer only). */
  readonly workers?: boolean;
  /** pino logger for memq's records (job and memory ids, never content); default silent. */
  readonly log?: Logger;
  /**
   * prom-client registry memq registers its `memq_*` metrics on; default a private one. It must
   * not hold `memq_*` metrics already (one open `connect` per registry); `close()`, and a failed
   * `connect`, remove the ones this call registered.
   */
  readonly metricsRegistry?: Registry;
  /**
   * Where the secrets memory files name are read: `privacy_policy.hash_key_env` keys and, with
   * `workers`, provider API keys (`token_provider.api_key_env`, `flushing.summarizer.api_key_env`).
   * Default `process.env`.
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /**
   * The deadline of `close()`, ms from its call, shared by its steps (workers draining, client,
   * queues, Redis connections): what has not finished by then is abandoned and `close()`
   * resolves. 1 000-3 600 000; default 25 000 (as `MEMQ_SHUTDOWN_GRACE_MS`).
   */
  readonly shutdownGraceMs?: number;
  /**
   * Replica confirmation (as `MEMQ_WAIT_REPLICAS` / `MEMQ_WAIT_REPLICAS_TIMEOUT_MS`): `replicas`
   * (1-16) must confirm each enqueued append, write, clear or delete before it is acknowledged,
   * and each commit before a worker completes the job, within `timeoutMs` (1-4 000, default
   * 1 000) per `WAIT`; too few: `RedisUnavailableError` / a retried job. Not with a Redis
   * Cluster (ConfigError). Default: off (acknowledged by the primary alone).
   */
  readonly waitReplicas?: { readonly replicas: number; readonly timeoutMs?: number };
}

/** What {@link connect} returns: the client, whose `close()` stops what `connect` started. */
export interface Memq extends MemoryClient {
  /**
   * Stops in reverse start order -- workers (draining active jobs), client, queues, Redis
   * connections -- all within one deadline, `shutdownGraceMs` from the call: a failed step is
   * logged and the next still runs; what has not finished by its deadline is logged and
   * abandoned (its connections disconnected at once; BullMQ takes unfinished jobs back when
   * their locks expire), so `close()` resolves by the deadline. First of all, the `memq_*` metrics this connect registered on `metricsRegistry`
   * are removed from it (so it scrapes cleanly and can serve another `connect`). Idempotent:
   * later calls return the first call's promise.
   *
   * Only this `close()` releases anything. `forProject(other)` returns a view sharing these
   * connections, whose `close()` does nothing and which stops working when this one closes;
   * `forProject(project)` for this client's own project returns this client itself.
   */
  close(): Promise<void>;
}

/** The `EnvConfig` defaults (`loadEnvConfig({})`): what an option left out takes. */
const DEFAULTS: EnvConfig = loadEnvConfig({});

/** The string schema of the environment variable filling `property`, with its `allowed` text. */
function envSchema(property: 'project' | 'keyPrefix' | 'queuePrefix' | 'redisSentinelName') {
  const entry = ENV_VARS.find((candidate) => candidate.property === property)!;
  return z.string().refine((text) => entry.schema.safeParse(text).success, {
    error: `expected ${entry.allowed}`,
  });
}

/** A `redis://` or `rediss://` URL (never echoed: it may hold a password). */
const RedisUrlSchema = z.string().refine(
  (text) => {
    try {
      return ['redis:', 'rediss:'].includes(new URL(text).protocol);
    } catch {
      return false;
    }
  },
  { error: 'expected a redis:// or rediss:// URL' },
);

/** `host:port` of a cluster node (as `REDIS_CLUSTER_NODES`). */
const NodesSchema = z
  .array(z.string().regex(/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/, { error: 'expected host:port' }))
  .min(1);

const count = (min: number) => z.number().int().min(min).max(Number.MAX_SAFE_INTEGER);

const isFunctions = (value: unknown, names: readonly string[]) =>
  typeof value === 'object' &&
  value !== null &&
  names.every((name) => typeof (value as Record<string, unknown>)[name] === 'function');

/** {@link ConnectOptions} as validated before anything is opened. */
const ConnectOptionsSchema = z.strictObject({
  redis: z.union(
    [
      RedisUrlSchema,
      z
        .strictObject({
          url: RedisUrlSchema,
          clusterNodes: NodesSchema.optional(),
          sentinel: z
            .strictObject({ nodes: NodesSchema, name: envSchema('redisSentinelName') })
            .optional(),
        })
        .refine((redis) => !(redis.clusterNodes && redis.sentinel), {
          error: 'expected clusterNodes or sentinel, not both',
        }),
      z.strictObject({
        cluster: NodesSchema,
        username: z.string().min(1).optional(),
        password: z.string().min(1).optional(),
        tls: z.boolean().optional(),
      }),
    ],
    {
      error:
        'expected a redis:// or rediss:// URL, { url, clusterNodes?, sentinel? } or { cluster: ["host:port", ...], username?, password?, tls? }',
    },
  ),
  memories: z.union(
    [
      z.string().min(1),
      z.custom<MemoryRegistry>((value) => isFunctions(value, ['get', 'has', 'list'])),
      z.array(
        z.custom<MemoryResource>((value) => typeof (value as MemoryResource)?.id === 'string'),
      ),
    ],
    { error: 'expected a directory path, a MemoryRegistry or an array of memory resources' },
  ),
  project: envSchema('project').optional(),
  keyPrefix: envSchema('keyPrefix').optional(),
  queuePrefix: envSchema('queuePrefix').optional(),
  backpressure: z
    .strictObject({
      highWaterMessages: count(1).optional(),
      lowWaterMessages: count(0).optional(),
      policy: z.enum(BACKPRESSURE_POLICIES).optional(),
      projectHighWaterMessages: count(0).optional(),
      maxBytes: count(0).optional(),
      projectMaxBytes: count(0).optional(),
    })
    .superRefine((bp, ctx) => {
      // As the MEMQ_BACKPRESSURE_LOW_WATER rule, over the values in effect (defaults included).
      const high = bp.highWaterMessages ?? DEFAULTS.backpressureHighWaterMessages;
      const low = bp.lowWaterMessages ?? DEFAULTS.backpressureLowWaterMessages;
      if (low >= high) {
        ctx.addIssue({
          code: 'custom',
          path: ['lowWaterMessages'],
          message: `expected below highWaterMessages (${high}), got ${low}`,
        });
      }
    })
    .optional(),
  workers: z.boolean().optional(),
  log: z
    .custom<Logger>((value) => isFunctions(value, ['info', 'warn', 'error', 'child']), {
      error: 'expected a pino logger',
    })
    .optional(),
  metricsRegistry: z
    .custom<Registry>((value) => isFunctions(value, ['getSingleMetric', 'registerMetric']), {
      error: 'expected a prom-client Registry',
    })
    .optional(),
  env: z.record(z.string(), z.string().optional()).optional(),
  shutdownGraceMs: count(1000).max(3_600_000).optional(),
  waitReplicas: z
    .strictObject({
      replicas: count(1).max(16),
      timeoutMs: count(1).max(4000).optional(),
    })
    .optional(),
});

/**
 * Validates `options` or throws ConfigError with one line per problem, `connect: <option path>:
 * <what is allowed>` (values are not echoed: `redis` may hold a password), and
 * `details.options` listing the paths.
 */
function parseOptions(options: unknown): z.output<typeof ConnectOptionsSchema> {
  const parsed = ConnectOptionsSchema.safeParse(options);
  if (parsed.success) return parsed.data;
  const paths = parsed.error.issues.map((issue) => issue.path.join('.') || '(options)');
  const lines = parsed.error.issues.map(
    (issue, i) => `connect: ${paths[i]}: ${issue.message.replace(/^Invalid input: /, '')}`,
  );
  throw new ConfigError(lines.join('\n'), { details: { options: paths } });
}

/**
 * The compose endpoint of a validated `redis` option (exported for tests): a URL as is; `{ url,
 * clusterNodes? }` as is; `{ cluster, username?, password?, tls? }` as a `redis://` (or with
 * `tls`, `rediss://`) URL of the first node carrying the percent-encoded credentials, plus the
 * nodes -- `createRedis` turns `rediss:` into TLS on every node.
 */
export function endpointOf(redis: ConnectRedis): RedisEndpoint {
  if (typeof redis === 'string') return { url: redis };
  if ('url' in redis) {
    return {
      url: redis.url,
      ...(redis.clusterNodes ? { clusterNodes: redis.clusterNodes } : {}),
      ...(redis.sentinel ? { sentinel: redis.sentinel } : {}),
    };
  }
  const auth =
    redis.password !== undefined || redis.username !== undefined
      ? `${encodeURIComponent(redis.username ?? '')}:${encodeURIComponent(redis.password ?? '')}@`
      : '';
  return {
    url: `${redis.tls ? 'rediss' : 'redis'}://${auth}${redis.cluster[0]!}`,
    clusterNodes: redis.cluster,
  };
}

/**
 * Connects to Redis and starts memq in this process: a producer client, and with
 * `workers: true` the BullMQ workers and the maintenance schedule as well (wired by
 * {@link compose}, as `memq start` / `work` are, without HTTP).
 *
 * Order: options validated (zod) -> memory resources loaded -> provider API keys resolved (with
 * workers) -> Redis connections opened and pinged -> queues, client, schedule, workers. A problem
 * before the connections leaves nothing open; a failure after closes what was started.
 *
 * @example
 * const memq = await connect({ redis: 'redis://127.0.0.1:6379', memories: './memories', project: 'acme' });
 * const receipt = await memq.append({ resource: 'customer-support', key: 'support:42' }, [{ role: 'user', content: 'hi' }]);
 * await memq.waitFor(receipt); // this append's { added, duplicates }
 * await memq.close();
 *
 * @throws ConfigError (`CONFIG_INVALID`) for invalid options (naming each option), invalid or
 *   missing memory resources, a missing `hash_key_env` secret, or (with workers) a missing
 *   provider API key; nothing is opened.
 * @throws ConfigError (`CONFIG_INVALID`) naming `metricsRegistry` when that registry holds memq's
 *   metrics already (another `connect` on it is open); nothing is opened.
 * @throws RedisUnavailableError (`REDIS_UNAVAILABLE`) when Redis does not answer PING within
 *   10 s (`START_PING_TIMEOUT_MS`, src/runtime/compose.ts) -- at once when the connection is
 *   refused; the message names host and port and the connection error (`cause`). What was opened
 *   is closed and the metrics are removed again.
 */
export async function connect(options: ConnectOptions): Promise<Memq> {
  const given = parseOptions(options);
  const secrets = given.env ?? process.env;
  const log = given.log ?? pino({ level: 'silent' });
  const workers = given.workers ?? false;

  let registry: MemoryRegistry;
  if (typeof given.memories === 'string') {
    registry = await loadMemoryResources(given.memories, secrets);
  } else if (Array.isArray(given.memories)) {
    registry = createMemoryRegistry(given.memories, secrets);
  } else {
    registry = given.memories;
  }
  const providerKeys = workers ? resolveProviderApiKeys(registry, secrets) : undefined;

  const bp = given.backpressure ?? {};
  const env: EnvConfig = Object.freeze({
    ...DEFAULTS,
    project: given.project ?? DEFAULTS.project,
    keyPrefix: given.keyPrefix ?? DEFAULTS.keyPrefix,
    queuePrefix: given.queuePrefix ?? DEFAULTS.queuePrefix,
    backpressureHighWaterMessages: bp.highWaterMessages ?? DEFAULTS.backpressureHighWaterMessages,
    backpressureLowWaterMessages: bp.lowWaterMessages ?? DEFAULTS.backpressureLowWaterMessages,
    backpressurePolicy: bp.policy ?? DEFAULTS.backpressurePolicy,
    backpressureProjectHighWaterMessages:
      bp.projectHighWaterMessages ?? DEFAULTS.backpressureProjectHighWaterMessages,
    backpressureMaxBytes: bp.maxBytes ?? DEFAULTS.backpressureMaxBytes,
    backpressureProjectMaxBytes: bp.projectMaxBytes ?? DEFAULTS.backpressureProjectMaxBytes,
    shutdownGraceMs: given.shutdownGraceMs ?? DEFAULTS.shutdownGraceMs,
    waitReplicas: given.waitReplicas?.replicas ?? DEFAULTS.waitReplicas,
    waitReplicasTimeoutMs: given.waitReplicas?.timeoutMs ?? DEFAULTS.waitReplicasTimeoutMs,
  });

  const metricsRegistry = given.metricsRegistry;
  const releaseMetrics = metricsReleaser(metricsRegistry);
  let graph: Composition;
  try {
    let metrics: MemqMetrics;
    try {
      metrics = createMetrics(metricsRegistry ? { registry: metricsRegistry } : {});
    } catch (error) {
      throw new ConfigError(
        `connect: metricsRegistry: ${error instanceof Error ? error.message : String(error)} (another connect on this registry is still open: close it first)`,
        { details: { options: ['metricsRegistry'] }, cause: error },
      );
    }
    graph = await compose({
      env,
      redis: endpointOf(given.redis),
      registry,
      log,
      workers,
      ...(providerKeys ? { providerKeys } : {}),
      metrics,
    });
  } catch (error) {
    releaseMetrics();
    throw error;
  }

  let closing: Promise<void> | undefined;
  const memq: Memq = {
    ...graph.client,
    forProject: (project) => viewOf(project),
    close() {
      closing ??= (async () => {
        // First, so a scrape during or after close never reaches the closing queues.
        releaseMetrics();
        await closeInOrder(graph.closables, env.shutdownGraceMs, log, 'close');
      })();
      return closing;
    },
  };
  // Views answer from the client's own per-project cache (graph.client.forProject validates the
  // name); the root project is `memq` itself, so no view hands out the inner client's close().
  const views = new Map<string, MemoryClient>();
  const viewOf = (project: string): MemoryClient => {
    const inner = graph.client.forProject(project);
    if (project === memq.project) return memq;
    let view = views.get(project);
    if (!view) {
      view = { ...inner, forProject: viewOf, close: () => Promise.resolve() };
      views.set(project, view);
    }
    return view;
  };
  return memq;
}

/**
 * A function removing from `registry` the `memq_*` metrics registered after this call (the ones
 * {@link createMetrics} adds), so the caller's registry can be scraped after `close()` and passed
 * to another `connect`. Metrics the registry held before are left alone. Nothing to do without a
 * caller's registry (the private one goes with the process).
 */
function metricsReleaser(registry: Registry | undefined): () => void {
  if (!registry) return () => undefined;
  const before = new Set(registry.getMetricsAsArray().map((metric) => metric.name));
  return () => {
    for (const { name } of registry.getMetricsAsArray()) {
      if (name.startsWith(METRIC_PREFIX) && !before.has(name)) registry.removeSingleMetric(name);
    }
  };
}
