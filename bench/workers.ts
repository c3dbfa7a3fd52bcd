/**
 * `npm run bench:workers` (also row (h) of `npm run bench`): memq append throughput with 1 and
 * with 2 `memq work` processes, on one Redis and on a Redis Cluster (docs/reliability.md,
 * "Horizontal workers").
 *
 *   npm run bench:workers            # 3 rounds of 5,000 appends per process count and setup
 *   npm run bench:workers -- --quick # 1 round of 1,000
 *   (--built: dist/ is already compiled, skip `npm run -s build`; `npm run bench` passes it)
 *
 * Compiles memq (`npm run -s build`) and runs the workers as users run them: `node
 * dist/src/main.js work` (append concurrency 16 each, the default; group commit on at the
 * producer, memq's default). Two setups: a private redis-server (AOF everysec), and a local
 * 3-master Redis Cluster (test/helpers/redis-cluster.ts: no persistence; BullMQ's queues live
 * in one slot, the memories spread over the three masters). In each setup, rounds alternate 1
 * and 2 processes (1 2 1 2 ...), each run on fresh prefixes with its processes started before
 * the clock: this process as the producer makes N single-message `MemoryClient.append` calls
 * (64 in flight, 50 memories of customer-support, real e-mail text), timed from the first
 * append until no append job is left waiting or active, then (untimed) until every memory's
 * tokens are counted exactly (the run only counts if they are). Ratio per round: 2 processes'
 * rate / 1 process's; reported as the median (min-max) of the rounds. Writes
 * bench/results/workers-latest.json.
 *
 * On this project's 2-core machine Redis (or the 3 cluster nodes), the producer and the workers
 * share two cores, so a second process adds parallel consumers but no CPU: the figure says what
 * a second process costs or gains here, not what it gains on a machine with cores to spare.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import pino from 'pino';
import { loadEnvConfig } from '../src/config/env.js';
import { loadMemoryResources } from '../src/config/load-memories.js';
import { startRuntime } from '../src/runtime/runtime.js';
import { QUEUES } from '../queues/names.js';
import { startTestCluster } from '../test/helpers/redis-cluster.js';
import {
  corpusTexts,
  buildDist,
  formatSummary,
  rssOf,
  startBenchRedis,
  startCompiledWorker,
  summarize,
  untilDrained,
  type CompiledMemq,
} from './harness.js';

const quick = process.argv.includes('--quick');
const N = quick ? 1000 : 5000;
/** Rounds per setup (--quick: 1, for development: a single pair is no ratio to rely on). */
const ROUNDS = quick ? 1 : 3;
const MEMORIES = 50;

const registry = await loadMemoryResources('memories');
const texts = await corpusTexts(500);

/** Where the runs go: one server, or a cluster's seed nodes. */
interface Target {
  readonly url: string;
  readonly clusterNodes?: readonly string[];
}

/** One run: messages/s with `processes` compiled worker processes, and their peak RSS. */
async function run(
  target: Target,
  processes: number,
  prefix: string,
): Promise<{ perSecond: number; peakRssBytes: number }> {
  const vars = {
    REDIS_URL: target.url,
    ...(target.clusterNodes ? { REDIS_CLUSTER_NODES: target.clusterNodes.join(',') } : {}),
    MEMQ_KEY_PREFIX: `${prefix}:`,
    MEMQ_QUEUE_PREFIX: `{${prefix}}`,
    MEMQ_PROJECT: 'bench',
    MEMQ_LOG_LEVEL: 'warn',
  };
  const workers: CompiledMemq[] = [];
  const runtime = await startRuntime({
    env: loadEnvConfig(vars),
    redisUrl: target.url,
    ...(target.clusterNodes ? { clusterNodes: target.clusterNodes } : {}),
    registry,
    log: pino({ level: 'silent' }),
    workers: false,
  });
  const client = runtime.client;
  const queue = new Queue(QUEUES.append, {
    connection: runtime.producerConnection,
    prefix: `{${prefix}}`,
  });
  let sampler: NodeJS.Timeout | undefined;
  try {
    for (let i = 0; i < processes; i++)
      workers.push(await startCompiledWorker({ ...process.env, ...vars }));
    let peakRss = 0;
    sampler = setInterval(() => {
      peakRss = Math.max(peakRss, ...workers.map((w) => rssOf(w.pid)));
    }, 100);
    const targets = Array.from({ length: MEMORIES }, (_, m) => ({
      resource: 'customer-support',
      key: `thread:${m}`,
    }));
    const started = performance.now();
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < N; i++) {
      while (inFlight.size >= 64) await Promise.race(inFlight);
      const p: Promise<void> = client
        .append(targets[i % MEMORIES]!, [
          { role: i % 2 ? 'assistant' : 'user', content: texts[i % texts.length]! },
        ])
        .then(() => undefined)
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    await untilDrained(queue);
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    const failed = (await queue.getJobCounts('failed')).failed ?? 0;
    if (failed > 0) throw new Error(`${failed} append jobs failed`);
    const deadline = Date.now() + 120_000;
    for (const target of targets) {
      while (!(await client.read(target, { limit: 1 })).exact) {
        if (Date.now() > deadline) throw new Error(`${target.key}: counts not exact after 120 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const dead = workers.filter((w) => !w.alive());
    if (dead.length > 0)
      throw new Error(`a memq work process exited during the run:\n${dead[0]!.stderr()}`);
    return { perSecond: N / seconds, peakRssBytes: peakRss };
  } catch (error) {
    // Whatever went wrong, say what the worker processes said.
    for (const [i, w] of workers.entries())
      if (w.stderr().trim()) console.error(`memq work #${i + 1} stderr:\n${w.stderr()}`);
    throw error;
  } finally {
    clearInterval(sampler);
    await Promise.all(workers.map((w) => w.stop()));
    await queue.close();
    await runtime.close();
  }
}

/** Alternating rounds of 1 and 2 processes on `target`: each run's rate and the peak RSS. */
async function rounds(target: Target, setup: string) {
  const one: number[] = [];
  const two: number[] = [];
  let peakRss = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const processes of [1, 2]) {
      const r = await run(target, processes, `bench-${setup}-w${processes}-${round}`);
      (processes === 1 ? one : two).push(r.perSecond);
      peakRss = Math.max(peakRss, r.peakRssBytes);
    }
    console.log(
      `  ${setup} round ${round + 1}/${ROUNDS}: 1 process ${Math.round(one[round]!)}, 2 processes ${Math.round(two[round]!)} messages/s`,
    );
  }
  return {
    ratio: summarize(two.map((rate, r) => rate / one[r]!)),
    one: summarize(one, 0).median,
    two: summarize(two, 0).median,
    peakRssMiB: Math.round(peakRss / 2 ** 20),
  };
}

if (!process.argv.includes('--built')) buildDist();
const redis = await startBenchRedis('workers');
let single: Awaited<ReturnType<typeof rounds>>;
try {
  single = await rounds({ url: redis.url }, 'server');
} finally {
  await redis.stop();
}
const cluster = await startTestCluster();
let clustered: Awaited<ReturnType<typeof rounds>>;
try {
  clustered = await rounds(
    { url: `redis://${cluster.nodes[0]!}`, clusterNodes: cluster.nodes },
    'cluster',
  );
} finally {
  await cluster.stop();
}

const result = {
  when: new Date().toISOString(),
  node: process.version,
  quick,
  jobs: N,
  rounds: ROUNDS,
  /** 2 processes' rate / 1 process's, per round: median, min, max, every round. */
  ratios: {
    two_vs_one_process: single.ratio,
    two_vs_one_process_cluster: clustered.ratio,
  },
  figures: {
    one_process_messages_per_second: { value: single.one, unit: 'messages/s (median)' },
    two_processes_messages_per_second: { value: single.two, unit: 'messages/s (median)' },
    cluster_one_process_messages_per_second: {
      value: clustered.one,
      unit: 'messages/s (3-master Redis Cluster, median)',
    },
    cluster_two_processes_messages_per_second: {
      value: clustered.two,
      unit: 'messages/s (3-master Redis Cluster, median)',
    },
    horizontal_worker_peak_rss: {
      value: Math.max(single.peakRssMiB, clustered.peakRssMiB),
      unit: 'MiB (the largest compiled memq work process in any run)',
    },
  },
};
console.log(
  `workers (compiled memq work, ${ROUNDS} rounds of ${N} appends): one server 1 process ${single.one}, 2 processes ${single.two} messages/s, x${formatSummary(single.ratio)}; Redis Cluster (3 masters) ${clustered.one} / ${clustered.two} messages/s, x${formatSummary(clustered.ratio)}; peak worker RSS ${result.figures.horizontal_worker_peak_rss.value} MiB`,
);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/workers-latest.json', JSON.stringify(result, null, 2) + '\n');
