/**
 * The composition root: the one module that builds memq's dependency graph from the parsed
 * environment (`EnvConfig`, read once by the CLI) and hands every part its dependencies
 * (docs/architecture.md, "Lifecycle"). Start order: Redis connections -> stores -> metrics ->
 * queues and producer client -> maintenance schedule -> workers -> HTTP. What it starts comes
 * back as closables in reverse start order. Nothing below this module reads the environment,
 * builds its own queues or checks an API key.
 */
import type { Logger } from 'pino';
import { Cluster, type Redis } from 'ioredis';
import {
  RATE_LIMIT_BURST_WINDOW_SECONDS,
  type ApiKeyGrant,
  type EnvConfig,
} from '../config/env.js';
import type { MemoryRegistry } from '../config/load-memories.js';
import { RedisUnavailableError } from '../core/errors.js';
import type { HttpServer } from '../http/app.js';
import type { TenantLimitSettings } from '../http/rate-limit.js';
import { createMetrics, QUEUE_DEPTH_DEADLINE_MS, type MemqMetrics } from '../metrics/metrics.js';
import { NO_PROVIDER_API_KEYS, type ProviderApiKeys } from '../providers/api-keys.js';
import { createResourceSummarizers } from '../providers/summarizers.js';
import {
  closeRedis,
  createRedis,
  type RedisConnection,
  type SentinelTarget,
} from '../redis/connection.js';
import {
  abandonConnection,
  abandonDuplicates,
  createRedisOutageReporter,
} from '../redis/redis-outage.js';
import { replicaConfirmation } from '../redis/replicas.js';
import type { MemoryRef } from '../redis/keys.js';
import { createLockService, type LockService } from '../redis/lock-service.js';
import { createMaintenanceStore, type MaintenanceStore } from '../store/maintenance-store.js';
import { createMemoryStore, type MemoryStore } from '../store/memory-store.js';
import { createTokenCounters } from '../tokens/resource-counters.js';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { createMemoryQueues, type MemoryQueues } from '../../queues/memory-queues.js';
import { createRedisGuard } from '../../queues/redis-guard.js';
import { upsertMaintenanceSchedule } from '../../queues/schedules.js';
import { queueJobKeys } from '../../processors/cleanup.js';
import { startWorkers, type Workers } from '../../processors/workers.js';

/** Something the composition started; closed in the order {@link Composition.closables} lists. */
export interface Closable {
  /** Name of the shutdown step, for logs: `workers`, `http`, `client`, `queues`, `redis`. */
  readonly name: string;
  /** Stops it, waiting for what it has in hand (active jobs, requests, replies). Idempotent. */
  close(): Promise<void>;
  /**
   * Called once as the shutdown begins, before any step closes, on every step: announces the
   * shutdown without stopping anything (the HTTP server's `/readyz` answers 503 from then on).
   * Must not wait or throw.
   */
  drain?(): void;
  /**
   * Called when {@link close} did not finish by the step's deadline, or the deadline passed before
   * its turn: stops what is left at once (sockets, reconnecting connections, the commands waiting
   * on them) so nothing of it keeps the process alive. Must not wait or throw.
   */
  abandon?(): void;
}

/** What {@link closeInOrder} did. */
export interface ShutdownOutcome {
  /** True when every step closed in time and none failed. */
  readonly clean: boolean;
  /** Steps abandoned at their deadline (late, or not reached in time), in order. */
  readonly abandoned: readonly string[];
  /** Steps whose close threw (logged at error), in order. */
  readonly failed: readonly string[];
  /** From the call to the end of the last step or abandonment, ms. */
  readonly elapsedMs: number;
}

/**
 * Longest time {@link closeInOrder} holds back for each step after the current one, ms: 1 000,
 * or an eighth of the budget per step when that is less. A step that hangs (a drain waiting on a
 * Redis that is gone) stops at the overall deadline minus this reserve per later step, so the
 * later steps -- quick when Redis answers (QUIT, bounded by `QUIT_TIMEOUT_MS`) -- still get to
 * close cleanly; time a step does not use passes on to the next.
 */
export const STEP_RESERVE_MS = 1_000;

/**
 * Closes `closables` one after another, in the order given, all within one deadline `graceMs`
 * from the call (docs/operations.md, "Shutdown"). First every step's `drain` is called. Step
 * `i` of `n` may run until the deadline minus `min(STEP_RESERVE_MS, graceMs / (8 * n))` per step
 * after it; a step still running then is logged at warn and abandoned, as is a step whose turn
 * comes too late, and after the last step every abandoned step's `abandon` is called. A step
 * that throws is logged at error; the next step runs either way. Ends with one line: `info`
 * "<what> complete" when clean, else `warn` "<what> incomplete" naming the abandoned and failed
 * steps. Never throws.
 * @param graceMs The whole budget, ms (`MEMQ_SHUTDOWN_GRACE_MS`).
 * @param what Names the shutdown in the log lines, e.g. `shutdown` or `close`.
 */
export async function closeInOrder(
  closables: readonly Closable[],
  graceMs: number,
  log: Logger,
  what = 'shutdown',
): Promise<ShutdownOutcome> {
  const started = Date.now();
  const deadline = started + graceMs;
  const reserveMs = Math.min(STEP_RESERVE_MS, graceMs / (8 * Math.max(1, closables.length)));
  const abandoned: Closable[] = [];
  const failed: string[] = [];
  for (const closable of closables) {
    try {
      closable.drain?.();
    } catch {
      // drain must not throw; a broken one does not stop the shutdown.
    }
  }
  for (const [index, closable] of closables.entries()) {
    const stepDeadline = deadline - reserveMs * (closables.length - 1 - index);
    const budgetMs = stepDeadline - Date.now();
    if (budgetMs <= 0) {
      // Started all the same (what it stops at once, it stops), then abandoned with the rest.
      closable.close().catch(() => undefined);
      abandoned.push(closable);
      continue;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), budgetMs);
      timer.unref();
    });
    try {
      if ((await Promise.race([closable.close().then(() => 'done' as const), late])) === 'late') {
        abandoned.push(closable);
        log.warn(
          { step: closable.name, budget_ms: Math.round(budgetMs) },
          `${what} step did not finish by its deadline; abandoning it`,
        );
      }
    } catch (error) {
      failed.push(closable.name);
      log.error(
        { step: closable.name, err: error instanceof Error ? error.message : String(error) },
        `${what} step failed; continuing`,
      );
    } finally {
      clearTimeout(timer);
    }
  }
  for (const closable of abandoned) {
    try {
      closable.abandon?.();
    } catch {
      // abandon must not throw; what it could not stop, the process exit does.
    }
  }
  const outcome: ShutdownOutcome = {
    clean: abandoned.length === 0 && failed.length === 0,
    abandoned: abandoned.map((closable) => closable.name),
    failed,
    elapsedMs: Date.now() - started,
  };
  if (outcome.clean) {
    log.info({ elapsed_ms: outcome.elapsedMs }, `${what} complete`);
  } else {
    log.warn(
      {
        abandoned: outcome.abandoned,
        failed,
        grace_ms: graceMs,
        elapsed_ms: outcome.elapsedMs,
      },
      `${what} incomplete: abandoned what did not finish by the deadline (BullMQ takes unfinished jobs back when their locks expire)`,
    );
  }
  return outcome;
}

/** Settings of the HTTP server (API, Bull Board, metrics, health) a process may start. */
export interface HttpSettings {
  /** Listen port; 0 = any free port. */
  readonly port: number;
  /** Listen address; default `env.host` (`HOST`, 127.0.0.1: loopback only). */
  readonly host?: string;
  /** API key -> grant. */
  readonly apiKeys: ReadonlyMap<string, ApiKeyGrant>;
  /** Bull Board credentials and mode. */
  readonly board: { readonly user: string; readonly password: string; readonly readOnly: boolean };
}

/** Where to connect: {@link compose} opens a producer and a worker connection and closes them. */
export interface RedisEndpoint {
  /** Redis URL (with cluster nodes: where credentials come from). */
  readonly url: string;
  /** Redis Cluster seed nodes (`host:port`); absent = one server at `url`. */
  readonly clusterNodes?: readonly string[];
  /**
   * Redis Sentinel: the primary the sentinels name for the group (`url`: its credentials, database
   * and TLS); not with {@link clusterNodes}.
   */
  readonly sentinel?: SentinelTarget;
}

/** Connections owned by the caller: {@link compose} uses them and never closes them. */
export interface GivenConnections {
  /** Producer-role connection (fail-fast): stores, queues, client, HTTP. */
  readonly producer: RedisConnection;
  /** Worker-role connection (`maxRetriesPerRequest: null`): the workers' store, locks, BullMQ workers. */
  readonly worker: RedisConnection;
}

/** Options of {@link compose}. */
export interface ComposeOptions {
  /** The parsed environment (prefixes, project, concurrency, limits, intervals). */
  readonly env: EnvConfig;
  /** Where Redis is: an endpoint to connect to, or connections the caller owns. */
  readonly redis: RedisEndpoint | GivenConnections;
  /** Declared memory resources. */
  readonly registry: MemoryRegistry;
  /** Process logger. */
  readonly log: Logger;
  /** Start the BullMQ workers (`memq start` / `work`); false for a producer only (`serve`). */
  readonly workers: boolean;
  /**
   * The API keys the resources need (`resolveProviderApiKeys`, at start-up); only the workers
   * use them. Default none: a resource with a remote token provider then fails the start.
   */
  readonly providerKeys?: ProviderApiKeys;
  /** Upsert the maintenance schedule; default {@link workers}. */
  readonly maintenanceSchedule?: boolean;
  /** The process's instruments; default a fresh set with Node's process metrics. */
  readonly metrics?: MemqMetrics;
  /** Start the HTTP server (`memq start` / `serve`); absent = none. */
  readonly http?: HttpSettings;
}

/** The built graph of one memq process. */
export interface Composition {
  /** Producer connection (fail-fast). */
  readonly producerConnection: RedisConnection;
  /** Store on the producer connection (reads, verification). */
  readonly store: MemoryStore;
  /** The process's instruments (`/metrics`). */
  readonly metrics: MemqMetrics;
  /** The process's one set of queues: the client, the workers and Bull Board share it. */
  readonly queues: MemoryQueues;
  /** The producer client (enqueues on {@link queues}). */
  readonly client: MemoryClient;
  /** The workers and what they hold, when composed with `workers: true`. */
  readonly workerGraph: WorkerGraph | undefined;
  /** The HTTP server, when composed with `http`. */
  readonly http: HttpServer | undefined;
  /** What was started, in reverse start order: close them in this order. */
  readonly closables: readonly Closable[];
}

/**
 * The environment settings the workers use; `waitReplicas` (default 0, off) and
 * `waitReplicasTimeoutMs` (default 1000) may be left out.
 */
export type WorkerEnv = Pick<
  EnvConfig,
  | 'keyPrefix'
  | 'queuePrefix'
  | 'appendConcurrency'
  | 'tokenCountConcurrency'
  | 'jobLockMs'
  | 'idempotencyWindowMs'
  | 'tokenCacheBytes'
> &
  Partial<Pick<EnvConfig, 'waitReplicas' | 'waitReplicasTimeoutMs'>>;

/** Options of {@link composeWorkers}. */
export interface WorkerGraphOptions {
  /** Worker-role connection, owned by the caller. */
  readonly connection: RedisConnection;
  /** The process's queues, owned by the caller. */
  readonly queues: MemoryQueues;
  /** Store the processors commit to. */
  readonly store: MemoryStore;
  /** Declared resources. */
  readonly registry: MemoryRegistry;
  /** Worker settings from the environment. */
  readonly env: WorkerEnv;
  /** API keys of the resources' providers (`resolveProviderApiKeys`). */
  readonly providerKeys: ProviderApiKeys;
  /** Instruments. */
  readonly metrics: MemqMetrics;
  /** Base logger. */
  readonly log: Logger;
}

/** Running workers with what they hold. */
export interface WorkerGraph {
  /** The BullMQ workers. */
  readonly workers: Workers;
  /** The instance locks the flush and cleanup processors take. */
  readonly locks: LockService;
  /**
   * Closes the workers (draining active jobs unless `force`), then the token counters, the
   * summarizers' breakers and the lock service. Idempotent.
   */
  close(force?: boolean): Promise<void>;
  /**
   * For a shutdown past its deadline: disconnects the workers' own connections (BullMQ's
   * duplicates of the worker connection) at once, so a close waiting on Redis unwinds, and
   * closes the counters, breakers and lock service without waiting. Never throws.
   */
  abandon(): void;
}

/**
 * The `scrubJobs` of the cleanup processor: `MaintenanceStore.scrubJobs` over the two queues
 * whose jobs carry messages, `memory-append` (append) and `memory-cleanup` (write).
 */
export function jobScrubber(
  maintenance: MaintenanceStore,
  queues: Pick<MemoryQueues, 'append' | 'cleanup'>,
): (ref: MemoryRef, erasedAtMs: number) => Promise<number> {
  const keys = [queueJobKeys(queues.append), queueJobKeys(queues.cleanup)];
  return (ref, erasedAtMs) => maintenance.scrubJobs(ref, erasedAtMs, keys);
}

/**
 * Builds what the workers need -- lock service (recording lock metrics), token counters (with
 * the provider keys), summarizers, maintenance store, job scrubber -- waits until the counters
 * are ready (`TokenCounters.ready`: at once, as the counting thread loads the tokenizers on its
 * first count, off the event loop), then starts the workers.
 * @throws ConfigError when a remote provider or summarizer has no key in `providerKeys`
 *   (nothing is left running).
 */
export async function composeWorkers(options: WorkerGraphOptions): Promise<WorkerGraph> {
  const { connection, env, metrics, log, registry } = options;
  const summarizers = createResourceSummarizers({
    registry,
    apiKeys: options.providerKeys.summarizers,
    metrics,
    log,
  });
  let counters: ReturnType<typeof createTokenCounters>;
  try {
    counters = createTokenCounters({
      registry,
      apiKeys: options.providerKeys.tokenProviders,
      cacheBytes: env.tokenCacheBytes,
      metrics,
      log,
    });
  } catch (error) {
    summarizers.close();
    throw error;
  }
  const locks = createLockService({
    redis: connection,
    keyPrefix: env.keyPrefix,
    onEvent(event) {
      metrics.lockEvents.inc({ operation: event.operation, event: event.type });
      if (event.waitedMs !== undefined) {
        metrics.lockWait.observe({ operation: event.operation }, event.waitedMs / 1000);
      }
    },
  });
  let heldClosing: Promise<void> | undefined;
  const closeHeld = () =>
    (heldClosing ??= (async () => {
      await counters.close();
      summarizers.close();
      await locks.close();
    })());
  try {
    await counters.ready;
  } catch (error) {
    await closeHeld();
    throw error;
  }
  const maintenance = createMaintenanceStore({ redis: connection, keyPrefix: env.keyPrefix });
  const waitReplicas = replicaConfirmation(env);
  const workers = startWorkers(
    {
      connection,
      queuePrefix: env.queuePrefix,
      queues: options.queues,
      store: options.store,
      maintenance,
      registry,
      locks,
      counters,
      summarizers,
      scrubJobs: jobScrubber(maintenance, options.queues),
      metrics,
      log,
    },
    {
      concurrency: { append: env.appendConcurrency, tokenCount: env.tokenCountConcurrency },
      lockDurationMs: env.jobLockMs,
      idempotencyWindowMs: env.idempotencyWindowMs,
      ...(waitReplicas ? { waitReplicas } : {}),
    },
  );
  let closing: Promise<void> | undefined;
  return {
    workers,
    locks,
    close(force = false) {
      closing ??= (async () => {
        await workers.close(force);
        await closeHeld();
      })();
      return closing;
    },
    abandon() {
      abandonDuplicates(connection);
      closeHeld().catch(() => undefined);
    },
  };
}

/**
 * The HTTP tenant limits of `env`: `MEMQ_RATE_LIMIT_*` (per second, plus the burst per
 * `RATE_LIMIT_BURST_WINDOW_SECONDS`; 0 per second = off) and `MEMQ_MAX_CONCURRENT_*`.
 */
export function tenantLimitSettings(env: EnvConfig): TenantLimitSettings {
  const rate = (perSecond: number, burst: number) =>
    perSecond > 0
      ? {
          points: perSecond,
          windowSeconds: 1,
          burstPoints: burst,
          burstWindowSeconds: RATE_LIMIT_BURST_WINDOW_SECONDS,
        }
      : undefined;
  const requests = rate(env.rateLimitRequestsPerSecond, env.rateLimitRequestsBurst);
  const messages = rate(env.rateLimitMessagesPerSecond, env.rateLimitMessagesBurst);
  return {
    keyPrefix: env.keyPrefix,
    ...(requests ? { requests } : {}),
    ...(messages ? { messages } : {}),
    waitsPerProject: env.maxConcurrentWaits,
    dryRunsPerProject: env.maxConcurrentDryRuns,
  };
}

/**
 * Longest {@link compose} waits for the connections it opens to answer PING, ms: two producer
 * connect attempts of 5 s each (`connectTimeout` and `maxRetriesPerRequest: 1`,
 * src/redis/connection.ts). The worker connection never gives up a command on its own, and a
 * Redis Cluster client keeps retrying its seed nodes, so without this bound a start against an
 * unreachable Redis would never end.
 */
export const START_PING_TIMEOUT_MS = 10_000;

/** `host:port` of the endpoint, for messages (never the URL: it may hold a password). */
function describeEndpoint(endpoint: RedisEndpoint): string {
  if (endpoint.clusterNodes) return `Redis Cluster (${endpoint.clusterNodes.join(', ')})`;
  if (endpoint.sentinel) {
    return `Redis primary ${endpoint.sentinel.name} of Sentinel (${endpoint.sentinel.nodes.join(', ')})`;
  }
  const url = new URL(endpoint.url);
  return `Redis at ${url.hostname}:${url.port || '6379'}`;
}

/**
 * Logs a warning when the primary has fewer connected replicas than `MEMQ_WAIT_REPLICAS` asks to
 * confirm (`INFO replication`, `connected_slaves`): every acknowledged write would then answer 503
 * after the `WAIT` timeout, and start-up is where an operator looks. Only warns: a replica may
 * be reconnecting. Never throws (a failed `INFO` is left to the first real command).
 */
async function warnOfMissingReplicas(
  producer: Redis,
  replicas: number,
  log: Logger,
): Promise<void> {
  try {
    const info = await producer.info('replication');
    const connected = Number(/^connected_slaves:(\d+)/m.exec(info)?.[1] ?? 0);
    if (connected < replicas) {
      log.warn(
        { connectedReplicas: connected, waitReplicas: replicas },
        'MEMQ_WAIT_REPLICAS asks more replicas to confirm than the primary has connected: acknowledged writes will answer 503 until enough replicas connect',
      );
    }
  } catch {
    // The connection's own error handling reports an unreachable Redis.
  }
}

/**
 * PINGs every connection, under {@link START_PING_TIMEOUT_MS}.
 * @throws RedisUnavailableError naming the endpoint (host and port only) and the connection
 *   error (e.g. `connect ECONNREFUSED 127.0.0.1:1`), with the error as `cause`.
 */
async function pingAll(
  endpoint: RedisEndpoint,
  connections: readonly RedisConnection[],
): Promise<void> {
  let lastError: Error | undefined;
  const record = (error: Error) => {
    lastError = error;
  };
  for (const connection of connections) connection.on('error', record);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${START_PING_TIMEOUT_MS} ms`)),
      START_PING_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([Promise.all(connections.map((c) => c.ping())), late]);
  } catch (error) {
    // The connection error says why (refused, DNS, TLS, auth); the command's own error after
    // its retries ("Reached the max retries per request limit") does not.
    const cause = lastError ?? error;
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new RedisUnavailableError(
      `${describeEndpoint(endpoint)} did not answer PING: ${reason}`,
      { cause },
    );
  } finally {
    clearTimeout(timer);
    for (const connection of connections) connection.off('error', record);
  }
}

/**
 * The shutdown order of `started` (reverse start order): the same, except that the HTTP server
 * closes right after the workers have drained instead of before them, so that during the drain
 * `/readyz` answers 503 (load balancers stop sending) and `/healthz` 200 on a server that still
 * listens (docs/operations.md, "Shutdown").
 */
function shutdownOrder(started: readonly Closable[]): Closable[] {
  const order = started.filter((closable) => closable.name !== 'http');
  const http = started.find((closable) => closable.name === 'http');
  if (!http) return order;
  const workers = order.findIndex((closable) => closable.name === 'workers');
  order.splice(workers + 1, 0, http);
  return order;
}

/**
 * Builds and starts one memq process in start order (see the module comment). With
 * `workers: false` (a producer only) no schedule is set and no worker is built. If a step
 * fails, what was started is closed in reverse and the error is rethrown.
 * @throws ConfigError when a remote provider or summarizer has no key in `providerKeys`;
 *   RedisUnavailableError when the connections opened for a {@link RedisEndpoint} do not answer
 *   PING within {@link START_PING_TIMEOUT_MS} (they are closed again); the listen error (e.g.
 *   EADDRINUSE).
 */
export async function compose(options: ComposeOptions): Promise<Composition> {
  const { env, log, registry } = options;
  const started: Closable[] = [];
  const begun = (
    name: string,
    close: () => Promise<unknown>,
    abandon?: () => void,
    drain?: () => void,
  ) =>
    started.unshift({
      name,
      close: async () => void (await close()),
      ...(abandon ? { abandon } : {}),
      ...(drain ? { drain } : {}),
    });
  try {
    let producer: RedisConnection;
    let worker: RedisConnection;
    if ('url' in options.redis) {
      const cluster = {
        ...(options.redis.clusterNodes ? { clusterNodes: options.redis.clusterNodes } : {}),
        ...(options.redis.sentinel ? { sentinel: options.redis.sentinel } : {}),
      };
      // One reporter for every connection of the process, BullMQ's duplicates included: an
      // outage is logged once, with reminders, and once when it is over.
      const outages = createRedisOutageReporter({ log });
      producer = createRedis({ url: options.redis.url, ...cluster, role: 'producer', outages });
      worker = createRedis({ url: options.redis.url, ...cluster, role: 'worker', outages });
      const opened = [producer, worker];
      begun(
        'redis',
        () => Promise.all(opened.map((c) => closeRedis(c))),
        () => {
          for (const connection of opened) abandonConnection(connection);
        },
      );
      await pingAll(options.redis, opened);
    } else {
      ({ producer, worker } = options.redis);
    }

    const store = createMemoryStore({ redis: producer, keyPrefix: env.keyPrefix });
    const metrics = options.metrics ?? createMetrics({ processMetrics: true });
    const confirmation = replicaConfirmation(env);
    if (confirmation && !(producer instanceof Cluster)) {
      await warnOfMissingReplicas(producer, confirmation.replicas, log);
    }

    const queues = createMemoryQueues(producer, env.queuePrefix);
    begun('queues', () => queues.close());
    // A scrape must not wait on Redis: bounded, and at once refused while it is known to be down.
    const depthGuard = createRedisGuard(producer, QUEUE_DEPTH_DEADLINE_MS);
    metrics.setQueueDepthSource(() => depthGuard('queue depths', () => queues.depths()));
    const client = createMemoryClient({
      connection: producer,
      queuePrefix: env.queuePrefix,
      queues,
      registry,
      project: env.project,
      store,
      metrics,
      appendBatch: { maxMessages: env.appendBatchMaxMessages, maxBytes: env.appendBatchMaxBytes },
      ...(confirmation ? { waitReplicas: confirmation } : {}),
      backpressure: {
        highWaterMessages: env.backpressureHighWaterMessages,
        lowWaterMessages: env.backpressureLowWaterMessages,
        policy: env.backpressurePolicy,
        projectHighWaterMessages: env.backpressureProjectHighWaterMessages,
        maxBytes: env.backpressureMaxBytes,
        projectMaxBytes: env.backpressureProjectMaxBytes,
      },
    });
    begun('client', () => client.close());

    if (options.maintenanceSchedule ?? options.workers) {
      await upsertMaintenanceSchedule(queues, env.maintenanceIntervalMs);
    }

    let workerGraph: WorkerGraph | undefined;
    if (options.workers) {
      const graph = await composeWorkers({
        connection: worker,
        queues,
        store: createMemoryStore({ redis: worker, keyPrefix: env.keyPrefix }),
        registry,
        env,
        providerKeys: options.providerKeys ?? NO_PROVIDER_API_KEYS,
        metrics,
        log,
      });
      workerGraph = graph;
      begun(
        'workers',
        () => graph.close(),
        () => graph.abandon(),
      );
    }

    let http: HttpServer | undefined;
    if (options.http) {
      // Imported here: a workers-only process (memq work) never loads express and Bull Board.
      const { createHttpApp, listen } = await import('../http/app.js');
      let draining = false;
      const app = createHttpApp({
        draining: () => draining,
        client,
        queues,
        registry,
        redis: producer,
        metrics,
        log,
        apiKeys: options.http.apiKeys,
        board: options.http.board,
        maxBodyBytes: env.maxBodyBytes,
        maxMessageBytes: env.maxMessageBytes,
        limits: tenantLimitSettings(env),
      });
      const server = await listen(app, options.http.port, options.http.host ?? env.host);
      http = server;
      begun(
        'http',
        () => server.close(),
        () => server.abandon(),
        () => {
          draining = true;
        },
      );
    }

    return {
      producerConnection: producer,
      store,
      metrics,
      queues,
      client,
      workerGraph,
      http,
      closables: shutdownOrder(started),
    };
  } catch (error) {
    for (const step of started) {
      await step.close().catch((closeError: unknown) =>
        log.error(
          {
            step: step.name,
            err: closeError instanceof Error ? closeError.message : String(closeError),
          },
          'closing after a failed start failed; continuing',
        ),
      );
    }
    throw error;
  }
}
