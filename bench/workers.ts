/**
 * `npm run bench:workers` (also row (h) of `npm run bench`): memq append throughput with 1 and
 * with 2 `memq work` processes on one Redis (docs/reliability.md, "Horizontal workers").
 *
 *   npm run bench:workers            # 5,000 appends per run
 *   npm run bench:workers -- --quick # 1,000
 *
 * For each process count W: a private redis-server (AOF everysec), W `memq work` processes
 * (append concurrency 16 each, the default), and this process as the producer: N single-message
 * `MemoryClient.append` calls (64 in flight, 50 memories of customer-support, real e-mail text),
 * timed from the first append until no append job is left waiting or active, then until every
 * memory's tokens are counted exactly (the run only counts if they are). Writes
 * bench/results/workers-latest.json.
 *
 * On this project's 2-core machine Redis, the producer and the workers share two cores, so a
 * second process adds parallel consumers but no CPU: the figure says what a second process
 * costs or gains here, not what it gains on a machine with cores to spare.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import { loadMemoryResources } from '../src/config/load-memories.js';
import { buildConversations } from '../src/replay/corpus.js';
import { createMemoryStore } from '../src/store/memory-store.js';
import { createMemoryClient } from '../queues/memory-client.js';
import { QUEUES } from '../queues/names.js';
import { startMemqProcess, type MemqProcess } from '../test/helpers/cli.js';
import { rssOf, startBenchRedis, untilDrained } from './harness.js';

const quick = process.argv.includes('--quick');
const N = quick ? 1000 : 5000;
const MEMORIES = 50;
const PROCESS_COUNTS = [1, 2] as const;

const registry = await loadMemoryResources('memories');
const texts = (await buildConversations({ limit: 500 })).conversations.flatMap((c) =>
  c.messages.map((m) => m.content),
);

/** One run: messages/s with `processes` worker processes, and their peak RSS. */
async function run(processes: number): Promise<{ perSecond: number; peakRssMiB: number }> {
  const redis = await startBenchRedis(`workers-${processes}`);
  const prefix = `bench-w${processes}`;
  const env = {
    ...process.env,
    REDIS_URL: redis.url,
    MEMQ_KEY_PREFIX: `${prefix}:`,
    MEMQ_QUEUE_PREFIX: `{${prefix}}`,
    MEMQ_PROJECT: 'bench',
    MEMQ_LOG_LEVEL: 'warn',
  };
  const workers: MemqProcess[] = [];
  const producer = redis.connect(true);
  const store = createMemoryStore({ redis: producer, keyPrefix: `${prefix}:` });
  const client = createMemoryClient({
    connection: producer,
    queuePrefix: `{${prefix}}`,
    registry,
    project: 'bench',
    store,
  });
  const queue = new Queue(QUEUES.append, { connection: producer, prefix: `{${prefix}}` });
  try {
    for (let i = 0; i < processes; i++) workers.push(await startMemqProcess('work', env));
    let peakRss = 0;
    const sampler = setInterval(() => {
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
    for (const target of targets) {
      while (!(await client.read(target, { limit: 1 })).exact)
        await new Promise((r) => setTimeout(r, 20));
    }
    return { perSecond: N / seconds, peakRssMiB: Math.round(peakRss / 2 ** 20) };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await queue.close();
    await client.close();
    await redis.stop();
  }
}

const results: Record<string, { perSecond: number; peakRssMiB: number }> = {};
for (const processes of PROCESS_COUNTS) results[processes] = await run(processes);
const one = results[1]!;
const two = results[2]!;
const result = {
  when: new Date().toISOString(),
  node: process.version,
  quick,
  jobs: N,
  ratios: { two_vs_one_process: Number((two.perSecond / one.perSecond).toFixed(3)) },
  figures: {
    one_process_messages_per_second: { value: Math.round(one.perSecond), unit: 'messages/s' },
    two_processes_messages_per_second: { value: Math.round(two.perSecond), unit: 'messages/s' },
    one_process_peak_rss: { value: one.peakRssMiB, unit: 'MiB (the worker process)' },
    two_processes_peak_rss: { value: two.peakRssMiB, unit: 'MiB (the larger worker process)' },
  },
};
console.log(
  `workers: 1 process ${result.figures.one_process_messages_per_second.value} messages/s, 2 processes ${result.figures.two_processes_messages_per_second.value} messages/s (x${result.ratios.two_vs_one_process}); peak worker RSS ${one.peakRssMiB} / ${two.peakRssMiB} MiB`,
);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/workers-latest.json', JSON.stringify(result, null, 2) + '\n');
