/**
 * `npm run bench` (this file): memq's pipeline against BullMQ's own ceiling, on this machine.
 *
 *   npm run bench            # 5,000 jobs per scenario
 *   npm run bench -- --quick # 1,000 jobs per scenario
 *
 * Starts a private redis-server on a free loopback port (AOF everysec, as `npm start` would),
 * then measures, one after the other:
 *  (a) BullMQ no-op ceiling: N single `add`s (64 in flight) of no-op jobs, consumed by one
 *      Worker at concurrency C, from the first add to the last completion;
 *  (b) memq appends: N single-message `MemoryClient.append` calls (64 in flight; 50 memories,
 *      real e-mail text, customer-support privacy policy) consumed by memq's append workers at
 *      the same C with the token-count workers running as in production, from the first append
 *      to the last committed append job (enqueue -> committed);
 *  (b') the same with token counting deferred: the token-count queue is paused for the timed
 *      window (the append path alone), then resumed and drained until every count is exact;
 *  (c) producer-side work per message: `MemoryClient.prepareAppend` (validation, key, ids,
 *      privacy, job contract; no I/O), median and p99 over 10,000 calls.
 * For (a), (b) and (b') it also reports CPU per job: this process (`process.cpuUsage`, all
 * threads) and the Redis server (`INFO cpu`), since both share the machine's cores.
 * Prints a table and writes bench/results/latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Queue, Worker } from 'bullmq';
import { loadMemoryResources } from '../src/config/load-memories.js';
import { buildConversations } from '../src/replay/corpus.js';
import { startBenchPipeline, startBenchRedis } from './harness.js';

const quick = process.argv.includes('--quick');
const N = quick ? 1000 : 5000;
const CONCURRENCY = 16;
const MEMORIES = 50;

const registry = await loadMemoryResources('memories');
const texts = (await buildConversations({ limit: 500 })).conversations.flatMap((c) =>
  c.messages.map((m) => m.content),
);
const redis = await startBenchRedis('pipeline');
const connect = (producer = false) => redis.connect(producer);

const admin = connect();
/** CPU seconds the Redis server has used (user + system), from `INFO cpu`. */
async function redisCpuSeconds(): Promise<number> {
  const info = await admin.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** A timed scenario: wall seconds and CPU per job, microseconds. */
interface Timing {
  readonly seconds: number;
  readonly nodeCpuUsPerJob: number;
  readonly redisCpuUsPerJob: number;
}

/**
 * Runs `enqueue(0..n-1)` with 64 calls in flight until `worker` has finished n jobs (counted
 * from its events: completed jobs are trimmed by retention, so queue counts cannot).
 */
async function timed(
  n: number,
  enqueue: (i: number) => Promise<void>,
  worker: Worker,
): Promise<Timing> {
  const cpuBefore = process.cpuUsage();
  const redisBefore = await redisCpuSeconds();
  let finished = 0;
  const onFinished = () => (finished += 1);
  worker.on('completed', onFinished);
  worker.on('failed', onFinished);
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < n; i++) {
    while (inFlight.size >= 64) await Promise.race(inFlight);
    const p: Promise<void> = enqueue(i).finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  while (finished < n) await new Promise((r) => setTimeout(r, 5));
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const redisSeconds = (await redisCpuSeconds()) - redisBefore;
  worker.off('completed', onFinished);
  worker.off('failed', onFinished);
  return {
    seconds,
    nodeCpuUsPerJob: Math.round((cpu.user + cpu.system) / n),
    redisCpuUsPerJob: Math.round((redisSeconds * 1e6) / n),
  };
}

try {
  // (a) BullMQ no-op ceiling.
  const noopPrefix = '{bench-noop}';
  const noopQueue = new Queue('noop', { connection: connect(true), prefix: noopPrefix });
  const noopWorker = new Worker('noop', () => Promise.resolve(undefined), {
    connection: connect(),
    prefix: noopPrefix,
    concurrency: CONCURRENCY,
  });
  await noopWorker.waitUntilReady();
  const noop = await timed(
    N,
    (i) => noopQueue.add('noop', { i }).then(() => undefined),
    noopWorker,
  );
  await noopWorker.close();
  await noopQueue.close();

  // (b) and (b') memq single-message appends through the real processors.
  const runAppends = async (prefix: string, deferCounting: boolean) => {
    const { client, workers } = await startBenchPipeline(redis, prefix, registry, {
      concurrency: { append: CONCURRENCY, tokenCount: 2 },
    });
    if (deferCounting) await workers.queues.tokenCount.pause();
    const targets = Array.from({ length: MEMORIES }, (_, m) => ({
      resource: 'customer-support',
      key: `thread:${m}`,
    }));
    const timing = await timed(
      N,
      (i) =>
        client
          .append(targets[i % MEMORIES]!, [
            { role: i % 2 ? 'assistant' : 'user', content: texts[i % texts.length]! },
          ])
          .then(() => undefined),
      workers.workers[0]!,
    );
    const failed = (await workers.queues.append.getJobCounts('failed')).failed ?? 0;
    if (deferCounting) await workers.queues.tokenCount.resume();
    // Every memory ends with exact counts either way (the run is only valid if it does).
    for (const target of targets) {
      const deadline = Date.now() + 120_000;
      while (!(await client.read(target, { limit: 1 })).exact) {
        if (Date.now() > deadline) throw new Error(`${target.key}: counts not exact after 120 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await workers.close();
    return { timing, failed, client };
  };
  const live = await runAppends('bench-memq', false);
  await live.client.close();
  const deferred = await runAppends('bench-memq-deferred', true);
  const client = deferred.client;

  // (c) producer-side work per message.
  const samples: number[] = [];
  for (let i = 0; i < 10_000; i++) {
    const t0 = performance.now();
    client.prepareAppend({ resource: 'customer-support', key: `thread:${i % MEMORIES}` }, [
      { role: 'user', content: texts[i % texts.length]! },
    ]);
    samples.push((performance.now() - t0) * 1000);
  }
  await client.close();
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)]!;
  const p99 = samples[Math.floor(samples.length * 0.99)]!;

  const noopRate = N / noop.seconds;
  const appendRate = N / live.timing.seconds;
  const deferredRate = N / deferred.timing.seconds;
  const cpu = (t: Timing) => ({
    node: { value: t.nodeCpuUsPerJob, unit: 'us/job' },
    redis: { value: t.redisCpuUsPerJob, unit: 'us/job' },
  });
  const result = {
    when: new Date().toISOString(),
    node: process.version,
    jobs: N,
    concurrency: CONCURRENCY,
    ratios: {
      append_vs_noop: Number((appendRate / noopRate).toFixed(3)),
      append_deferred_counting_vs_noop: Number((deferredRate / noopRate).toFixed(3)),
    },
    figures: {
      noop_jobs_per_second: { value: Math.round(noopRate), unit: 'jobs/s' },
      append_commits_per_second: { value: Math.round(appendRate), unit: 'messages/s' },
      append_deferred_counting_commits_per_second: {
        value: Math.round(deferredRate),
        unit: 'messages/s',
      },
      append_failed_jobs: { value: live.failed + deferred.failed, unit: 'jobs' },
      producer_prepare_median: { value: Number(median.toFixed(1)), unit: 'us/message' },
      producer_prepare_p99: { value: Number(p99.toFixed(1)), unit: 'us/message' },
    },
    cpu_per_job: {
      noop: cpu(noop),
      append: cpu(live.timing),
      append_deferred: cpu(deferred.timing),
    },
  };
  console.log(`memq bench (${N} jobs, concurrency ${CONCURRENCY}, ${process.version})`);
  console.log(
    `  (a) BullMQ no-op ceiling          ${result.figures.noop_jobs_per_second.value} jobs/s`,
  );
  const cpuText = (t: Timing) =>
    `cpu/job: node ${t.nodeCpuUsPerJob} us, redis ${t.redisCpuUsPerJob} us`;
  console.log(`      ${cpuText(noop)}`);
  console.log(
    `  (b) memq single-message appends   ${result.figures.append_commits_per_second.value} messages/s committed (${live.failed} failed)`,
  );
  console.log(`      ${cpuText(live.timing)}`);
  console.log(
    `      append_vs_noop                ${result.ratios.append_vs_noop} (target >= 0.7)`,
  );
  console.log(
    `  (b') same, token counting deferred ${result.figures.append_deferred_counting_commits_per_second.value} messages/s committed (${deferred.failed} failed)`,
  );
  console.log(`      ${cpuText(deferred.timing)}`);
  console.log(
    `      append_deferred_counting_vs_noop ${result.ratios.append_deferred_counting_vs_noop}`,
  );
  console.log(
    `  (c) producer work per message     median ${result.figures.producer_prepare_median.value} us, p99 ${result.figures.producer_prepare_p99.value} us (target median < 50 us)`,
  );
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/latest.json', JSON.stringify(result, null, 2) + '\n');
} finally {
  await redis.stop();
}
