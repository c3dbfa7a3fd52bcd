/**
 * `npm run bench:flush` (this file): does a flush cost what it folds, or what the memory holds?
 *
 *   npm run bench:flush            # memories of 1,000, 10,000 and 100,000 messages
 *   npm run bench:flush -- --quick # 1,000, 10,000 and 20,000
 *
 * Starts a private redis-server on a free loopback port and memq's workers, fills three
 * `hybrid_summary` memories (real e-mail text, first 200 characters per message) and counts
 * their tokens. A flush folds exactly a memory's oldest 100 messages with a flush job
 * (`message_count_based`, `max_messages` = 2 x (size - 100), target ratio 0.5), then 100 new
 * messages are appended, so the size stays put; the figure is the flush job's processing time
 * (`finishedOn - processedOn`: lock, read, plan, rule-based summary, `apply-flush.lua`). After
 * one untimed warm-up flush per memory, 5 rounds (--quick: 3), each flushing the smallest memory
 * 3 times (--quick: 2), then the largest, then the middle one as often (the two compared run back to back, so
 * a slow minute hits both). Per round: large_vs_small = the largest memory's median / the
 * smallest one's; reported as the median (min-max) of the rounds. Target: <= 2.
 * Prints a table and writes bench/results/flush-latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createMemoryRegistry, parseMemoryResource } from '../src/config/load-memories.js';
import { buildConversations } from '../src/replay/corpus.js';
import { formatSummary, startBenchPipeline, startBenchRedis, summarize } from './harness.js';

const quick = process.argv.includes('--quick');
const SIZES = quick ? [1_000, 10_000, 20_000] : [1_000, 10_000, 100_000];
const FOLD = 100;
/** Rounds; each flushes every memory FLUSHES_PER_ROUND times. */
const ROUNDS = quick ? 3 : 5;
const FLUSHES_PER_ROUND = quick ? 2 : 3;

const resourceYaml = (id: string, size: number) => `resource: memory
id: ${id}
type: message_count_based
max_messages: ${2 * (size - FOLD)}
flushing:
  type: hybrid_summary
  summarize_threshold: 0.9
  summary_tokens: 300
  summarize_oldest_percent: 0.0001
  target_ratio: 0.5
persistence:
  type: redis
  ttl: 1h
`;
const parsed = SIZES.map((size) =>
  parseMemoryResource(resourceYaml(`fold-${size}`, size), 'bench'),
);
const problems = parsed.flatMap((p) => p.problems);
if (problems.length > 0) throw new Error(problems.map((p) => p.message).join('\n'));
const registry = createMemoryRegistry(parsed.map((p) => p.resource!));

const texts = (await buildConversations({ limit: 2000 })).conversations
  .flatMap((c) => c.messages)
  .map((m) => m.content.replace(/\s+/g, ' ').slice(0, 200));
let next = 0;
const batch = (n: number) =>
  Array.from({ length: n }, () => {
    const i = next++;
    return {
      role: i % 2 ? ('assistant' as const) : ('user' as const),
      content: texts[i % texts.length]!,
    };
  });

const redis = await startBenchRedis('flush');
/** Flush job processing times, ms, by size: per round, FLUSHES_PER_ROUND samples. */
const samples = new Map<number, number[][]>(SIZES.map((size) => [size, []]));
try {
  const { client, workers, close } = await startBenchPipeline(redis, 'bench-flush', registry);
  const settle = async (target: { resource: string; key: string }, size: number) => {
    for (;;) {
      const window = await client.read(target, { limit: 1 });
      if (window.total === size && window.exact) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const targetOf = (size: number) => ({ resource: `fold-${size}`, key: 'bench' });
  for (const size of SIZES) {
    const target = targetOf(size);
    const started = performance.now();
    const inFlight = new Set<Promise<unknown>>();
    for (let filled = 0; filled < size; filled += 100) {
      while (inFlight.size >= 32) await Promise.race(inFlight);
      const p: Promise<unknown> = client
        .append(target, batch(Math.min(100, size - filled)))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    await settle(target, size);
    console.log(
      `  filled ${size} messages in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  }
  /** Folds the oldest 100 messages of the `size` memory, refills it; the flush job's ms. */
  const flushOnce = async (size: number) => {
    const target = targetOf(size);
    const receipt = await client.flush(target);
    const result = await client.waitFor<{ folded: number }>(receipt, { timeoutMs: 120_000 });
    if (result.folded !== FOLD) throw new Error(`folded ${result.folded}, expected ${FOLD}`);
    const job = await workers.queues.flush.getJob(receipt.jobId);
    const refill = await client.append(target, batch(FOLD));
    await client.waitFor(refill);
    await settle(target, size);
    return job!.finishedOn! - job!.processedOn!;
  };
  // An untimed warm-up flush of each (JIT, connections), then the rounds: the smallest and the
  // largest memory one after the other, so a slow minute hits both.
  for (const size of SIZES) await flushOnce(size);
  const order = [SIZES[0]!, SIZES.at(-1)!, ...SIZES.slice(1, -1)];
  for (let round = 0; round < ROUNDS; round++) {
    for (const size of order) {
      const times: number[] = [];
      for (let i = 0; i < FLUSHES_PER_ROUND; i++) times.push(await flushOnce(size));
      samples.get(size)!.push(times);
    }
  }
  await close();
} finally {
  await redis.stop();
}

const medianOf = (values: readonly number[]) => summarize(values, 3).median;
const roundMedians = (size: number) => samples.get(size)!.map(medianOf);
const small = SIZES[0]!;
const large = SIZES.at(-1)!;
const smallRounds = roundMedians(small);
const largeRounds = roundMedians(large);
// A round's small median of 0 ms (below Date.now()'s resolution) counts as 1 ms.
const largeVsSmall = summarize(
  largeRounds.map((ms, r) => ms / Math.max(1, smallRounds[r]!)),
  2,
);
const result = {
  when: new Date().toISOString(),
  node: process.version,
  folded_per_flush: FOLD,
  sizes: SIZES,
  rounds: ROUNDS,
  flushes_per_round: FLUSHES_PER_ROUND,
  /** `large_vs_small`: per round, the largest memory's median flush over the smallest one's. */
  ratios: { large_vs_small: largeVsSmall },
  figures: Object.fromEntries(
    SIZES.map((size) => [
      `flush_${size}_median`,
      {
        value: medianOf(samples.get(size)!.flat()),
        unit: 'ms per flush job (median of every round)',
        samples: samples.get(size)!,
      },
    ]),
  ),
};
console.log(`memq flush bench (fold ${FOLD} oldest messages, ${process.version})`);
for (const size of SIZES) {
  console.log(
    `  ${String(size).padStart(7)}-message memory   median ${result.figures[`flush_${size}_median`]!.value} ms (rounds: ${roundMedians(size).join(', ')})`,
  );
}
console.log(
  `  large_vs_small                ${formatSummary(largeVsSmall)} (target <= 2; median (min-max) of ${ROUNDS} rounds)`,
);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/flush-latest.json', JSON.stringify(result, null, 2) + '\n');
