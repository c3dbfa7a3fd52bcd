/**
 * `npm run soak` (docs/reliability.md, "Soak"): memq at 70 % of its measured ceiling for 10 minutes; the
 * backlog must stay bounded, the worker's RSS flat (< 10 % growth after warm-up), no job failed.
 *
 *   npm run soak                        # ceiling measured first, then 10 min at 70 % of it
 *   npm run soak -- --minutes 2         # shorter
 *   npm run soak -- --rate 500          # a fixed rate instead of 70 % of the ceiling
 *
 * A private redis-server (AOF everysec, as `npm start`), one `memq work` process (defaults:
 * append concurrency 16), and this process as the producer. The ceiling is N = 3,000
 * single-message appends flat out (64 in flight), first enqueue to last completion. The soak
 * then paces single-message appends of real e-mail text into 500 customer-support conversations
 * (each grows past its 4,000-token window, so hybrid_summary flushes run throughout), and every
 * 10 s samples the worker's RSS (/proc/<pid>/status), the append backlog (waiting + delayed +
 * prioritized) and the failed jobs of every queue. Warm-up is the first 20 % of the run; RSS
 * growth compares the median of the minute after warm-up with the median of the last minute.
 * Prints a line every 30 s, writes bench/results/soak-latest.json, exits 1 when a target is
 * missed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { loadMemoryResources } from '../src/config/load-memories.js';
import { buildConversations } from '../src/replay/corpus.js';
import { createMemoryStore } from '../src/store/memory-store.js';
import { createMemoryClient } from '../queues/memory-client.js';
import { QUEUES } from '../queues/names.js';
import { startMemqProcess } from '../test/helpers/cli.js';
import { rssOf, startBenchRedis, untilDrained } from './harness.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
if (!(minutes > 0)) throw new Error(`--minutes: expected a positive number, got ${values.minutes}`);
const fixedRate = values.rate === undefined ? undefined : Number(values.rate);
if (fixedRate !== undefined && !(fixedRate > 0))
  throw new Error(`--rate: expected a positive number (messages/s), got ${values.rate}`);

/** Share of the measured ceiling the soak runs at (docs/reliability.md, "Soak"). */
const LOAD_SHARE = 0.7;
/** Appends of the ceiling measurement. */
const CEILING_JOBS = 3000;
const CONVERSATIONS = 500;
const SAMPLE_MS = 10_000;
/** RSS growth allowed after warm-up: under 10 % (docs/reliability.md, "Soak"). */
const MAX_RSS_GROWTH = 0.1;

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
};
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const registry = await loadMemoryResources('memories');
const texts = (await buildConversations({})).conversations.flatMap((c) =>
  c.messages.map((m) => m.content),
);
const redis = await startBenchRedis('soak');
const prefix = 'soak';
const worker = await startMemqProcess('work', {
  ...process.env,
  REDIS_URL: redis.url,
  MEMQ_KEY_PREFIX: `${prefix}:`,
  MEMQ_QUEUE_PREFIX: `{${prefix}}`,
  MEMQ_LOG_LEVEL: 'warn',
});
const producer = redis.connect(true);
const client = createMemoryClient({
  connection: producer,
  queuePrefix: `{${prefix}}`,
  registry,
  project: 'soak',
  store: createMemoryStore({ redis: producer, keyPrefix: `${prefix}:` }),
});
const queues = Object.values(QUEUES).map(
  (name) => new Queue(name, { connection: redis.connect(true), prefix: `{${prefix}}` }),
);
let sent = 0;
/** Appends message number `sent` (real e-mail text, conversation `sent % CONVERSATIONS`). */
const appendNext = (keyPrefix: string) => {
  const i = sent++;
  return client
    .append({ resource: 'customer-support', key: `${keyPrefix}:${i % CONVERSATIONS}` }, [
      { role: i % 2 ? 'assistant' : 'user', content: texts[i % texts.length]! },
    ])
    .then(() => undefined);
};

let exitCode = 0;
try {
  let rate = fixedRate;
  if (rate === undefined) {
    console.log(`soak: measuring the ceiling (${CEILING_JOBS} appends flat out)`);
    const started = performance.now();
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < CEILING_JOBS; i++) {
      while (inFlight.size >= 64) await Promise.race(inFlight);
      const p: Promise<void> = appendNext('ceiling').finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    await untilDrained(queues[0]!);
    const ceiling = CEILING_JOBS / ((performance.now() - started) / 1000);
    rate = ceiling * LOAD_SHARE;
    console.log(`soak: ceiling ${Math.round(ceiling)} messages/s; soaking at ${Math.round(rate)}`);
  }

  const samples: Array<{ at: number; rss: number; backlog: number; failed: number }> = [];
  const sample = async (at: number) => {
    const counts = await Promise.all(
      queues.map((q) => q.getJobCounts('waiting', 'delayed', 'prioritized', 'failed')),
    );
    const append = counts[0]!;
    samples.push({
      at,
      rss: rssOf(worker.pid),
      backlog: (append.waiting ?? 0) + (append.delayed ?? 0) + (append.prioritized ?? 0),
      failed: counts.reduce((sum, c) => sum + (c.failed ?? 0), 0),
    });
  };
  const durationMs = minutes * 60_000;
  const started = Date.now();
  const soakStartSent = sent;
  let nextSample = started;
  let nextLine = started + 30_000;
  const inFlight = new Set<Promise<void>>();
  while (Date.now() - started < durationMs) {
    const wait = started + ((sent - soakStartSent) * 1000) / rate - Date.now();
    if (wait > 0) await sleep(wait);
    while (inFlight.size >= 64) await Promise.race(inFlight);
    const p: Promise<void> = appendNext('soak').finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (Date.now() >= nextSample) {
      nextSample += SAMPLE_MS;
      await sample(Date.now() - started);
    }
    if (Date.now() >= nextLine) {
      nextLine += 30_000;
      const last = samples.at(-1)!;
      console.log(
        `soak: ${Math.round((Date.now() - started) / 1000)} s, ${sent - soakStartSent} sent, backlog ${last.backlog}, worker RSS ${Math.round(last.rss / 2 ** 20)} MiB, failed ${last.failed}`,
      );
    }
  }
  await Promise.all(inFlight);
  await sample(Date.now() - started);

  const warmupMs = durationMs * 0.2;
  const afterWarmup = samples.filter((s) => s.at >= warmupMs && s.at < warmupMs + 60_000);
  const lastMinute = samples.filter((s) => s.at >= durationMs - 60_000);
  const baselineRss = median(afterWarmup.map((s) => s.rss));
  const finalRss = median(lastMinute.map((s) => s.rss));
  const growth = baselineRss > 0 ? finalRss / baselineRss - 1 : 0;
  const steady = samples.filter((s) => s.at >= warmupMs);
  const maxBacklog = Math.max(...steady.map((s) => s.backlog));
  const failed = samples.at(-1)!.failed;
  /** Bounded: never more than 2 s of load waiting (a backlog that grows would pass it). */
  const backlogBound = Math.ceil(rate * 2);
  const result = {
    when: new Date().toISOString(),
    node: process.version,
    minutes,
    rate_messages_per_second: Math.round(rate),
    messages_sent: sent - soakStartSent,
    worker_rss_after_warmup_mib: Math.round(baselineRss / 2 ** 20),
    worker_rss_last_minute_mib: Math.round(finalRss / 2 ** 20),
    worker_rss_growth: Number(growth.toFixed(3)),
    max_backlog_after_warmup: maxBacklog,
    backlog_bound: backlogBound,
    failed_jobs: failed,
    samples,
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/soak-latest.json', JSON.stringify(result, null, 2) + '\n');
  const misses = [
    ...(growth >= MAX_RSS_GROWTH ? [`RSS grew ${(growth * 100).toFixed(1)} % (limit 10 %)`] : []),
    ...(maxBacklog > backlogBound ? [`backlog reached ${maxBacklog} (bound ${backlogBound})`] : []),
    ...(failed > 0 ? [`${failed} failed jobs`] : []),
  ];
  console.log(
    `soak: ${minutes} min at ${Math.round(rate)} messages/s, ${result.messages_sent} messages; worker RSS ${result.worker_rss_after_warmup_mib} -> ${result.worker_rss_last_minute_mib} MiB (${(growth * 100).toFixed(1)} %); max backlog ${maxBacklog} (bound ${backlogBound}); ${failed} failed jobs${misses.length ? `; MISSED: ${misses.join('; ')}` : '; all targets met'}`,
  );
  if (misses.length > 0) exitCode = 1;
} finally {
  await worker.stop();
  await Promise.all(queues.map((q) => q.close()));
  await client.close();
  await redis.stop();
}
process.exit(exitCode);
