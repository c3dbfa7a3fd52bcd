import type { Logger } from 'pino';
import type { EnvConfig } from '../config/env.js';
import type { MemoryRegistry } from '../config/load-memories.js';
import type { HttpServer } from '../http/app.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import type { ProviderApiKeys } from '../providers/api-keys.js';
import type { RedisConnection, SentinelTarget } from '../redis/connection.js';
import type { MemoryStore } from '../store/memory-store.js';
import type { MemoryClient } from '../../queues/memory-client.js';
import type { MemoryQueues } from '../../queues/memory-queues.js';
import type { Workers } from '../../processors/workers.js';
import { closeInOrder, compose, type HttpSettings, type ShutdownOutcome } from './compose.js';

// The runtime's option types and settings, for callers that import only this module.
export { tenantLimitSettings, type HttpSettings, type ShutdownOutcome } from './compose.js';

/** Options of {@link startRuntime}. */
export interface RuntimeOptions {
  /** Environment configuration (prefixes, concurrency, limits, grace), parsed by the CLI. */
  readonly env: EnvConfig;
  /** Resolved Redis URL (with cluster nodes: where credentials come from). */
  readonly redisUrl: string;
  /** Redis Cluster seed nodes (`host:port`); absent = one server at `redisUrl`. */
  readonly clusterNodes?: readonly string[];
  /** Redis Sentinel: the primary is the one the sentinels name (`redisUrl`: credentials, TLS). */
  readonly sentinel?: SentinelTarget;
  /** Declared memory resources. */
  readonly registry: MemoryRegistry;
  /** Process logger. */
  readonly log: Logger;
  /** Start BullMQ workers in this process (`memq start`/`work`); false for producer-only use. */
  readonly workers: boolean;
  /**
   * The provider API keys the workers need, read once at start-up by `resolveProviderApiKeys`
   * (src/providers/api-keys.ts); default none (only local token counting and keyless
   * summarizers then start).
   */
  readonly providerKeys?: ProviderApiKeys;
  /** Start the HTTP server (`memq start`/`serve`); absent = none. */
  readonly http?: HttpSettings;
}

/** A running memq process: its store, queues, producer client and (optionally) workers. */
export interface Runtime {
  /** Store on the producer connection (reads, verification). */
  readonly store: MemoryStore;
  /** The process's one set of queues (client, workers and Bull Board share it). */
  readonly queues: MemoryQueues;
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
   * Stops everything within one deadline, `graceMs` ms from the call (default
   * `env.shutdownGraceMs`; `closeInOrder`, src/runtime/compose.ts): `/readyz` answers 503 at
   * once, then the workers drain active jobs, the HTTP server closes, then the client, the
   * queues and the Redis connections; what has not finished by its deadline is abandoned (BullMQ
   * takes unfinished jobs back when their locks expire). Resolves with what happened; never
   * rejects. Idempotent: later calls return the first call's promise, whatever their `graceMs`.
   * (A forced exit does not call this.)
   */
  close(graceMs?: number): Promise<ShutdownOutcome>;
}

/**
 * Starts memq through the composition root ({@link compose}: Redis connections -> stores ->
 * metrics -> queues and client -> the maintenance schedule -> workers -> HTTP;
 * docs/architecture.md, "Lifecycle"). With `workers: false` (a producer only) no schedule is
 * set. Stops within one deadline, `env.shutdownGraceMs` (see {@link Runtime.close}).
 * @throws what {@link compose} throws, after closing what it had started.
 */
export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { env, log } = options;
  const graph = await compose({
    env,
    redis: {
      url: options.redisUrl,
      ...(options.clusterNodes ? { clusterNodes: options.clusterNodes } : {}),
      ...(options.sentinel ? { sentinel: options.sentinel } : {}),
    },
    registry: options.registry,
    log,
    workers: options.workers,
    ...(options.providerKeys ? { providerKeys: options.providerKeys } : {}),
    ...(options.http ? { http: options.http } : {}),
  });

  let closing: Promise<ShutdownOutcome> | undefined;
  return {
    store: graph.store,
    queues: graph.queues,
    client: graph.client,
    workers: graph.workerGraph?.workers,
    producerConnection: graph.producerConnection,
    metrics: graph.metrics,
    http: graph.http,
    close(graceMs = env.shutdownGraceMs) {
      closing ??= closeInOrder(graph.closables, graceMs, log);
      return closing;
    },
  };
}
