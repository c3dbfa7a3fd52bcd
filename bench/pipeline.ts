/**
 * `npm run bench` (this file): memq side by side with what a user would otherwise run, on this
 * machine, in one run.
 *
 *   npm run bench            # 5,000 jobs per scenario, full token and flush benches (~6 min)
 *   npm run bench -- --quick # 1,000 jobs, quick token and flush benches (< 90 s)
 *
 * Starts a private redis-server on a free loopback port (AOF everysec, as `npm start` would),
 * then measures, one after the other:
 *  (a) BullMQ no-op ceiling: N single `add`s (64 in flight) of no-op jobs, consumed by one
 *      Worker at concurrency C, from the first add to the last completion;
 *  (b) memq appends: N single-message `MemoryClient.append` calls (64 in flight; 50 memories,
 *      real e-mail text, customer-support: privacy policy, exact counting, hybrid_summary
 *      flushing) consumed by memq's workers at the same C, from the first append to the last
 *      committed append job (enqueue -> committed); (b') the same with token counting deferred
 *      until after the timed window (the append path alone);
 *  (b'') the most (b) could reach on this machine: work every single-message append must do,
 *      measured in this run -- (a)'s BullMQ job, the producer's `prepareAppend` (mean, with
 *      redaction), an exact count of each distinct text, append.lua's Redis CPU -- on one Node
 *      main thread and on all cores; the smaller, over (a)'s rate, is `append_vs_noop_upper_bound`
 *      (everything else an append costs is left out, so it is an upper bound);
 *  (c) token-count pipeline vs a raw tokenizer loop over the same messages: `bench/tokens.ts`
 *      in a child process (its own private Redis), read from bench/results/tokens-latest.json;
 *  (d) the peer a user would pick instead: LangChain's RedisChatMessageHistory plus
 *      trimMessages to the same 4,000-token budget (bench/peer-langchain.ts), one message per
 *      turn (add, read back, trim), on the first 1,000 of the same texts in the same 50
 *      conversations at the same concurrency: as documented (the token counter recounts the
 *      history every turn, so the cost grows with the history: shorter histories favour it) and
 *      (d') hand-tuned with token counts memoized per content;
 *  (e) flush cost for 100 messages folded out of 1k / 10k / 100k-message memories:
 *      `bench/flush.ts` in a child process, from bench/results/flush-latest.json;
 *  (f) enqueue latency at 50 % of (a)'s ceiling: memq appends paced at half the no-op rate;
 *      p50/p99 of the `append` call (producer -> job in Redis) and of enqueue -> committed
 *      (`finishedOn - timestamp` of each append job);
 *  (g) worker peak RSS: this process (workers, producer, the corpus) sampled every 100 ms during
 *      (b), (b') and (f);
 *  (h) horizontal workers: the appends of (b) with 1 and with 2 `memq work` processes
 *      (`bench/workers.ts` in a child process, from bench/results/workers-latest.json).
 * Also the producer's work per message (`prepareAppend`: validation, key, ids, privacy; no I/O).
 * Prints a table and writes bench/results/latest.json: `ratios` (append_vs_noop,
 * tokencount_vs_raw, append_vs_langchain, flush_100k_vs_1k, two_vs_one_worker_process) and
 * `figures` with units.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Queue, Worker, type Job } from 'bullmq';
import { DEFAULT_TOKEN_COUNT_CONCURRENCY } from '../src/config/env.js';
import { loadMemoryResources } from '../src/config/load-memories.js';
import { buildConversations } from '../src/replay/corpus.js';
import { createTokenCounter, localEncodingFor } from '../src/tokens/counter.js';
import { createMemoryStore } from '../src/store/memory-store.js';
import { startBenchPipeline, startBenchRedis } from './harness.js';
import { runLangchainPeer } from './peer-langchain.js';

const quick = process.argv.includes('--quick');
const N = quick ? 1000 : 5000;
const CONCURRENCY = 16;
const MEMORIES = 50;
/** Messages the LangChain peer plays (20 per conversation; see (d)). */
const PEER_MESSAGES = 1000;

const registry = await loadMemoryResources('memories');
const texts = (await buildConversations({ limit: 500 })).conversations.flatMap((c) =>
  c.messages.map((m) => m.content),
);
/** customer-support's token budget: the peer trims to it as memq flushes to it. */
const BUDGET_TOKENS = registry.get('customer-support').maxTokens ?? 4000;

let peakRss = process.memoryUsage().rss;
const rssSampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 100);
rssSampler.unref();

/** Runs another bench file in a child process (its own private Redis) and reads its result. */
function childBench(file: string, resultFile: string): Record<string, unknown> {
  const run = spawnSync(
    process.execPath,
    ['--import', 'tsx', file, ...(quick ? ['--quick'] : [])],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (run.status !== 0) throw new Error(`${file} exited with ${run.status}`);
  return JSON.parse(readFileSync(resultFile, 'utf8')) as Record<string, unknown>;
}

const percentile = (sorted: readonly number[], p: number) =>
  sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
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

let redisStopped = false;
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
    const { client, workers, stopWorkers, close } = await startBenchPipeline(
      redis,
      prefix,
      registry,
      {
        appendConcurrency: CONCURRENCY,
        tokenCountConcurrency: DEFAULT_TOKEN_COUNT_CONCURRENCY,
      },
    );
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
    await stopWorkers();
    return { timing, failed, client, close };
  };
  const live = await runAppends('bench-memq', false);
  await live.close();
  const deferred = await runAppends('bench-memq-deferred', true);
  const client = deferred.client;

  // (f) enqueue latency at 50 % of the no-op ceiling.
  const paced = await startBenchPipeline(redis, 'bench-paced', registry, {
    appendConcurrency: CONCURRENCY,
    tokenCountConcurrency: DEFAULT_TOKEN_COUNT_CONCURRENCY,
  });
  const pacedRate = (N / noop.seconds) * 0.5;
  const callMs: number[] = [];
  const committedMs: number[] = [];
  const appendWorker = paced.workers.workers[0]!;
  const onCommitted = (job: Job) => {
    if (job.finishedOn !== undefined) committedMs.push(job.finishedOn - job.timestamp);
  };
  appendWorker.on('completed', onCommitted);
  {
    const started = performance.now();
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < N; i++) {
      const due = started + (i * 1000) / pacedRate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const t0 = performance.now();
      const p: Promise<void> = paced.client
        .append({ resource: 'customer-support', key: `paced:${i % MEMORIES}` }, [
          { role: i % 2 ? 'assistant' : 'user', content: texts[i % texts.length]! },
        ])
        .then(() => {
          callMs.push(performance.now() - t0);
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    const deadline = Date.now() + 120_000;
    while (committedMs.length < N && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
  }
  appendWorker.off('completed', onCommitted);
  await paced.close();
  callMs.sort((a, b) => a - b);
  committedMs.sort((a, b) => a - b);
  const rss = peakRss;

  // Producer-side work per message.
  const samples: number[] = [];
  for (let i = 0; i < 10_000; i++) {
    const t0 = performance.now();
    client.prepareAppend({ resource: 'customer-support', key: `thread:${i % MEMORIES}` }, [
      { role: 'user', content: texts[i % texts.length]! },
    ]);
    samples.push((performance.now() - t0) * 1000);
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)]!;
  const p99 = samples[Math.floor(samples.length * 0.99)]!;
  const prepareMeanUs = samples.reduce((sum, us) => sum + us, 0) / samples.length;

  // (b'') The most (b) could reach here, from work every single-message append must do, measured
  // now: BullMQ's own job lifecycle ((a), per job), the producer's preparation (mean of the
  // samples above: validation, ids, redaction), the exact count of each distinct text once (later
  // repeats hit the worker's count cache) and the Redis CPU of append.lua (sequential calls).
  // Everything else memq does per append (the worker's validation and redaction pass, token-count
  // and flush jobs, commit-tokens, metrics) is left out, so this is an upper bound.
  const support = registry.get('customer-support');
  const boundCounter = await createTokenCounter(
    localEncodingFor(support.tokenProvider.provider, support.tokenProvider.model),
  );
  const distinct = [...new Set(Array.from({ length: N }, (_, i) => texts[i % texts.length]!))];
  for (const text of distinct) boundCounter.countText(text); // warm-up, as (c) does
  const countStarted = performance.now();
  for (const text of distinct) boundCounter.countText(text);
  const countUsPerAppend = ((performance.now() - countStarted) * 1000) / N;
  const boundStore = createMemoryStore({ redis: admin, keyPrefix: 'bench-bound:' });
  const scriptCalls = Math.min(N, 2000);
  const prepared = Array.from({ length: scriptCalls }, (_, i) => {
    const { entry } = client.prepareAppend(
      { resource: 'customer-support', key: `bound:${i % MEMORIES}` },
      [{ role: i % 2 ? 'assistant' : 'user', content: texts[i % texts.length]! }],
    );
    return entry!;
  });
  const scriptRedisBefore = await redisCpuSeconds();
  for (const job of prepared) {
    await boundStore.append(job.ref, job.messages, support.persistence.ttlSeconds);
  }
  const appendScriptRedisUs = (((await redisCpuSeconds()) - scriptRedisBefore) * 1e6) / scriptCalls;
  await deferred.close();
  const cores = availableParallelism();
  // Producer and workers share one Node main thread here, as (a)'s queue and worker do.
  const mainThreadBound = 1e6 / (noop.nodeCpuUsPerJob + prepareMeanUs);
  const cpuBound =
    (cores * 1e6) /
    (noop.nodeCpuUsPerJob +
      noop.redisCpuUsPerJob +
      prepareMeanUs +
      countUsPerAppend +
      appendScriptRedisUs);

  // (d) LangChain on the first PEER_MESSAGES of the same texts, in the same 50 conversations,
  // at the same concurrency: as documented (recounting every turn) and with memoized counts. Its
  // per-turn cost grows with a conversation's history, so the shorter histories favour it.
  const conversations = Array.from({ length: MEMORIES }, (_, m) => ({
    key: `thread:${m}`,
    messages: Array.from({ length: Math.ceil((PEER_MESSAGES - m) / MEMORIES) }, (_, j) => {
      const i = m + j * MEMORIES;
      return {
        role: i % 2 ? ('assistant' as const) : ('user' as const),
        content: texts[i % texts.length]!,
      };
    }),
  }));
  const peerRun = (memoizeCounts: boolean) =>
    runLangchainPeer({
      redisUrl: redis.url,
      keyPrefix: `bench-langchain-${memoizeCounts ? 'memo' : 'doc'}:`,
      conversations,
      budgetTokens: BUDGET_TOKENS,
      concurrency: CONCURRENCY,
      memoizeCounts,
    });
  const peer = await peerRun(false);
  const peerMemo = await peerRun(true);

  // (c) and (e) in child processes (each starts its own private Redis).
  await redis.stop();
  redisStopped = true;
  const tokens = childBench('bench/tokens.ts', 'bench/results/tokens-latest.json') as {
    ratios: { pipeline_vs_raw: number; count_vs_cache_hit: number };
    figures: {
      raw_messages_per_second: { value: number; unit: string };
      pipeline_messages_per_second: { value: number; unit: string };
    };
  };
  const flush = childBench('bench/flush.ts', 'bench/results/flush-latest.json') as {
    sizes: number[];
    ratios: { large_vs_small: number };
    figures: Record<string, { value: number; unit: string }>;
  };
  const horizontal = childBench('bench/workers.ts', 'bench/results/workers-latest.json') as {
    ratios: { two_vs_one_process: number };
    figures: Record<string, { value: number; unit: string }>;
  };
  clearInterval(rssSampler);

  const noopRate = N / noop.seconds;
  const appendRate = N / live.timing.seconds;
  const deferredRate = N / deferred.timing.seconds;
  const largest = flush.sizes.at(-1)!;
  const cpu = (t: Timing) => ({
    node: { value: t.nodeCpuUsPerJob, unit: 'us/job' },
    redis: { value: t.redisCpuUsPerJob, unit: 'us/job' },
  });
  const result = {
    when: new Date().toISOString(),
    node: process.version,
    quick,
    jobs: N,
    concurrency: CONCURRENCY,
    ratios: {
      append_vs_noop: Number((appendRate / noopRate).toFixed(3)),
      tokencount_vs_raw: tokens.ratios.pipeline_vs_raw,
      append_vs_langchain: Number((appendRate / peer.messagesPerSecond).toFixed(2)),
      append_vs_langchain_memoized: Number((appendRate / peerMemo.messagesPerSecond).toFixed(3)),
      // With --quick the largest memory is 20k messages, not 100k (see `figures.flush_sizes`).
      flush_100k_vs_1k: flush.ratios.large_vs_small,
      two_vs_one_worker_process: horizontal.ratios.two_vs_one_process,
      append_deferred_counting_vs_noop: Number((deferredRate / noopRate).toFixed(3)),
      append_vs_noop_upper_bound: Number(
        (Math.min(mainThreadBound, cpuBound) / noopRate).toFixed(3),
      ),
    },
    targets: {
      append_vs_noop: '>= 0.7',
      tokencount_vs_raw: '>= 0.9',
      append_vs_langchain: '>= 20',
      flush_100k_vs_1k: '<= 2',
      worker_peak_rss: '< 300 MB',
    },
    figures: {
      noop_jobs_per_second: { value: Math.round(noopRate), unit: 'jobs/s' },
      append_commits_per_second: { value: Math.round(appendRate), unit: 'messages/s' },
      append_deferred_counting_commits_per_second: {
        value: Math.round(deferredRate),
        unit: 'messages/s',
      },
      append_failed_jobs: { value: live.failed + deferred.failed, unit: 'jobs' },
      tokencount_raw_messages_per_second: tokens.figures.raw_messages_per_second,
      tokencount_pipeline_messages_per_second: tokens.figures.pipeline_messages_per_second,
      token_cache_hit_vs_count: { value: tokens.ratios.count_vs_cache_hit, unit: 'x' },
      langchain_messages_per_second: {
        value: Math.round(peer.messagesPerSecond),
        unit: `messages/s (add + read + trimMessages, recounting every turn; ${PEER_MESSAGES} messages)`,
      },
      langchain_memoized_messages_per_second: {
        value: Math.round(peerMemo.messagesPerSecond),
        unit: `messages/s (the same with token counts memoized per content; ${PEER_MESSAGES} messages)`,
      },
      flush_sizes: { value: flush.sizes, unit: 'messages' },
      ...Object.fromEntries(Object.entries(flush.figures)),
      paced_rate: { value: Math.round(pacedRate), unit: 'messages/s (50 % of the no-op ceiling)' },
      paced_enqueue_call_p50: { value: Number(percentile(callMs, 50).toFixed(2)), unit: 'ms' },
      paced_enqueue_call_p99: { value: Number(percentile(callMs, 99).toFixed(2)), unit: 'ms' },
      paced_committed_p50: { value: percentile(committedMs, 50), unit: 'ms enqueue -> committed' },
      paced_committed_p99: { value: percentile(committedMs, 99), unit: 'ms enqueue -> committed' },
      paced_committed_samples: { value: committedMs.length, unit: 'jobs' },
      worker_peak_rss: { value: Math.round(rss / 2 ** 20), unit: 'MiB' },
      one_worker_process_messages_per_second: horizontal.figures.one_process_messages_per_second!,
      two_worker_processes_messages_per_second:
        horizontal.figures.two_processes_messages_per_second!,
      producer_prepare_median: { value: Number(median.toFixed(1)), unit: 'us/message' },
      producer_prepare_p99: { value: Number(p99.toFixed(1)), unit: 'us/message' },
      producer_prepare_mean: { value: Number(prepareMeanUs.toFixed(1)), unit: 'us/message' },
      bound_count_per_append: { value: Number(countUsPerAppend.toFixed(1)), unit: 'us/message' },
      bound_append_script_redis: {
        value: Number(appendScriptRedisUs.toFixed(1)),
        unit: 'us of Redis CPU per append.lua call',
      },
      bound_main_thread: { value: Math.round(mainThreadBound), unit: 'messages/s' },
      bound_cpu: { value: Math.round(cpuBound), unit: `messages/s on ${cores} cores` },
    },
    cpu_per_job: {
      noop: cpu(noop),
      append: cpu(live.timing),
      append_deferred: cpu(deferred.timing),
    },
  };
  const cpuText = (t: Timing) =>
    `node ${t.nodeCpuUsPerJob} us/job, redis ${t.redisCpuUsPerJob} us/job`;
  const f = result.figures;
  const rows: Array<[string, string, string]> = [
    ['(a) BullMQ no-op ceiling', `${f.noop_jobs_per_second.value} jobs/s`, cpuText(noop)],
    [
      '(b) memq single-message appends',
      `${f.append_commits_per_second.value} messages/s`,
      `append_vs_noop ${result.ratios.append_vs_noop} (target >= 0.7); ${cpuText(live.timing)}`,
    ],
    [
      "(b'') upper bound for (b)",
      `${Math.round(Math.min(mainThreadBound, cpuBound))} messages/s`,
      `append_vs_noop <= ${result.ratios.append_vs_noop_upper_bound}: main thread (no-op job ${noop.nodeCpuUsPerJob} + prepare mean ${prepareMeanUs.toFixed(0)} us) ${Math.round(mainThreadBound)}/s; ${cores} cores (+ Redis ${noop.redisCpuUsPerJob} + count ${countUsPerAppend.toFixed(0)} + append.lua ${appendScriptRedisUs.toFixed(0)} us) ${Math.round(cpuBound)}/s`,
    ],
    [
      "(b') same, counting deferred",
      `${f.append_deferred_counting_commits_per_second.value} messages/s`,
      `${result.ratios.append_deferred_counting_vs_noop} of no-op; ${cpuText(deferred.timing)}`,
    ],
    [
      '(c) token-count pipeline',
      `${f.tokencount_pipeline_messages_per_second.value} messages/s`,
      `raw loop ${f.tokencount_raw_messages_per_second.value}/s: tokencount_vs_raw ${result.ratios.tokencount_vs_raw} (target >= 0.9); cache hit ${tokens.ratios.count_vs_cache_hit}x cheaper`,
    ],
    [
      '(d) LangChain RedisChatMessageHistory',
      `${f.langchain_messages_per_second.value} messages/s`,
      `+ trimMessages to ${BUDGET_TOKENS} tokens, as documented: append_vs_langchain ${result.ratios.append_vs_langchain} (target >= 20)`,
    ],
    [
      "(d') the same, counts memoized",
      `${f.langchain_memoized_messages_per_second.value} messages/s`,
      `hand-tuned: append_vs_langchain_memoized ${result.ratios.append_vs_langchain_memoized}`,
    ],
    [
      '(e) flush, fold 100 messages',
      flush.sizes
        .map((size) => `${size}: ${flush.figures[`flush_${size}_median`]!.value} ms`)
        .join(', '),
      `flush_${largest >= 100_000 ? '100k' : `${largest / 1000}k`}_vs_1k ${result.ratios.flush_100k_vs_1k} (target <= 2)`,
    ],
    [
      '(f) at 50 % of the ceiling',
      `${f.paced_rate.value} messages/s`,
      `append call p50 ${f.paced_enqueue_call_p50.value} / p99 ${f.paced_enqueue_call_p99.value} ms; enqueue -> committed p50 ${f.paced_committed_p50.value} / p99 ${f.paced_committed_p99.value} ms`,
    ],
    [
      '(g) worker peak RSS',
      `${f.worker_peak_rss.value} MiB`,
      'target < 300 MB (workers, producer and corpus in one process)',
    ],
    [
      '(h) memq work processes: 1 / 2',
      `${f.one_worker_process_messages_per_second.value} / ${f.two_worker_processes_messages_per_second.value} messages/s`,
      `x${result.ratios.two_vs_one_worker_process} with a second process (bench/workers.ts; 2 cores shared with Redis and the producer)`,
    ],
    [
      'producer work per message',
      `median ${f.producer_prepare_median.value} us`,
      `p99 ${f.producer_prepare_p99.value} us (target median < 50 us)`,
    ],
  ];
  console.log(
    `\nmemq bench (${N} jobs, concurrency ${CONCURRENCY}, ${process.version}${quick ? ', --quick' : ''})`,
  );
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  for (const [name, value, note] of rows)
    console.log(`  ${name.padEnd(w0)}  ${value.padEnd(w1)}  ${note}`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/latest.json', JSON.stringify(result, null, 2) + '\n');
} finally {
  clearInterval(rssSampler);
  if (!redisStopped) await redis.stop();
}
