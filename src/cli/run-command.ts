import type { Logger } from 'pino';
import type { EnvConfig } from '../config/env.js';
import { loadMemoryResources } from '../config/load-memories.js';
import { resolveProviderApiKeys } from '../providers/api-keys.js';
import { resolveDefaultRedis } from '../runtime/embedded-redis.js';
import { startRuntime, type Runtime, type ShutdownOutcome } from '../runtime/runtime.js';
import { resolveApiKeys, resolveBoardCredentials } from './credentials.js';
import { configuredRedis, type RedisTarget } from './redis-target.js';

/**
 * What a process runs: `start` = workers, scheduler and HTTP; `serve` = HTTP only (API, Bull
 * Board, metrics, health); `work` = workers and scheduler only.
 */
export type ProcessMode = 'start' | 'serve' | 'work';

/** A started `memq start` / `serve` / `work` process. */
export interface RunningProcess {
  /** The started runtime (store, client, workers). */
  readonly runtime: Runtime;
  /**
   * Drains and stops the runtime within `graceMs` (default `MEMQ_SHUTDOWN_GRACE_MS`;
   * `Runtime.close`), then the private Redis if memq started one; resolves with the runtime's
   * outcome. Idempotent: later calls return the first call's promise.
   */
  stop(graceMs?: number): Promise<ShutdownOutcome>;
  /**
   * For a forced exit: stops only the private Redis (if any), so it does not outlive memq.
   * Active jobs are abandoned; BullMQ returns them to wait when their locks expire.
   */
  abandon(): Promise<void>;
}

/**
 * `memq start` / `serve` / `work`: loads `memories/`, reads the provider API keys the workers
 * need (worker modes; the only place they are read, before anything is started), resolves
 * credentials (HTTP modes) and Redis (REDIS_URL, else the embedded default), and runs until
 * stopped.
 * @throws ConfigError for invalid resources, a missing provider API key, credentials or no
 *   reachable Redis; the listen error (e.g. EADDRINUSE) when the port is taken.
 */
export async function runMemq(
  mode: ProcessMode,
  env: EnvConfig,
  log: Logger,
  say: (line: string) => void,
): Promise<RunningProcess> {
  const registry = await loadMemoryResources(env.memoriesDir, process.env);
  // A producer (serve) calls no provider: only worker processes need the keys.
  const providerKeys = mode === 'serve' ? undefined : resolveProviderApiKeys(registry, process.env);
  const http =
    mode === 'work'
      ? undefined
      : {
          port: env.port,
          apiKeys: await resolveApiKeys(env, say),
          board: await resolveBoardCredentials(env, say),
        };
  const redis: RedisTarget = configuredRedis(env) ?? (await resolveDefaultRedis(say));
  let runtime: Runtime;
  try {
    runtime = await startRuntime({
      env,
      redisUrl: redis.url,
      ...('clusterNodes' in redis && redis.clusterNodes
        ? { clusterNodes: redis.clusterNodes }
        : {}),
      ...(redis.sentinel ? { sentinel: redis.sentinel } : {}),
      registry,
      log,
      workers: mode !== 'serve',
      ...(providerKeys ? { providerKeys } : {}),
      ...(http ? { http } : {}),
    });
  } catch (error) {
    await redis.embedded?.stop();
    throw error;
  }
  log.info(
    {
      mode,
      memories: registry.list().map((r) => r.id),
      queuePrefix: env.queuePrefix,
      ...(mode !== 'serve'
        ? {
            appendConcurrency: env.appendConcurrency,
            tokenCountConcurrency: env.tokenCountConcurrency,
          }
        : {}),
      ...(runtime.http ? { port: runtime.http.port } : {}),
    },
    'memq running',
  );
  let stopping: Promise<ShutdownOutcome> | undefined;
  return {
    runtime,
    stop(graceMs) {
      stopping ??= (async () => {
        const outcome = await runtime.close(graceMs);
        await redis.embedded?.stop();
        return outcome;
      })();
      return stopping;
    },
    async abandon() {
      await redis.embedded?.stop();
    },
  };
}
