import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import type { RedisNamespace } from './redis-namespace.js';

/** The environment of a `memq` child process on `ns`: its Redis and prefixes, logs at warn. */
export function memqEnv(ns: RedisNamespace, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_URL: ns.url,
    MEMQ_KEY_PREFIX: ns.keyPrefix,
    MEMQ_QUEUE_PREFIX: ns.queuePrefix,
    MEMQ_LOG_LEVEL: 'warn',
    ...extra,
  };
}

/** Runs `memq <args>` (src/main.ts through tsx) to completion on `ns`. */
export function runMemq(
  ns: RedisNamespace,
  args: readonly string[],
  extra: NodeJS.ProcessEnv = {},
): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    encoding: 'utf8',
    env: memqEnv(ns, extra),
  });
}
