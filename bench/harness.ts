/**
 * What every benchmark needs: a private redis-server on a free loopback port (AOF everysec, as
 * `npm start` would), a producer client and memq's workers on it, and a teardown that stops all
 * of it and removes the data directory.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { loadEnvConfig } from '../src/config/env.js';
import { freePort, resolveDefaultRedis } from '../src/runtime/embedded-redis.js';
import { createMetrics, type MemqMetrics } from '../src/metrics/metrics.js';
import { NO_PROVIDER_API_KEYS } from '../src/providers/api-keys.js';
import { composeWorkers, type WorkerEnv } from '../src/runtime/compose.js';
import { replicaConfirmation } from '../src/redis/replicas.js';
import { buildConversations } from '../src/replay/corpus.js';
import { createMemoryStore } from '../src/store/memory-store.js';
import type { AppendBatchLimits } from '../queues/append-batcher.js';
import { createMemoryClient, type MemoryClient } from '../queues/memory-client.js';
import { createMemoryQueues } from '../queues/memory-queues.js';
import type { Workers } from '../processors/workers.js';

/** A private Redis for one benchmark run. */
export interface BenchRedis {
  /** Its URL. */
  readonly url: string;
  /** A new connection (producer: fail fast; else worker: retry forever), closed by `stop`. */
  connect(producer?: boolean): Redis;
  /** Closes every connection, stops the server, removes its data directory. */
  stop(): Promise<void>;
}

/** Starts a private redis-server (named `memq-bench-<name>-*` on disk). */
export async function startBenchRedis(name: string): Promise<BenchRedis> {
  const dataDir = mkdtempSync(join(tmpdir(), `memq-bench-${name}-`));
  const { url, embedded } = await resolveDefaultRedis(() => {}, {
    dataDir,
    defaultPort: await freePort(),
  });
  const connections: Redis[] = [];
  return {
    url,
    connect(producer = false) {
      const c = new Redis(url, { protocol: 2, maxRetriesPerRequest: producer ? 1 : null });
      connections.push(c);
      return c;
    },
    async stop() {
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
      await embedded?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A producer client and workers on `redis`, as `memq start` wires them. */
export interface BenchPipeline {
  readonly client: MemoryClient;
  readonly workers: Workers;
  /** The instruments client and workers record to. */
  readonly metrics: MemqMetrics;
  /** Closes the workers and what they hold (counters, locks); the client stays usable. Idempotent. */
  readonly stopWorkers: () => Promise<void>;
  /** Closes the workers, then the client and the queues. */
  readonly close: () => Promise<void>;
}

/** What {@link startBenchPipeline} takes besides {@link WorkerEnv} settings. */
export interface BenchPipelineExtra {
  /** Debounce of token-count jobs, ms (`createMemoryQueues`' option); default memq's. */
  readonly tokenCountDelayMs: number;
  /**
   * The client's group commit (queues/append-batcher.ts); default memq's (256 messages, 1 MiB
   * per job); `{ maxMessages: 1 }` turns batching off (one job per append).
   */
  readonly appendBatch: Partial<AppendBatchLimits>;
}

/**
 * Starts a client (project `bench`, no backpressure) and workers on one set of queues, through
 * the composition root's worker graph (src/runtime/compose.ts), under BullMQ prefix `{prefix}`
 * and key prefix `prefix:`: append concurrency 16, the rest of {@link WorkerEnv} at memq's
 * defaults unless `extra` says otherwise (e.g. `tokenCacheBytes`, `tokenCountDelayMs`,
 * `appendBatch`, `waitReplicas`: the client's and the workers' replica confirmation). Resolves once the workers are ready (tokenizers loaded).
 */
export async function startBenchPipeline(
  redis: BenchRedis,
  prefix: string,
  registry: MemoryRegistry,
  extra: Partial<WorkerEnv & BenchPipelineExtra> = {},
): Promise<BenchPipeline> {
  const producer = redis.connect(true);
  const workerConnection = redis.connect();
  const { appendBatch, ...workerExtra } = extra;
  const env = {
    ...loadEnvConfig({ MEMQ_KEY_PREFIX: `${prefix}:`, MEMQ_QUEUE_PREFIX: `{${prefix}}` }),
    appendConcurrency: 16,
    ...workerExtra,
  };
  const metrics = createMetrics();
  const waitReplicas = replicaConfirmation(env);
  const queues = createMemoryQueues(
    producer,
    env.queuePrefix,
    extra.tokenCountDelayMs !== undefined ? { tokenCountDelayMs: extra.tokenCountDelayMs } : {},
  );
  const client = createMemoryClient({
    connection: producer,
    queuePrefix: env.queuePrefix,
    queues,
    registry,
    project: 'bench',
    store: createMemoryStore({ redis: producer, keyPrefix: env.keyPrefix }),
    metrics,
    ...(appendBatch ? { appendBatch } : {}),
    ...(waitReplicas ? { waitReplicas } : {}),
  });
  const graph = await composeWorkers({
    connection: workerConnection,
    queues,
    store: createMemoryStore({ redis: workerConnection, keyPrefix: env.keyPrefix }),
    registry,
    env,
    providerKeys: NO_PROVIDER_API_KEYS,
    metrics,
    log: pino({ level: 'silent' }),
  });
  return {
    client,
    workers: graph.workers,
    metrics,
    stopWorkers: () => graph.close(),
    close: async () => {
      await graph.close();
      await client.close();
      await queues.close();
    },
  };
}

/**
 * Resident set size of process `pid`, bytes (`VmRSS` in /proc/<pid>/status; Linux); 0 once the
 * process has exited (no such file), so a sampler outliving its process does not throw.
 */
export function rssOf(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return 0;
  }
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/**
 * Resolves once `queue` has no job waiting, active, delayed or prioritized (polled every 10 ms;
 * completed jobs are trimmed by retention, so what is left is what counts).
 * @throws Error when jobs are still left after `timeoutMs` (default 300 000).
 */
export async function untilDrained(queue: Queue, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    if (Object.values(left).every((n) => n === 0)) return;
    if (Date.now() > deadline)
      throw new Error(`${queue.name}: jobs still pending after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Messages an append job carries: the sum over its `entries` (group commit,
 * queues/job-contracts.ts `AppendJobSchema`), or the one-entry shape's `messages`; an erased
 * entry (`erased_ids`) counts its ids. 1 for any other job (e.g. a no-op job).
 */
export function messagesOf(job: Job): number {
  type Entry = { messages?: unknown[]; erased_ids?: unknown[] };
  const data = job.data as (Entry & { entries?: Entry[] }) | undefined;
  const size = (e: Entry) => e.messages?.length ?? e.erased_ids?.length ?? 0;
  if (Array.isArray(data?.entries)) return data.entries.reduce((sum, e) => sum + size(e), 0);
  return data && ('messages' in data || 'erased_ids' in data) ? size(data) : 1;
}

/** CPU seconds a Redis server has used (user + system), from `INFO cpu`. */
export async function redisCpuSeconds(connection: Redis): Promise<number> {
  const info = await connection.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** Median and range of a ratio measured in several rounds. */
export interface RoundSummary {
  /** Median of `rounds` (the mean of the middle two for an even count). */
  readonly median: number;
  /** Smallest round. */
  readonly min: number;
  /** Largest round. */
  readonly max: number;
  /** Every round's value, in the order the rounds ran. */
  readonly rounds: readonly number[];
}

/**
 * The median, min and max of `values` (one per round), each rounded to `digits` decimals.
 * @throws Error when `values` is empty.
 */
export function summarize(values: readonly number[], digits = 3): RoundSummary {
  if (values.length === 0) throw new Error('no rounds to summarize');
  const round = (v: number) => Number(v.toFixed(digits));
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median =
    sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return {
    median: round(median),
    min: round(sorted[0]!),
    max: round(sorted.at(-1)!),
    rounds: values.map(round),
  };
}

/** `median (min-max)` of a {@link RoundSummary}, for the printed table. */
export const formatSummary = (s: RoundSummary) => `${s.median} (${s.min}-${s.max})`;

/**
 * Compiles memq (`npm run -s build`: dist/, as the npm package ships it), so the benches can run
 * `memq work` as users run it (plain Node, no tsx loader in the process).
 * @throws Error with the compiler's output when the build fails.
 */
export function buildDist(): void {
  const build = spawnSync('npm', ['run', '-s', 'build'], { encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`);
}

/** A running compiled `memq work`, `serve` or `start` process. */
export interface CompiledMemq {
  /** Its process id (for {@link rssOf}). */
  readonly pid: number;
  /** `http://localhost:<port>` from its start line (`serve`, `start`); undefined for `work`. */
  readonly base: string | undefined;
  /** What it printed on stderr so far. */
  stderr(): string;
  /** True while the process runs. */
  alive(): boolean;
  /** Sends SIGTERM (memq drains active jobs) and resolves once it exited. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Spawns `node dist/src/main.js <command>` (build first: {@link buildDist}) with `env`
 * (REDIS_URL, REDIS_CLUSTER_NODES, MEMQ_KEY_PREFIX, MEMQ_QUEUE_PREFIX, PORT, ...) and resolves
 * once its start line says "Ctrl-C to stop" (its workers are ready, its HTTP server listens).
 * @throws Error with its stderr when it exits or is not ready within 30 s (it is killed).
 */
export async function startCompiledMemq(
  command: 'work' | 'serve' | 'start',
  env: NodeJS.ProcessEnv,
): Promise<CompiledMemq> {
  const child = spawn(process.execPath, ['dist/src/main.js', command], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  while (!stderr.includes('Ctrl-C to stop') && Date.now() < deadline && child.exitCode === null)
    await new Promise((r) => setTimeout(r, 50));
  if (!stderr.includes('Ctrl-C to stop')) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`memq ${command} did not start:\n${stderr}`);
  }
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid!,
    base: /http:\/\/localhost:\d+/.exec(stderr)?.[0],
    stderr: () => stderr,
    alive: () => child.exitCode === null && child.signalCode === null,
    stop() {
      if (!stopping) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        stopping = exited;
      }
      return stopping;
    },
  };
}

/** {@link startCompiledMemq} of `memq work` (the append and token-count workers alone). */
export const startCompiledWorker = (env: NodeJS.ProcessEnv): Promise<CompiledMemq> =>
  startCompiledMemq('work', env);

/**
 * The texts of every message of the first `limit` easy-ham conversations of the replay corpus, in
 * order: what the benches append (real e-mail text).
 */
export async function corpusTexts(limit: number): Promise<string[]> {
  return (await buildConversations({ limit })).conversations.flatMap((c) =>
    c.messages.map((m) => m.content),
  );
}

/**
 * The `p`-th percentile (0-100) of ascending `sorted`, by nearest rank (the smallest value with
 * at least `p` % of the values at or below it); undefined when `sorted` is empty.
 */
export function nearestRank(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
