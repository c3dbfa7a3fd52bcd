import type { RedisConnection } from '../redis/connection.js';
import type { Logger } from 'pino';
import { RATE_LIMIT_BURST_WINDOW_SECONDS, type EnvConfig } from '../config/env.js';
import type { MemoryRegistry } from '../config/load-memories.js';
import { closeRedis, createRedis } from '../redis/connection.js';
import { createMemoryStore, type MemoryStore } from '../store/memory-store.js';
import { createMetrics, type MemqMetrics } from '../metrics/metrics.js';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { upsertMaintenanceSchedule } from '../../queues/schedules.js';
import { startWorkers, type Workers } from '../../processors/workers.js';
import { createMemoryQueues } from '../../queues/memory-queues.js';
import type { ApiKeyGrant } from '../config/env.js';
import type { HttpServer } from '../http/app.js';
import type { TenantLimitSettings } from '../http/rate-limit.js';

/** Settings of the HTTP server (API, Bull Board, metrics, health) a runtime may start. */
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

/** Options of {@link startRuntime}. */
export interface RuntimeOptions {
  /** Environment configuration (prefixes, concurrency, grace). */
  readonly env: EnvConfig;
  /** Resolved Redis URL (with cluster nodes: where credentials come from). */
  readonly redisUrl: string;
  /** Redis Cluster seed nodes (`host:port`); absent = one server at `redisUrl`. */
  readonly clusterNodes?: readonly string[];
  /** Declared memory resources. */
  readonly registry: MemoryRegistry;
  /** Process logger. */
  readonly log: Logger;
  /** Start BullMQ workers in this process (`memq start`/`work`); false for producer-only use. */
  readonly workers: boolean;
  /** Start the HTTP server (`memq start`/`serve`); absent = none. */
  readonly http?: HttpSettings;
}

/** A running memq process: its store, producer client and (optionally) workers. */
export interface Runtime {
  /** Store on the producer connection (reads, verification). */
  readonly store: MemoryStore;
  /** The producer client. */
  readonly client: MemoryClient;
  /** The workers, when started with `workers: true`. */
  readonly workers: Workers | undefined;
  /** Producer connection (fail-fast). */
  readonly producerConnection: RedisConnection;
  /** The process's instruments (memq metrics plus default process metrics) for `/metrics`. */
  readonly metrics: MemqMetrics;
  /** The HTTP server, when started with `http`. */
  readonly http: HttpServer | undefined;
  /**
   * Stops in reverse start order -- workers (drain active jobs), client, connections -- each step
   * under `shutdownGraceMs`; a failed or late step is logged and the next still runs.
   * Idempotent: later calls return the first call's promise. (A forced exit does not call this:
   * the process exits and BullMQ returns active jobs to wait when their locks expire.)
   */
  close(): Promise<void>;
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
 * Starts memq: Redis connections -> store -> producer client -> workers -> the maintenance
 * schedule -> HTTP (docs/architecture.md, "Lifecycle"). With `workers: false` (a producer only) no schedule is
 * set. Stops in reverse.
 * @throws the listen error (e.g. EADDRINUSE) after closing what it had started.
 */
export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { env, log } = options;
  const cluster = options.clusterNodes ? { clusterNodes: options.clusterNodes } : {};
  const workerConnection = createRedis({ url: options.redisUrl, ...cluster, role: 'worker' });
  const producerConnection = createRedis({ url: options.redisUrl, ...cluster, role: 'producer' });
  await Promise.all([workerConnection.ping(), producerConnection.ping()]);
  const store = createMemoryStore({ redis: producerConnection, keyPrefix: env.keyPrefix });
  const workerStore = createMemoryStore({ redis: workerConnection, keyPrefix: env.keyPrefix });
  const metrics = createMetrics({ processMetrics: true });
  const client = createMemoryClient({
    metrics,
    connection: producerConnection,
    queuePrefix: env.queuePrefix,
    registry: options.registry,
    project: env.project,
    store,
    backpressure: {
      highWaterJobs: env.backpressureHighWaterJobs,
      lowWaterJobs: env.backpressureLowWaterJobs,
      policy: env.backpressurePolicy,
      projectHighWaterJobs: env.backpressureProjectHighWaterJobs,
      maxBytes: env.backpressureMaxBytes,
      projectMaxBytes: env.backpressureProjectMaxBytes,
    },
  });
  const workers = options.workers
    ? startWorkers({
        connection: workerConnection,
        queuePrefix: env.queuePrefix,
        keyPrefix: env.keyPrefix,
        idempotencyWindowMs: env.idempotencyWindowMs,
        lockDurationMs: env.jobLockMs,
        tokenCountDelayMs: env.tokenCountDelayMs,
        tokenCacheBytes: env.tokenCacheBytes,
        concurrency: { append: env.appendConcurrency, tokenCount: env.tokenCountConcurrency },
        store: workerStore,
        registry: options.registry,
        log,
        metrics,
      })
    : undefined;
  await workers?.ready;
  if (workers) await upsertMaintenanceSchedule(workers.queues, env.maintenanceIntervalMs);

  const boardQueues = options.http
    ? createMemoryQueues(producerConnection, env.queuePrefix)
    : undefined;
  if (boardQueues && !workers) metrics.setQueueDepthSource(() => boardQueues.depths());
  let http: HttpServer | undefined;
  if (options.http && boardQueues) {
    // Imported here: a workers-only process (memq work) never loads express and Bull Board.
    const { createHttpApp, listen } = await import('../http/app.js');
    const app = createHttpApp({
      client,
      queues: boardQueues,
      registry: options.registry,
      redis: producerConnection,
      metrics,
      log,
      apiKeys: options.http.apiKeys,
      board: options.http.board,
      maxBodyBytes: env.maxBodyBytes,
      maxMessageBytes: env.maxMessageBytes,
      limits: tenantLimitSettings(env),
    });
    try {
      http = await listen(app, options.http.port, options.http.host ?? env.host);
    } catch (error) {
      await workers?.close();
      await boardQueues.close();
      await client.close();
      await Promise.all([closeRedis(producerConnection), closeRedis(workerConnection)]);
      throw error;
    }
  }

  const step = async (name: string, run: () => Promise<unknown>): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), env.shutdownGraceMs);
      timer.unref();
    });
    try {
      const outcome = await Promise.race([run().then(() => 'done' as const), late]);
      if (outcome === 'late')
        log.warn(
          { step: name, graceMs: env.shutdownGraceMs },
          'shutdown step exceeded its grace time; continuing',
        );
    } catch (error) {
      log.error(
        { step: name, err: error instanceof Error ? error.message : String(error) },
        'shutdown step failed; continuing',
      );
    } finally {
      clearTimeout(timer);
    }
  };

  let closing: Promise<void> | undefined;
  return {
    store,
    client,
    workers,
    producerConnection,
    metrics,
    http,
    close() {
      closing ??= (async () => {
        if (http) await step('http', () => http.close());
        if (workers) await step('workers', () => workers.close());
        if (boardQueues) await step('board queues', () => boardQueues.close());
        await step('client', () => client.close());
        await step('redis', () =>
          Promise.all([closeRedis(producerConnection), closeRedis(workerConnection)]),
        );
      })();
      return closing;
    },
  };
}
