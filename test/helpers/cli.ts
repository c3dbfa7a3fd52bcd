import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RedisNamespace } from './redis-namespace.js';

/** The environment of a `memq` child process on `ns`: its Redis (or cluster) and prefixes, logs at warn. */
export function memqEnv(ns: RedisNamespace, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_URL: ns.url,
    ...(ns.clusterNodes ? { REDIS_CLUSTER_NODES: ns.clusterNodes.join(',') } : {}),
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

/** A running `memq start` / `serve` / `work` child process. */
export interface MemqProcess {
  /** What it printed on stderr so far. */
  stderr(): string;
  /** `http://localhost:<port>` once it serves HTTP (start, serve); undefined for `work`. */
  readonly base: string | undefined;
  /** Its process id. */
  readonly pid: number;
  /** True while the process runs. */
  alive(): boolean;
  /** Sends SIGTERM and resolves with the exit code. Idempotent. */
  stop(): Promise<number | null>;
  /** Sends SIGKILL (no drain, no cleanup: a crash) and resolves once it has exited. */
  kill(): Promise<void>;
}

/**
 * Spawns `memq <command>` (src/main.ts through tsx, by absolute path so `cwd` may be anywhere)
 * with `env` and waits until it says "Ctrl-C to stop" (30 s at most).
 * @throws Error with its stderr when it exits or does not get there in time.
 */
export async function startMemqProcess(
  command: 'start' | 'serve' | 'work',
  env: NodeJS.ProcessEnv,
  cwd?: string,
): Promise<MemqProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      pathToFileURL(path.resolve('node_modules/tsx/dist/loader.mjs')).href,
      path.resolve('src/main.ts'),
      command,
    ],
    { env, ...(cwd ? { cwd } : {}), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 30_000;
  while (!stderr.includes('Ctrl-C to stop') && Date.now() < deadline && child.exitCode === null)
    await new Promise((r) => setTimeout(r, 50));
  if (!stderr.includes('Ctrl-C to stop')) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`memq ${command} did not start:\n${stderr}`);
  }
  let stopping: Promise<number | null> | undefined;
  return {
    stderr: () => stderr,
    base: /http:\/\/localhost:\d+/.exec(stderr)?.[0],
    pid: child.pid!,
    alive: () => child.exitCode === null && child.signalCode === null,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    stop() {
      if (!stopping) {
        child.kill('SIGTERM');
        stopping = exited;
      }
      return stopping;
    },
  };
}
