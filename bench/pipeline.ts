/**
 * `npm run bench` (this file): memq side by side with what a user would otherwise run, on this
 * machine, in one run.
 *
 *   npm run bench            # 5 rounds of 5,000 messages per scenario, full sub-benches (~10 min)
 *   npm run bench -- --quick # 3 rounds of 1,000, quick sub-benches (~2 min)
 *   npm run bench -- --profile # also where the main thread's time goes in an extra (b) round
 *
 * This machine's speed drifts by up to 2-3x between minutes, so every ratio comes from rounds of
 * the two scenarios it compares run one after the other (A B A B ...), one ratio per round (the
 * adjacent pair), reported as the median with the min-max of the rounds. Each round starts from
 * fresh queues and key prefixes.
 *
 * Starts a private redis-server on a free loopback port (AOF everysec, as `npm start` would),
 * then, in each of ROUNDS rounds:
 *  (a) BullMQ no-op ceiling: N single `add`s (64 in flight) of no-op jobs, consumed by one
 *      Worker at concurrency C, from the first add to the last completion;
 *  (b) memq appends: N single-message `MemoryClient.append` calls from 64 concurrent callers
 *      (50 memories, real e-mail text, customer-support: privacy policy, exact counting,
 *      hybrid_summary flushing; group commit on, memq's default) consumed by memq's workers at the
 *      same C, from the first append until every message's append job has completed (enqueue ->
 *      committed); then, untimed, until every memory's counts are exact (the round only counts if
 *      they are). Node CPU (this process: producer, workers, counting thread) and Redis CPU per
 *      message, in the timed window and up to exact counts;
 *  (d') LangChain's RedisChatMessageHistory plus trimMessages to the same 4,000-token budget
 *      (bench/peer-langchain.ts), hand-tuned with token counts memoized per content, one message
 *      per turn (add, read back, trim), on the first PEER_MESSAGES of the same texts in the same
 *      50 conversations at the same concurrency;
 *  (d) the same as LangChain documents it (the token counter recounts the history every turn, so
 *      the cost grows with the history: shorter histories favour it), in the first DOC_ROUNDS
 *      rounds only (it is slow).
 * Ratios per round: append_vs_noop = (b)/(a), append_vs_langchain_memoized = (b)/(d'),
 * append_vs_langchain = (b)/(d).
 * Then:
 *  (f) latency at 10 % of (a)'s median rate: LATENCY_ROUNDS rounds each of LATENCY_SECONDS of
 *      appends paced at that rate (one caller per message, 50 memories) through two pipelines
 *      started once, group commit on and off (`appendBatch: { maxMessages: 1 }`), alternating
 *      (on off, off on, ...; each run waits for its counting and flushes to finish, and an
 *      untimed second of each warms them up); per message enqueue -> committed is
 *      from the `append` call to the local `completed` event of the job that carries it; the
 *      figure is p50(on) - p50(off) per adjacent pair (target <= +1 ms);
 *  (f') the same at 10 % of (b)'s median rate: a light load for memq whatever (b)/(a) is (while
 *      (b) is far below (a), 10 % of (a) is half of what memq sustains, so (f) is mostly
 *      queueing);
 *  (g) worker peak RSS: a compiled `memq work` process (`npm run -s build`, then `node
 *      dist/src/main.js work` on this run's Redis) sampled every 100 ms while this process
 *      replays the whole ham corpus into it (`memq replay --no-workers`: runReplay with a
 *      producer-only runtime); target < 250 MiB;
 *  (c) token-count pipeline vs a raw tokenizer loop: `bench/tokens.ts` in a child process (its
 *      own private Redis; 9 alternating rounds), from bench/results/tokens-latest.json;
 *  (e) flush cost for 100 messages folded out of 1k and 100k-message memories (alternating
 *      rounds): `bench/flush.ts` in a child process, from bench/results/flush-latest.json;
 *  (h) horizontal workers: appends with 1 and with 2 compiled `memq work` processes on one Redis
 *      and on a 3-master Redis Cluster (alternating rounds): `bench/workers.ts` in a child
 *      process, from bench/results/workers-latest.json.
 * Also the producer's work per message (`prepareAppend`: validation, key, ids, privacy; no I/O),
 * and with `--profile` the main thread's time in an extra (b) round by part (profileShares).
 * Prints a table with each target met or missed and writes bench/results/latest.json: `ratios`
 * (each `{ median, min, max, rounds }`), `targets`, `met`, `figures` with units, `cpu_per_message`,
 * `worker_memory_replay` (what (g)'s replay reported) and, with --profile, `main_thread_profile`.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session, type Profiler } from 'node:inspector/promises';
import pino from 'pino';
import { Queue, Worker, type Job } from 'bullmq';
import { DEFAULT_TOKEN_COUNT_CONCURRENCY, loadEnvConfig } from '../src/config/env.js';
import { loadMemoryResources } from '../src/config/load-memories.js';
import { runReplay } from '../src/replay/replay.js';
import { startRuntime } from '../src/runtime/runtime.js';
import {
  corpusTexts,
  buildDist,
  formatSummary,
  messagesOf,
  redisCpuSeconds,
  rssOf,
  startBenchPipeline,
  startBenchRedis,
  startCompiledWorker,
  summarize,
  untilDrained,
  type RoundSummary,
} from './harness.js';
import { runLangchainPeer } from './peer-langchain.js';

const quick = process.argv.includes('--quick');
/**
 * `--profile`: after the rounds, one more (b) round (not in any ratio: the profiler slows it)
 * with this process's main thread sampled (see profileShares).
 */
const profiling = process.argv.includes('--profile');
/** Messages (or no-op jobs) per scenario per round. */
const N = quick ? 1000 : 5000;
/** Rounds of (a), (b) and (d'). */
const ROUNDS = quick ? 3 : 5;
/** Rounds that also run (d), LangChain as documented (~30 s each for 1,000 messages here). */
const DOC_ROUNDS = quick ? 1 : 3;
const CONCURRENCY = 16;
/** Appends (or adds) in flight at once in (a) and (b): the concurrent callers. */
const CALLERS = 64;
const MEMORIES = 50;
/** Messages the LangChain peer plays per round (20 per conversation; 10 with --quick). */
const PEER_MESSAGES = quick ? 500 : 1000;
/** (f)'s rate, as a share of (a)'s median rate. */
const LATENCY_SHARE = 0.1;
/** (f)'s and (f')'s rounds per setting (on, off), and each round's length, seconds. */
const LATENCY_ROUNDS = quick ? 3 : 8;
const LATENCY_SECONDS = quick ? 2 : 3;
/** Messages (g) replays: the whole ham corpus (1,000 with --quick). */
const REPLAY_LIMIT = quick ? 1000 : undefined;

/**
 * memq's performance targets (the medians of the rounds are checked), as printed and written;
 * `check` says whether a figure meets it. append_vs_noop, append_vs_langchain_memoized, the
 * latency delta and the worker's RSS are the group-commit work's targets; the others are kept
 * from before it.
 */
const TARGETS = {
  append_vs_noop: { text: '>= 0.8', check: (v: number) => v >= 0.8 },
  append_vs_langchain_memoized: { text: '>= 2', check: (v: number) => v >= 2 },
  append_vs_langchain: { text: '>= 20', check: (v: number) => v >= 20 },
  tokencount_vs_raw: { text: '>= 0.9', check: (v: number) => v >= 0.9 },
  flush_100k_vs_1k: { text: '<= 2', check: (v: number) => v <= 2 },
  batching_committed_p50_delta_ms: { text: '<= +1 ms', check: (v: number) => v <= 1 },
  worker_peak_rss_mib: { text: '< 250 MiB', check: (v: number) => v < 250 },
} as const;

const registry = await loadMemoryResources('memories');
const texts = await corpusTexts(500);
/** customer-support's token budget: the peer trims to it as memq flushes to it. */
const BUDGET_TOKENS = registry.get('customer-support').maxTokens ?? 4000;
const message = (i: number) => ({
  role: i % 2 ? ('assistant' as const) : ('user' as const),
  content: texts[i % texts.length]!,
});

/** Runs another bench file in a child process (its own private Redis) and reads its result. */
function childBench(file: string, resultFile: string, args: string[] = []): unknown {
  const run = spawnSync(
    process.execPath,
    ['--import', 'tsx', file, ...(quick ? ['--quick'] : []), ...args],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (run.status !== 0) throw new Error(`${file} exited with ${run.status}`);
  return JSON.parse(readFileSync(resultFile, 'utf8'));
}

/** The value at percentile `p` (0-100) of ascending `sorted`; 0 when empty. */
const percentile = (sorted: readonly number[], p: number) =>
  sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const median = (values: readonly number[]) => summarize(values, 6).median;

const redis = await startBenchRedis('pipeline');
const admin = redis.connect();

const benchStarted = performance.now();
/** Prints that `what` is done, with the minutes since the bench started. */
const done = (what: string) =>
  console.log(`  ${what} done at ${((performance.now() - benchStarted) / 60_000).toFixed(1)} min`);

/** CPU of a timed scenario, microseconds per message (or no-op job). */
interface CpuPerMessage {
  /** This process, every thread (producer, workers, counting thread). */
  readonly node: number;
  /** The Redis server. */
  readonly redis: number;
}

/** A timed scenario. */
interface Timing {
  readonly seconds: number;
  readonly perSecond: number;
  readonly cpu: CpuPerMessage;
}

/** Starts CPU clocks; the returned function gives the CPU since, per message of `n`. */
async function cpuSince(): Promise<(n: number) => Promise<CpuPerMessage>> {
  const node = process.cpuUsage();
  const redisBefore = await redisCpuSeconds(admin);
  return async (n) => {
    const used = process.cpuUsage(node);
    const redisSeconds = (await redisCpuSeconds(admin)) - redisBefore;
    return {
      node: Math.round((used.user + used.system) / n),
      redis: Math.round((redisSeconds * 1e6) / n),
    };
  };
}

/**
 * Runs `enqueue(0..n-1)` with {@link CALLERS} calls in flight until `worker`'s finished jobs
 * carry n messages (counted from its events with {@link messagesOf}: completed jobs are trimmed
 * by retention, so queue counts cannot). Returns the timing and how many messages' jobs failed.
 */
async function timed(
  n: number,
  enqueue: (i: number) => Promise<void>,
  worker: Worker,
): Promise<{ timing: Timing; failed: number }> {
  const cpu = await cpuSince();
  let finished = 0;
  let failed = 0;
  const onCompleted = (job: Job) => (finished += messagesOf(job));
  const onFailed = (job: Job | undefined) => {
    const size = job ? messagesOf(job) : 1;
    finished += size;
    failed += size;
  };
  worker.on('completed', onCompleted);
  worker.on('failed', onFailed);
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < n; i++) {
    while (inFlight.size >= CALLERS) await Promise.race(inFlight);
    const p: Promise<void> = enqueue(i).finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  while (finished < n) await new Promise((r) => setTimeout(r, 5));
  const seconds = (performance.now() - started) / 1000;
  worker.off('completed', onCompleted);
  worker.off('failed', onFailed);
  return { timing: { seconds, perSecond: n / seconds, cpu: await cpu(n) }, failed };
}

/** (a): N no-op jobs through BullMQ under a fresh prefix. */
async function runNoop(round: number): Promise<Timing> {
  const prefix = `{bench-noop-${round}}`;
  const queue = new Queue('noop', { connection: redis.connect(true), prefix });
  const worker = new Worker('noop', () => Promise.resolve(undefined), {
    connection: redis.connect(),
    prefix,
    concurrency: CONCURRENCY,
  });
  await worker.waitUntilReady();
  const { timing } = await timed(N, (i) => queue.add('noop', { i }).then(() => undefined), worker);
  await worker.close();
  await queue.close();
  return timing;
}

/**
 * Where the main thread's time went in a CPU profile (V8's sampling profiler, through
 * node:inspector), as shares of the sampled time, 0-1. A sample goes to the first of these found
 * on its stack from the root: the producer (queues/producer.ts, memory-client.ts,
 * append-batcher.ts: validation, redaction, ids, enqueue), the append, token-count and flush
 * processors (processors/*.ts, with the store calls and scripts they make); else to garbage
 * collection or idle (V8's own pseudo-frames); else to "bullmq_ioredis_other" (BullMQ's job
 * fetching and completion, ioredis reply parsing, timers, the bench's own loop). `redaction`
 * overlaps the others: samples with src/core/privacy.ts on the stack, wherever it was called.
 */
function profileShares(profile: Profiler.Profile): Record<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const categories: Array<[string, RegExp]> = [
    ['producer', /\/queues\/(producer|memory-client|append-batcher)\.ts$/],
    ['append_processor', /\/processors\/append\.ts$/],
    ['token_count_processor', /\/processors\/token-count\.ts$/],
    ['flush_processor', /\/processors\/flush\.ts$/],
  ];
  const time = new Map<string, number>();
  let total = 0;
  const add = (key: string, us: number) => time.set(key, (time.get(key) ?? 0) + us);
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  samples.forEach((leaf, i) => {
    const us = deltas[i] ?? 0;
    const stack: string[] = [];
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id))
      stack.push(byId.get(id)!.callFrame.url);
    // The profiler's own work (starting and stopping it) is left out.
    if (stack.includes('node:inspector')) return;
    total += us;
    const fromRoot = stack.reverse();
    const category = fromRoot
      .map((url) => categories.find(([, pattern]) => pattern.test(url))?.[0])
      .find((c) => c !== undefined);
    const leafName = byId.get(leaf)!.callFrame.functionName;
    add(
      category ??
        (leafName === '(garbage collector)'
          ? 'garbage_collection'
          : leafName === '(idle)'
            ? 'idle'
            : 'bullmq_ioredis_other'),
      us,
    );
    if (fromRoot.some((url) => url.endsWith('/src/core/privacy.ts'))) add('redaction', us);
  });
  return Object.fromEntries(
    [...time].map(([key, us]) => [key, Number((us / Math.max(1, total)).toFixed(3))]),
  );
}

/** What one (b) round measured. */
interface AppendRound {
  readonly timing: Timing;
  /** CPU from the first append until every memory's counts were exact, per message. */
  readonly settledCpu: CpuPerMessage;
  /** Of `settledCpu.node`: the counting thread's time spent counting, us per message. */
  readonly countingUs: number;
  /** Append jobs the N messages went in (group commit). */
  readonly jobs: number;
  readonly failed: number;
  /** With `profile`: {@link profileShares} of the timed window. */
  readonly profile?: Record<string, number>;
}

/**
 * (b): N single-message appends through memq under fresh prefixes; with `profile`, the main
 * thread is sampled during the timed window.
 */
async function runAppends(round: number, profile = false): Promise<AppendRound> {
  const { client, workers, metrics, close } = await startBenchPipeline(
    redis,
    `bench-memq-${round}`,
    registry,
    { appendConcurrency: CONCURRENCY, tokenCountConcurrency: DEFAULT_TOKEN_COUNT_CONCURRENCY },
  );
  const busySeconds = async () =>
    (await metrics.countingThreadBusy.get()).values.reduce((sum, v) => sum + v.value, 0);
  const busyBefore = await busySeconds();
  const targets = Array.from({ length: MEMORIES }, (_, m) => ({
    resource: 'customer-support',
    key: `thread:${m}`,
  }));
  let jobs = 0;
  const countJob = () => (jobs += 1);
  const appendWorker = workers.workers[0]!;
  appendWorker.on('completed', countJob);
  const session = profile ? new Session() : undefined;
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  const settled = await cpuSince();
  const { timing, failed } = await timed(
    N,
    (i) => client.append(targets[i % MEMORIES]!, [message(i)]).then(() => undefined),
    appendWorker,
  );
  appendWorker.off('completed', countJob);
  let shares: Record<string, number> | undefined;
  if (session) {
    shares = profileShares((await session.post('Profiler.stop')).profile);
    session.disconnect();
  }
  // Every memory ends with exact counts (the round only counts if it does): wait for the
  // debounced token-count jobs and the flushes they trigger, then check each memory.
  const deadline = Date.now() + 120_000;
  for (;;) {
    await untilDrained(workers.queues.tokenCount);
    await untilDrained(workers.queues.flush);
    let exact = true;
    for (const target of targets) {
      if (!(await client.read(target, { limit: 1 })).exact) exact = false;
    }
    if (exact) break;
    if (Date.now() > deadline) throw new Error(`round ${round}: counts not exact after 120 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const settledCpu = await settled(N);
  const countingUs = Math.round((((await busySeconds()) - busyBefore) * 1e6) / N);
  await close();
  return { timing, settledCpu, countingUs, jobs, failed, ...(shares ? { profile: shares } : {}) };
}

/** The peer's conversations: the first `messages` texts, in the same 50 conversations as (b). */
const peerConversations = (messages: number) =>
  Array.from({ length: MEMORIES }, (_, m) => ({
    key: `thread:${m}`,
    messages: Array.from({ length: Math.ceil((messages - m) / MEMORIES) }, (_, j) =>
      message(m + j * MEMORIES),
    ),
  }));

/** (d) or (d'): LangChain on PEER_MESSAGES messages, messages/s. */
async function runPeer(round: number, memoizeCounts: boolean): Promise<number> {
  const result = await runLangchainPeer({
    redisUrl: redis.url,
    keyPrefix: `bench-langchain-${memoizeCounts ? 'memo' : 'doc'}-${round}:`,
    conversations: peerConversations(PEER_MESSAGES),
    budgetTokens: BUDGET_TOKENS,
    concurrency: CONCURRENCY,
    memoizeCounts,
  });
  return result.messagesPerSecond;
}

/** What one (f) round measured: enqueue -> committed and the `append` call, ms. */
interface LatencyRound {
  readonly committedMs: number[];
  readonly callMs: number[];
  readonly jobs: number;
}

/** (f)'s two pipelines: group commit on (memq's default) and off (`maxMessages: 1`). */
type LatencyPipelines = Record<'on' | 'off', Awaited<ReturnType<typeof startBenchPipeline>>>;

/**
 * (f): appends paced at `rate`/s for `seconds` through `pipeline` (keys `paced:<round>:<m>`),
 * then, untimed, until its token-count and flush queues are drained (so nothing of this run
 * spills into the next one).
 */
async function runLatency(
  pipeline: LatencyPipelines['on'],
  round: number,
  rate: number,
  seconds: number,
): Promise<LatencyRound> {
  const n = Math.max(1, Math.round(rate * seconds));
  /** performance.now() of each job's local `completed` event, by job id. */
  const completedAt = new Map<string, number>();
  const worker = pipeline.workers.workers[0]!;
  const onCompleted = (job: Job) => completedAt.set(job.id!, performance.now());
  worker.on('completed', onCompleted);
  const sent: Array<{ started: number; jobId: string }> = [];
  const callMs: number[] = [];
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < n; i++) {
    const wait = started + (i * 1000) / rate - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const t0 = performance.now();
    const p: Promise<void> = pipeline.client
      .append({ resource: 'customer-support', key: `paced:${round}:${i % MEMORIES}` }, [message(i)])
      .then((receipt) => {
        callMs.push(performance.now() - t0);
        sent.push({ started: t0, jobId: receipt.jobId! });
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  const deadline = Date.now() + 120_000;
  while (sent.some((s) => !completedAt.has(s.jobId))) {
    if (Date.now() > deadline) throw new Error(`(f) round ${round}: jobs not completed in 120 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
  worker.off('completed', onCompleted);
  await untilDrained(pipeline.workers.queues.tokenCount);
  await untilDrained(pipeline.workers.queues.flush);
  return {
    committedMs: sent.map((s) => completedAt.get(s.jobId)! - s.started).sort((a, b) => a - b),
    callMs: callMs.sort((a, b) => a - b),
    jobs: new Set(sent.map((s) => s.jobId)).size,
  };
}

/** What (g) measured: the compiled worker's RSS, MiB, and the replay's report. */
async function runWorkerMemory(): Promise<{
  idleMiB: number;
  peakMiB: number;
  messages: number;
  seconds: number;
  failedJobs: number;
  replay: Record<string, number>;
}> {
  buildDist();
  const prefix = 'bench-rss';
  const vars = {
    REDIS_URL: redis.url,
    MEMQ_KEY_PREFIX: `${prefix}:`,
    MEMQ_QUEUE_PREFIX: `{${prefix}}`,
    MEMQ_PROJECT: 'bench',
    MEMQ_LOG_LEVEL: 'warn',
  };
  const worker = await startCompiledWorker({ ...process.env, ...vars });
  const log = pino({ level: 'silent' });
  const runtime = await startRuntime({
    env: loadEnvConfig(vars),
    redisUrl: redis.url,
    registry,
    log,
    workers: false,
  });
  try {
    const idle = rssOf(worker.pid);
    let peak = idle;
    const sampler = setInterval(() => (peak = Math.max(peak, rssOf(worker.pid))), 100);
    const report = await runReplay(
      {
        client: runtime.client,
        store: runtime.store,
        connection: runtime.producerConnection,
        queuePrefix: `{${prefix}}`,
        project: 'bench',
        log,
      },
      { memory: 'customer-support', ...(REPLAY_LIMIT ? { limit: REPLAY_LIMIT } : {}) },
    );
    clearInterval(sampler);
    peak = Math.max(peak, rssOf(worker.pid));
    return {
      idleMiB: Math.round(idle / 2 ** 20),
      peakMiB: Math.round(peak / 2 ** 20),
      messages: report.messagesEnqueued,
      seconds: report.elapsedSeconds,
      failedJobs: report.failedJobs + report.enqueueErrors,
      replay: {
        messages_enqueued: report.messagesEnqueued,
        messages_accepted: report.messagesAccepted,
        messages_stored: report.messagesStored,
        messages_folded: report.messagesFolded,
        summaries: report.summaries,
        redactions: report.redactions,
        exact_memories: report.exactMemories,
        threads: report.threads,
        seconds: Number(report.elapsedSeconds.toFixed(2)),
        messages_per_second: Math.round(report.throughputPerSecond),
        committed_p50_ms: report.latencyMs.p50,
        committed_p99_ms: report.latencyMs.p99,
      },
    };
  } finally {
    await runtime.close();
    await worker.stop();
  }
}

/** What {@link latencyAt} measured at one rate. */
interface LatencyResult {
  /** The paced rate, messages/s. */
  readonly rate: number;
  /** Per round: p50(on) - p50(off) of enqueue -> committed, ms. */
  readonly p50Delta: RoundSummary;
  /** Median over the rounds of the `p`th percentile of `of` with group commit `setting`, ms. */
  readonly figure: (of: 'committedMs' | 'callMs', p: number, setting: 'on' | 'off') => number;
  /** Median over the rounds of messages per append job with group commit on. */
  readonly messagesPerJob: number;
}

/**
 * (f): LATENCY_ROUNDS alternating rounds (on off, off on, ...) of LATENCY_SECONDS of appends
 * paced at `rate` through two pipelines started for it, group commit on and off, after an
 * untimed second of each (each pipeline's counting thread loads its encoder).
 */
async function latencyAt(rate: number): Promise<LatencyResult> {
  const start = (batching: boolean) =>
    startBenchPipeline(
      redis,
      `bench-paced-${Math.round(rate)}-${batching ? 'on' : 'off'}`,
      registry,
      {
        appendConcurrency: CONCURRENCY,
        tokenCountConcurrency: DEFAULT_TOKEN_COUNT_CONCURRENCY,
        ...(batching ? {} : { appendBatch: { maxMessages: 1 } }),
      },
    );
  const paced: LatencyPipelines = { on: await start(true), off: await start(false) };
  const rounds: Array<{ on: LatencyRound; off: LatencyRound }> = [];
  try {
    await runLatency(paced.on, -1, rate, 1);
    await runLatency(paced.off, -1, rate, 1);
    for (let round = 0; round < LATENCY_ROUNDS; round++) {
      const order = round % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const);
      const runs: Partial<Record<'on' | 'off', LatencyRound>> = {};
      for (const setting of order)
        runs[setting] = await runLatency(paced[setting], round, rate, LATENCY_SECONDS);
      rounds.push({ on: runs.on!, off: runs.off! });
    }
  } finally {
    await paced.on.close();
    await paced.off.close();
  }
  return {
    rate,
    p50Delta: summarize(
      rounds.map(({ on, off }) => percentile(on.committedMs, 50) - percentile(off.committedMs, 50)),
      2,
    ),
    figure: (of, p, setting) =>
      Number(median(rounds.map((r) => percentile(r[setting][of], p))).toFixed(2)),
    messagesPerJob: Number(
      median(rounds.map((r) => r.on.committedMs.length / r.on.jobs)).toFixed(2),
    ),
  };
}

/** The figures of a {@link LatencyResult}, named with `prefix`, for the result file. */
const latencyFigures = (prefix: string, l: LatencyResult, of: string) => ({
  [`${prefix}_rate`]: {
    value: Math.round(l.rate),
    unit: `messages/s (${LATENCY_SHARE * 100} % of ${of}), ${LATENCY_ROUNDS} rounds of ${LATENCY_SECONDS} s per setting`,
  },
  [`${prefix}_committed_p50_batching_on`]: { value: l.figure('committedMs', 50, 'on'), unit: 'ms' },
  [`${prefix}_committed_p50_batching_off`]: {
    value: l.figure('committedMs', 50, 'off'),
    unit: 'ms',
  },
  [`${prefix}_committed_p99_batching_on`]: { value: l.figure('committedMs', 99, 'on'), unit: 'ms' },
  [`${prefix}_committed_p99_batching_off`]: {
    value: l.figure('committedMs', 99, 'off'),
    unit: 'ms',
  },
  [`${prefix}_append_call_p50_batching_on`]: { value: l.figure('callMs', 50, 'on'), unit: 'ms' },
  [`${prefix}_append_call_p50_batching_off`]: { value: l.figure('callMs', 50, 'off'), unit: 'ms' },
  [`${prefix}_messages_per_job_batching_on`]: {
    value: l.messagesPerJob,
    unit: 'messages per append job',
  },
});

/** The printed note of a {@link LatencyResult}. */
const latencyNote = (l: LatencyResult) =>
  `enqueue -> committed p50 on ${l.figure('committedMs', 50, 'on')} / off ${l.figure('committedMs', 50, 'off')} ms (p99 ${l.figure('committedMs', 99, 'on')} / ${l.figure('committedMs', 99, 'off')}); on - off ${formatSummary(l.p50Delta)} ms`;

let redisStopped = false;
try {
  // (a), (b), (d'), (d) in alternating rounds.
  const noop: Timing[] = [];
  const appends: AppendRound[] = [];
  const memoized: number[] = [];
  const documented: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    noop.push(await runNoop(round));
    appends.push(await runAppends(round));
    memoized.push(await runPeer(round, true));
    if (round < DOC_ROUNDS) documented.push(await runPeer(round, false));
    const a = noop[round]!;
    const b = appends[round]!;
    console.log(
      `  round ${round + 1}/${ROUNDS}: (a) ${Math.round(a.perSecond)} jobs/s, (b) ${Math.round(b.timing.perSecond)} messages/s in ${b.jobs} jobs, (d') ${Math.round(memoized[round]!)}/s${round < DOC_ROUNDS ? `, (d) ${Math.round(documented[round]!)}/s` : ''}`,
    );
  }
  done("rounds of (a), (b), (d'), (d)");
  const profiled = profiling ? (await runAppends(ROUNDS, true)).profile : undefined;
  const failedAppends = appends.reduce((sum, b) => sum + b.failed, 0);
  if (failedAppends > 0) throw new Error(`${failedAppends} appended messages' jobs failed`);
  const appendVsNoop = summarize(appends.map((b, r) => b.timing.perSecond / noop[r]!.perSecond));
  const appendVsMemo = summarize(
    appends.map((b, r) => b.timing.perSecond / memoized[r]!),
    2,
  );
  const appendVsDoc = summarize(
    documented.map((d, r) => appends[r]!.timing.perSecond / d),
    1,
  );
  const noopRate = median(noop.map((a) => a.perSecond));

  // Producer-side work per message.
  const producer = await startBenchPipeline(redis, 'bench-prepare', registry);
  const samples: number[] = [];
  for (let i = 0; i < 10_000; i++) {
    const t0 = performance.now();
    producer.client.prepareAppend({ resource: 'customer-support', key: `thread:${i % MEMORIES}` }, [
      message(i),
    ]);
    samples.push((performance.now() - t0) * 1000);
  }
  await producer.close();
  samples.sort((a, b) => a - b);
  const prepareMeanUs = samples.reduce((sum, us) => sum + us, 0) / samples.length;

  // (f) latency at 10 % of (a) -- and (f') at 10 % of (b), a light load for memq whatever (b)/(a)
  // is: group commit on and off, alternating.
  const appendRate = median(appends.map((b) => b.timing.perSecond));
  const noopLatency = await latencyAt(noopRate * LATENCY_SHARE);
  const appendLatency = await latencyAt(appendRate * LATENCY_SHARE);
  done("(f), (f') latency");

  // (g) a compiled `memq work` during a replay of the corpus from this process.
  const rss = await runWorkerMemory();
  done('(g) worker memory');

  // (c), (e), (h) in child processes (each starts its own private Redis).
  await redis.stop();
  redisStopped = true;
  // --quick leaves out the token bench's linearity part (~1 min); the full bench runs it.
  const tokens = childBench(
    'bench/tokens.ts',
    'bench/results/tokens-latest.json',
    quick ? ['--no-linearity'] : [],
  ) as {
    ratios: { pipeline_vs_raw: number; count_vs_cache_hit: number };
    round_ratios: number[];
    figures: {
      raw_messages_per_second: { value: number; unit: string };
      pipeline_messages_per_second: { value: number; unit: string };
    };
  };
  const flush = childBench('bench/flush.ts', 'bench/results/flush-latest.json') as {
    sizes: number[];
    ratios: { large_vs_small: RoundSummary };
    figures: Record<string, { value: number; unit: string }>;
  };
  done('(c), (e) child benches');
  const horizontal = childBench('bench/workers.ts', 'bench/results/workers-latest.json', [
    '--built',
  ]) as {
    ratios: { two_vs_one_process: RoundSummary; two_vs_one_process_cluster: RoundSummary };
    figures: Record<string, { value: number; unit: string }>;
  };

  const tokencountVsRaw = summarize(tokens.round_ratios);
  const ratios = {
    append_vs_noop: appendVsNoop,
    append_vs_langchain_memoized: appendVsMemo,
    append_vs_langchain: appendVsDoc,
    tokencount_vs_raw: tokencountVsRaw,
    // With --quick the largest memory is 20k messages, not 100k (see `figures.flush_sizes`).
    flush_100k_vs_1k: flush.ratios.large_vs_small,
    batching_committed_p50_delta_ms: noopLatency.p50Delta,
    batching_committed_p50_delta_ms_light: appendLatency.p50Delta,
    two_vs_one_worker_process: horizontal.ratios.two_vs_one_process,
    two_vs_one_worker_process_cluster: horizontal.ratios.two_vs_one_process_cluster,
  };
  const checked = {
    append_vs_noop: appendVsNoop.median,
    append_vs_langchain_memoized: appendVsMemo.median,
    append_vs_langchain: appendVsDoc.median,
    tokencount_vs_raw: tokencountVsRaw.median,
    flush_100k_vs_1k: flush.ratios.large_vs_small.median,
    batching_committed_p50_delta_ms: noopLatency.p50Delta.median,
    worker_peak_rss_mib: rss.peakMiB,
  };
  const met = Object.fromEntries(
    Object.entries(checked).map(([name, value]) => [
      name,
      TARGETS[name as keyof typeof TARGETS].check(value),
    ]),
  ) as Record<keyof typeof TARGETS, boolean>;
  const medianCpu = (pick: (b: AppendRound) => number) => Math.round(median(appends.map(pick)));
  const cpu = {
    noop: {
      node: Math.round(median(noop.map((a) => a.cpu.node))),
      redis: Math.round(median(noop.map((a) => a.cpu.redis))),
    },
    append: {
      node: medianCpu((b) => b.timing.cpu.node),
      redis: medianCpu((b) => b.timing.cpu.redis),
    },
    append_until_exact: {
      node: medianCpu((b) => b.settledCpu.node),
      redis: medianCpu((b) => b.settledCpu.redis),
      counting_thread: medianCpu((b) => b.countingUs),
    },
  };
  const jobsPerRound = median(appends.map((b) => b.jobs));
  const result = {
    when: new Date().toISOString(),
    node: process.version,
    quick,
    rounds: ROUNDS,
    messages_per_round: N,
    concurrency: CONCURRENCY,
    callers: CALLERS,
    ratios,
    targets: Object.fromEntries(Object.entries(TARGETS).map(([k, t]) => [k, t.text])),
    met,
    figures: {
      noop_jobs_per_second: { value: Math.round(noopRate), unit: 'jobs/s (median of rounds)' },
      append_commits_per_second: {
        value: Math.round(appendRate),
        unit: 'messages/s (median of rounds)',
      },
      append_jobs_per_round: { value: jobsPerRound, unit: `jobs for ${N} messages (median)` },
      langchain_memoized_messages_per_second: {
        value: Math.round(median(memoized)),
        unit: `messages/s (counts memoized per content; ${PEER_MESSAGES} messages, median)`,
      },
      langchain_messages_per_second: {
        value: Math.round(median(documented)),
        unit: `messages/s (add + read + trimMessages, recounting every turn; ${PEER_MESSAGES} messages, median of ${DOC_ROUNDS})`,
      },
      tokencount_raw_messages_per_second: tokens.figures.raw_messages_per_second,
      tokencount_pipeline_messages_per_second: tokens.figures.pipeline_messages_per_second,
      token_cache_hit_vs_count: { value: tokens.ratios.count_vs_cache_hit, unit: 'x' },
      flush_sizes: { value: flush.sizes, unit: 'messages' },
      ...flush.figures,
      ...latencyFigures('paced', noopLatency, '(a)'),
      ...latencyFigures('paced_light', appendLatency, '(b)'),
      worker_idle_rss: { value: rss.idleMiB, unit: 'MiB (compiled memq work, ready)' },
      worker_peak_rss: {
        value: rss.peakMiB,
        unit: `MiB (compiled memq work, replay of ${rss.messages} messages in ${rss.seconds.toFixed(1)} s)`,
      },
      ...horizontal.figures,
      producer_prepare_median: {
        value: Number(percentile(samples, 50).toFixed(1)),
        unit: 'us/message',
      },
      producer_prepare_p99: {
        value: Number(percentile(samples, 99).toFixed(1)),
        unit: 'us/message',
      },
      producer_prepare_mean: { value: Number(prepareMeanUs.toFixed(1)), unit: 'us/message' },
    },
    /**
     * Median over the rounds, microseconds of CPU per message (per job for `noop`): `node` is this
     * process (every thread), `redis` the server. `append` is the timed window (first append to
     * last commit); `append_until_exact` runs on until every count is exact (token counting and
     * flushes that finish after the window), `counting_thread` being the counting thread's share.
     */
    cpu_per_message: cpu,
    /** (g)'s replay into the compiled worker: what runReplay reported (src/replay/replay.ts). */
    worker_memory_replay: rss.replay,
    /** With --profile: shares of the main thread's time in an extra (b) round (profileShares). */
    ...(profiled ? { main_thread_profile: profiled } : {}),
  };
  if (rss.failedJobs > 0) throw new Error(`(g) replay: ${rss.failedJobs} failed jobs or enqueues`);

  const mark = (name: keyof typeof TARGETS) =>
    `(target ${TARGETS[name].text}: ${met[name] ? 'met' : 'MISSED'})`;
  const f = result.figures;
  const largest = flush.sizes.at(-1)!;
  const rows: Array<[string, string, string]> = [
    [
      '(a) BullMQ no-op ceiling',
      `${f.noop_jobs_per_second.value} jobs/s`,
      `CPU per job: node ${cpu.noop.node} us, redis ${cpu.noop.redis} us`,
    ],
    [
      '(b) memq appends, 64 callers',
      `${f.append_commits_per_second.value} messages/s`,
      `append_vs_noop ${formatSummary(appendVsNoop)} ${mark('append_vs_noop')}; ${Math.round(N / jobsPerRound)} messages per job`,
    ],
    [
      '    CPU per message',
      `node ${cpu.append.node} us`,
      `redis ${cpu.append.redis} us in the timed window; until exact: node ${cpu.append_until_exact.node} us (counting thread ${cpu.append_until_exact.counting_thread} us, producer prepareAppend mean ${prepareMeanUs.toFixed(0)} us), redis ${cpu.append_until_exact.redis} us`,
    ],
    [
      "(d') LangChain, counts memoized",
      `${f.langchain_memoized_messages_per_second.value} messages/s`,
      `hand-tuned: append_vs_langchain_memoized ${formatSummary(appendVsMemo)} ${mark('append_vs_langchain_memoized')}`,
    ],
    [
      '(d) LangChain as documented',
      `${f.langchain_messages_per_second.value} messages/s`,
      `+ trimMessages to ${BUDGET_TOKENS} tokens: append_vs_langchain ${formatSummary(appendVsDoc)} ${mark('append_vs_langchain')}`,
    ],
    [
      '(c) token-count pipeline',
      `${f.tokencount_pipeline_messages_per_second.value} messages/s`,
      `raw loop ${f.tokencount_raw_messages_per_second.value}/s: tokencount_vs_raw ${formatSummary(tokencountVsRaw)} ${mark('tokencount_vs_raw')}`,
    ],
    [
      '(e) flush, fold 100 messages',
      flush.sizes
        .map((size) => `${size}: ${flush.figures[`flush_${size}_median`]!.value} ms`)
        .join(', '),
      `flush_${largest >= 100_000 ? '100k' : `${largest / 1000}k`}_vs_1k ${formatSummary(flush.ratios.large_vs_small)} ${mark('flush_100k_vs_1k')}`,
    ],
    [
      `(f) at ${LATENCY_SHARE * 100} % of (a)`,
      `${Math.round(noopLatency.rate)} messages/s`,
      `${latencyNote(noopLatency)} ${mark('batching_committed_p50_delta_ms')}`,
    ],
    [
      `(f') at ${LATENCY_SHARE * 100} % of (b)`,
      `${Math.round(appendLatency.rate)} messages/s`,
      `${latencyNote(appendLatency)} (a light load for memq; report only)`,
    ],
    [
      '(g) memq work peak RSS',
      `${rss.peakMiB} MiB`,
      `idle ${rss.idleMiB} MiB; replay of ${rss.messages} messages ${mark('worker_peak_rss_mib')}`,
    ],
    [
      '(h) memq work processes: 2 / 1',
      `x${formatSummary(horizontal.ratios.two_vs_one_process)}`,
      `Redis Cluster (3 masters): x${formatSummary(horizontal.ratios.two_vs_one_process_cluster)} (report only; 2 cores shared with Redis and the producer)`,
    ],
    [
      'producer work per message',
      `median ${f.producer_prepare_median.value} us`,
      `p99 ${f.producer_prepare_p99.value} us, mean ${f.producer_prepare_mean.value} us`,
    ],
  ];
  console.log(
    `\nmemq bench (${ROUNDS} rounds x ${N} messages, ${CALLERS} callers, concurrency ${CONCURRENCY}, ${process.version}${quick ? ', --quick' : ''}); ratios: median (min-max) of rounds`,
  );
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  for (const [name, value, note] of rows)
    console.log(`  ${name.padEnd(w0)}  ${value.padEnd(w1)}  ${note}`);
  if (result.main_thread_profile) {
    console.log(
      `  main thread in an extra (b) round (--profile): ${Object.entries(result.main_thread_profile)
        .map(([k, share]) => `${k} ${(share * 100).toFixed(1)} %`)
        .join(', ')}`,
    );
  }
  const missed = Object.entries(met).filter(([, ok]) => !ok);
  console.log(
    `targets met: ${Object.keys(met).length - missed.length}/${Object.keys(met).length}${missed.length ? `; missed: ${missed.map(([k]) => k).join(', ')}` : ''}`,
  );
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/latest.json', JSON.stringify(result, null, 2) + '\n');
} finally {
  if (!redisStopped) await redis.stop();
}
