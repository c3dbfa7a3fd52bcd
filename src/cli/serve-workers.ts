import type { Logger } from 'pino';
import type { EnvConfig } from '../config/env.js';
import { loadMemoryResources } from '../config/load-memories.js';
import { resolveDefaultRedis } from '../runtime/embedded-redis.js';
import { startRuntime, type Runtime } from '../runtime/runtime.js';

/** A started `memq start` / `memq work` process. */
export interface RunningProcess {
  /** The started runtime (store, client, workers). */
  readonly runtime: Runtime;
  /** Drains and stops the runtime, then the private Redis if memq started one. Idempotent. */
  stop(): Promise<void>;
  /**
   * For a forced exit: stops only the private Redis (if any), so it does not outlive memq.
   * Active jobs are abandoned; BullMQ returns them to wait when their locks expire.
   */
  abandon(): Promise<void>;
}

/**
 * `memq start` / `memq work`: loads `memories/`, resolves Redis (REDIS_URL, else the embedded
 * default) and runs the workers until stopped. The HTTP API and Bull Board join `start` later.
 * @throws ConfigError for invalid resources or no reachable Redis.
 */
export async function runWorkers(
  env: EnvConfig,
  log: Logger,
  say: (line: string) => void,
): Promise<RunningProcess> {
  const registry = await loadMemoryResources(env.memoriesDir, process.env);
  const redis = env.redisUrl ? { url: env.redisUrl } : await resolveDefaultRedis(say);
  let runtime: Runtime;
  try {
    runtime = await startRuntime({ env, redisUrl: redis.url, registry, log, workers: true });
  } catch (error) {
    await redis.embedded?.stop();
    throw error;
  }
  log.info(
    {
      memories: registry.list().map((r) => r.id),
      appendConcurrency: env.appendConcurrency,
      tokenCountConcurrency: env.tokenCountConcurrency,
      queuePrefix: env.queuePrefix,
    },
    'memq workers running',
  );
  let stopping: Promise<void> | undefined;
  return {
    runtime,
    stop() {
      stopping ??= (async () => {
        await runtime.close();
        await redis.embedded?.stop();
      })();
      return stopping;
    },
    async abandon() {
      await redis.embedded?.stop();
    },
  };
}
