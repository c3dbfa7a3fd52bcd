/**
 * `npm run bench:flush` (this file): does a flush cost what it folds, or what the memory holds?
 *
 *   npm run bench:flush            # memories of 1,000, 10,000 and 100,000 messages
 *   npm run bench:flush -- --quick # 1,000, 10,000 and 20,000
 *
 * Starts a private redis-server on a free loopback port and memq's workers, fills three
 * `hybrid_summary` memories (real e-mail text, first 200 characters per message) and counts
 * their tokens, then 7 times per memory: folds exactly its oldest 100 messages with a flush job
 * (`message_count_based`, `max_messages` = 2 x (size - 100), target ratio 0.5) and appends 100
 * new ones, so the size stays put. The figure is the flush job's processing time
 * (`finishedOn - processedOn`: lock, read, plan, rule-based summary, `apply-flush.lua`), median
 * of 7 after one untimed warm-up round. Target: the largest memory's median <= 2x the smallest one's.
 * Prints a table and writes bench/results/flush-latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createMemoryRegistry, parseMemoryResource } from '../src/config/load-memories.js';
import { buildConversations } from '../src/replay/corpus.js';
import { startBenchPipeline, startBenchRedis } from './harness.js';

const quick = process.argv.includes('--quick');
const SIZES = quick ? [1_000, 10_000, 20_000] : [1_000, 10_000, 100_000];
const FOLD = 100;
const ROUNDS = 7;

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
const results: Array<{ size: number; medianMs: number; samplesMs: number[] }> = [];
try {
  const { client, workers, close } = await startBenchPipeline(redis, 'bench-flush', registry);
  const settle = async (target: { resource: string; key: string }, size: number) => {
    for (;;) {
      const window = await client.read(target, { limit: 1 });
      if (window.total === size && window.exact) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  for (const size of SIZES) {
    const target = { resource: `fold-${size}`, key: 'bench' };
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
    const samplesMs: number[] = [];
    // Round 0 is an untimed warm-up (JIT, connections), then ROUNDS timed rounds.
    for (let round = 0; round <= ROUNDS; round++) {
      const receipt = await client.flush(target);
      const result = await client.waitFor<{ folded: number }>(receipt, { timeoutMs: 120_000 });
      if (result.folded !== FOLD) throw new Error(`folded ${result.folded}, expected ${FOLD}`);
      const job = await workers.queues.flush.getJob(receipt.jobId);
      if (round > 0) samplesMs.push(job!.finishedOn! - job!.processedOn!);
      const refill = await client.append(target, batch(FOLD));
      await client.waitFor(refill.jobId!);
      await settle(target, size);
    }
    const sorted = [...samplesMs].sort((a, b) => a - b);
    results.push({ size, medianMs: sorted[Math.floor(sorted.length / 2)]!, samplesMs });
  }
  await close();
} finally {
  await redis.stop();
}

const small = results[0]!;
const large = results.at(-1)!;
const ratio = large.medianMs / Math.max(1, small.medianMs);
const result = {
  when: new Date().toISOString(),
  node: process.version,
  folded_per_flush: FOLD,
  sizes: SIZES,
  ratios: { large_vs_small: Number(ratio.toFixed(2)) },
  figures: Object.fromEntries(
    results.map((r) => [
      `flush_${r.size}_median`,
      { value: r.medianMs, unit: 'ms per flush job', samples: r.samplesMs },
    ]),
  ),
};
console.log(`memq flush bench (fold ${FOLD} oldest messages, ${process.version})`);
for (const r of results) {
  console.log(
    `  ${String(r.size).padStart(7)}-message memory   median ${r.medianMs} ms (${r.samplesMs.join(', ')})`,
  );
}
console.log(`  large_vs_small                ${result.ratios.large_vs_small} (target <= 2)`);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/flush-latest.json', JSON.stringify(result, null, 2) + '\n');
