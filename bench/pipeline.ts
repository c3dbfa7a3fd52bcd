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
 *  (c) producer-side work per message: `MemoryClient.prepareAppend` (validation, key, ids,
 *      privacy, job contract; no I/O), median and p99 over 10,000 calls.
 * Prints a table and writes bench/results/latest.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import { loadMemoryResources } from '../src/config/load-memories.js';
import { buildConversations } from '../src/replay/corpus.js';
import { freePort, resolveDefaultRedis } from '../src/runtime/embedded-redis.js';
import { createMemoryStore } from '../src/store/memory-store.js';
import { createMemoryClient } from '../queues/memory-client.js';
import { QUEUES } from '../queues/names.js';
import { startWorkers } from '../processors/workers.js';

const quick = process.argv.includes('--quick');
const N = quick ? 1000 : 5000;
const CONCURRENCY = 16;
const MEMORIES = 50;

const registry = await loadMemoryResources('memories');
const texts = (await buildConversations({ limit: 500 })).conversations.flatMap((c) =>
  c.messages.map((m) => m.content),
);
const dataDir = mkdtempSync(join(tmpdir(), 'memq-bench-'));
const { url, embedded } = await resolveDefaultRedis(() => {}, {
  dataDir,
  defaultPort: await freePort(),
});
const log = pino({ level: 'silent' });
const connections: Redis[] = [];
const connect = (producer = false) => {
  const c = new Redis(url, { protocol: 2, maxRetriesPerRequest: producer ? 1 : null });
  connections.push(c);
  return c;
};

/**
 * Runs `enqueue(0..n-1)` with 64 calls in flight; seconds until `worker` has finished n jobs
 * (counted from its events: completed jobs are trimmed by retention, so queue counts cannot).
 */
async function timed(
  n: number,
  enqueue: (i: number) => Promise<void>,
  worker: Worker,
): Promise<number> {
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
  worker.off('completed', onFinished);
  worker.off('failed', onFinished);
  return seconds;
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
  const noopSeconds = await timed(
    N,
    (i) => noopQueue.add('noop', { i }).then(() => undefined),
    noopWorker,
  );
  await noopWorker.close();
  await noopQueue.close();

  // (b) memq single-message appends through the real processors.
  const prefix = '{bench-memq}';
  const producer = connect(true);
  const client = createMemoryClient({
    connection: producer,
    queuePrefix: prefix,
    registry,
    project: 'bench',
    store: createMemoryStore({ redis: producer, keyPrefix: 'bench:' }),
  });
  const workerConnection = connect();
  const workers = startWorkers({
    connection: workerConnection,
    queuePrefix: prefix,
    keyPrefix: 'bench:',
    concurrency: { append: CONCURRENCY, tokenCount: 2 },
    store: createMemoryStore({ redis: workerConnection, keyPrefix: 'bench:' }),
    registry,
    log,
  });
  await workers.ready;
  const appendQueue = new Queue(QUEUES.append, { connection: connect(), prefix });
  const appendSeconds = await timed(
    N,
    (i) =>
      client
        .append({ resource: 'customer-support', key: `thread:${i % MEMORIES}` }, [
          { role: i % 2 ? 'assistant' : 'user', content: texts[i % texts.length]! },
        ])
        .then(() => undefined),
    workers.workers[0]!,
  );
  const failed = (await appendQueue.getJobCounts('failed')).failed ?? 0;
  await workers.close();
  await appendQueue.close();

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

  const noopRate = N / noopSeconds;
  const appendRate = N / appendSeconds;
  const result = {
    when: new Date().toISOString(),
    node: process.version,
    jobs: N,
    concurrency: CONCURRENCY,
    ratios: { append_vs_noop: Number((appendRate / noopRate).toFixed(3)) },
    figures: {
      noop_jobs_per_second: { value: Math.round(noopRate), unit: 'jobs/s' },
      append_commits_per_second: { value: Math.round(appendRate), unit: 'messages/s' },
      append_failed_jobs: { value: failed, unit: 'jobs' },
      producer_prepare_median: { value: Number(median.toFixed(1)), unit: 'us/message' },
      producer_prepare_p99: { value: Number(p99.toFixed(1)), unit: 'us/message' },
    },
  };
  console.log(`memq bench (${N} jobs, concurrency ${CONCURRENCY}, ${process.version})`);
  console.log(
    `  (a) BullMQ no-op ceiling          ${result.figures.noop_jobs_per_second.value} jobs/s`,
  );
  console.log(
    `  (b) memq single-message appends   ${result.figures.append_commits_per_second.value} messages/s committed (${failed} failed)`,
  );
  console.log(
    `      append_vs_noop                ${result.ratios.append_vs_noop} (target >= 0.7)`,
  );
  console.log(
    `  (c) producer work per message     median ${result.figures.producer_prepare_median.value} us, p99 ${result.figures.producer_prepare_p99.value} us (target median < 50 us)`,
  );
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/latest.json', JSON.stringify(result, null, 2) + '\n');
} finally {
  await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
  await embedded?.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
