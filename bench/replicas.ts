/**
 * The cost of `MEMQ_WAIT_REPLICAS` (docs/reliability.md, "Failover"): single-message appends on a
 * primary with one replica, replica confirmation off (0) and on (1), in alternating rounds.
 *
 *   npm run bench:replicas              # 10 rounds (5 per setting) of 3,000 messages (~1 min)
 *   npm run bench:replicas -- --quick    # 4 rounds of 1,000
 *
 * Starts two private redis-servers on free loopback ports (AOF everysec, bench/harness.ts
 * `startBenchRedis`) and makes the second a replica of the first (`masterauth`, `REPLICAOF`), then starts two
 * pipelines (client + workers, bench/harness.ts `startBenchPipeline`, append concurrency 16, group
 * commit on) on the primary: one with `MEMQ_WAIT_REPLICAS=0`, one with `1` (timeout 1000 ms). In
 * each round (order off on, on off, ...) one pipeline takes N single-message
 * `MemoryClient.append` calls from 64 concurrent callers (50 memories, real e-mail text,
 * customer-support), each caller sending its next append once the previous one is acknowledged.
 * Per setting, the median over its rounds of:
 *  - appends/s: N / (first append call -> last append job's local `completed` event);
 *  - enqueue -> committed p50, ms: per message, from its `append` call to the local `completed`
 *    event of the job that carries it;
 *  - acknowledged p50, ms: per message, the `append` call itself (enqueue, and with WAIT on the
 *    replica's confirmation).
 * and the ratio on/off of appends/s per round pair (the two adjacent rounds), median (min-max).
 * Each round waits, untimed, for its token counts and flushes, so nothing spills into the next.
 * Prints a table and writes bench/results/replicas-latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import type { Job } from 'bullmq';
import { loadMemoryResources } from '../src/config/load-memories.js';
import {
  nearestRank,
  corpusTexts,
  startBenchPipeline,
  startBenchRedis,
  summarize,
  formatSummary,
  untilDrained,
  type BenchPipeline,
} from './harness.js';

const quick = process.argv.includes('--quick');
/** Rounds per setting. */
const ROUNDS = quick ? 2 : 5;
/** Messages per round. */
const N = quick ? 1_000 : 3_000;
/** Concurrent callers, each awaiting its append's acknowledgement before the next. */
const CALLERS = 64;
const MEMORIES = 50;
/** `MEMQ_WAIT_REPLICAS_TIMEOUT_MS` of the WAIT-on pipeline. */
const WAIT_TIMEOUT_MS = 1_000;

const registry = await loadMemoryResources('memories');
const texts = await corpusTexts(500);
const message = (i: number) => ({
  role: i % 2 ? ('assistant' as const) : ('user' as const),
  content: texts[i % texts.length]!,
});

/** p50 (nearest rank) of sorted `values`; 0 when empty. */
const p50 = (values: readonly number[]) => nearestRank(values, 50) ?? 0;

/** What one round measured. */
interface Round {
  readonly appendsPerSecond: number;
  readonly committedP50Ms: number;
  readonly ackP50Ms: number;
}

/** One round of N appends through `pipeline` (keys `r<round>:<m>`). */
async function runRound(pipeline: BenchPipeline, round: number): Promise<Round> {
  const completedAt = new Map<string, number>();
  const worker = pipeline.workers.workers[0]!;
  const onCompleted = (job: Job) => completedAt.set(job.id!, performance.now());
  worker.on('completed', onCompleted);
  const sent: Array<{ started: number; jobId: string }> = [];
  const ackMs: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      for (let i = next++; i < N; i = next++) {
        const t0 = performance.now();
        const receipt = await pipeline.client.append(
          { resource: 'customer-support', key: `r${round}:${i % MEMORIES}` },
          [message(i)],
        );
        ackMs.push(performance.now() - t0);
        sent.push({ started: t0, jobId: receipt.jobId! });
      }
    }),
  );
  const deadline = Date.now() + 120_000;
  while (sent.some((s) => !completedAt.has(s.jobId))) {
    if (Date.now() > deadline) throw new Error(`round ${round}: jobs not completed in 120 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const last = Math.max(...sent.map((s) => completedAt.get(s.jobId)!));
  worker.off('completed', onCompleted);
  await untilDrained(pipeline.workers.queues.tokenCount);
  await untilDrained(pipeline.workers.queues.flush);
  return {
    appendsPerSecond: N / ((last - started) / 1000),
    committedP50Ms: p50(
      sent.map((s) => completedAt.get(s.jobId)! - s.started).sort((a, b) => a - b),
    ),
    ackP50Ms: p50(ackMs.sort((a, b) => a - b)),
  };
}

const primary = await startBenchRedis('replicas-primary');
const replica = await startBenchRedis('replicas-replica');
const pipelines: Partial<Record<'off' | 'on', BenchPipeline>> = {};
try {
  const admin = replica.connect(true);
  const primaryUrl = new URL(primary.url);
  const port = Number(primaryUrl.port);
  // The private servers have passwords (src/runtime/embedded-redis.ts): the replica needs the primary's.
  await admin.config('SET', 'masterauth', decodeURIComponent(primaryUrl.password));
  await admin.replicaof('127.0.0.1', port);
  for (let i = 0; !(await admin.info('replication')).includes('master_link_status:up'); i++) {
    if (i > 200) throw new Error('the replica did not sync');
    await new Promise((r) => setTimeout(r, 50));
  }
  pipelines.off = await startBenchPipeline(primary, 'bench-wait-off', registry);
  pipelines.on = await startBenchPipeline(primary, 'bench-wait-on', registry, {
    waitReplicas: 1,
    waitReplicasTimeoutMs: WAIT_TIMEOUT_MS,
  });
  // Untimed warm-up of both (tokenizers, scripts, JIT).
  for (const setting of ['off', 'on'] as const) await runRound(pipelines[setting]!, -1);
  const rounds: Record<'off' | 'on', Round[]> = { off: [], on: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const);
    for (const setting of order) {
      const result = await runRound(pipelines[setting]!, r * 2 + (setting === 'on' ? 1 : 0));
      rounds[setting].push(result);
      console.error(
        `round ${r} WAIT ${setting}: ${result.appendsPerSecond.toFixed(0)} appends/s, committed p50 ${result.committedP50Ms.toFixed(1)} ms, ack p50 ${result.ackP50Ms.toFixed(2)} ms`,
      );
    }
  }
  const figures = Object.fromEntries(
    (['off', 'on'] as const).map((setting) => [
      setting,
      {
        appends_per_second: summarize(
          rounds[setting].map((r) => r.appendsPerSecond),
          0,
        ),
        committed_p50_ms: summarize(
          rounds[setting].map((r) => r.committedP50Ms),
          1,
        ),
        ack_p50_ms: summarize(
          rounds[setting].map((r) => r.ackP50Ms),
          2,
        ),
      },
    ]),
  ) as unknown as Record<'off' | 'on', Record<string, ReturnType<typeof summarize>>>;
  const ratio = summarize(
    rounds.on.map((on, r) => on.appendsPerSecond / rounds.off[r]!.appendsPerSecond),
    3,
  );
  console.log(
    `MEMQ_WAIT_REPLICAS cost: ${N} single-message appends per round, ${CALLERS} callers, primary + 1 replica, median (min-max) of ${ROUNDS} rounds each`,
  );
  console.log('setting                 appends/s            committed p50 ms     ack p50 ms');
  for (const setting of ['off', 'on'] as const) {
    const f = figures[setting];
    console.log(
      `${setting === 'off' ? 'MEMQ_WAIT_REPLICAS=0' : 'MEMQ_WAIT_REPLICAS=1'}    ${formatSummary(f.appends_per_second!).padEnd(20)} ${formatSummary(f.committed_p50_ms!).padEnd(20)} ${formatSummary(f.ack_p50_ms!)}`,
    );
  }
  console.log(`appends/s, WAIT on / off per round pair: ${formatSummary(ratio)}`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/replicas-latest.json',
    `${JSON.stringify({ messages_per_round: N, callers: CALLERS, rounds_per_setting: ROUNDS, wait_timeout_ms: WAIT_TIMEOUT_MS, figures, appends_on_vs_off: ratio }, null, 2)}\n`,
  );
} finally {
  await pipelines.on?.close();
  await pipelines.off?.close();
  await replica.stop();
  await primary.stop();
}
