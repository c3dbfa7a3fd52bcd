import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import pino from 'pino';
import { QUEUES } from '../../queues/names.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { createLlmSummarizer } from '../../src/providers/llm-summarizer.js';
import { FAKE_LLM_KEY, fakeLlm, summarizedMemoryYaml } from '../helpers/fake-llm.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const KEY = FAKE_LLM_KEY;

const yaml = (endpoint: string) => summarizedMemoryYaml(endpoint, 'summarized', 400);

describe('flushes with an LLM summarizer on real Redis', () => {
  let llm: Awaited<ReturnType<typeof fakeLlm>>;
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  beforeEach(async () => {
    llm = await fakeLlm();
    ns = createRedisNamespace();
    const parsed = parseMemoryResource(yaml(llm.url), 'summarized.yaml');
    expect(parsed.problems).toEqual([]);
    pipeline = await startPipeline(ns, createMemoryRegistry([parsed.resource!]), 'test', {
      env: { TEST_SUMMARIZER_KEY: KEY },
    });
  });
  afterEach(async () => {
    await pipeline.close();
    await ns.cleanup();
    await llm.close();
  });

  const flushesDone = async () =>
    (await pipeline.metrics.jobs.get()).values.find(
      (v) => v.labels.queue === QUEUES.flush && v.labels.outcome === 'completed',
    )?.value ?? 0;

  /** Every id the producer was told was accepted is in the log or folded (at/below the watermark). */
  const expectNothingLost = async (
    target: { resource: string; key: string },
    accepted: string[],
  ) => {
    await eventually(async () => (await pipeline.client.read(target)).exact, 'exact counts');
    const window = await pipeline.client.read(target, { limit: 1000 });
    const present = new Set(window.messages.map((m) => m.message.id));
    const watermark = window.summary?.covers_through_id ?? '';
    const lost = accepted.filter((id) => !present.has(id) && id > watermark);
    expect(lost).toEqual([]);
    const stats = await pipeline.client.stats(target, { deep: true });
    expect(stats.consistent).toBe(true);
    expect(stats.acceptedCount).toBe(accepted.length);
    expect(stats.acceptedCount).toBe(stats.messageCount + stats.foldedCount + stats.evictedCount);
    expect(window.summary?.message_count_covered ?? 0).toBe(stats.foldedCount);
    return { window, stats };
  };

  it('keeps accepting appends while 20 flushes wait 200 ms each for summaries; nothing is lost', async () => {
    const targets = [0, 1, 2, 3].map((i) => ({ resource: 'summarized', key: `s:${i}` }));
    const accepted = new Map<string, string[]>(targets.map((t) => [t.key, []]));
    let turn = 0;
    while ((await flushesDone()) < 20) {
      const receipts = await Promise.all(
        targets.map((t) =>
          pipeline.client.append(t, [
            {
              role: turn % 2 ? 'assistant' : 'user',
              content: `Turn ${turn} about order ${turn * 7}. Details follow here.`,
            },
          ]),
        ),
      );
      receipts.forEach((r, i) => accepted.get(targets[i]!.key)!.push(...r.messageIds));
      turn += 1;
      if (turn > 2000) throw new Error('20 flushes did not happen within 2,000 turns');
      await new Promise((r) => setTimeout(r, 5));
    }
    // Wait for the appends and flushes in flight to settle.
    await eventually(
      async () =>
        (await pipeline.workers.queues.flush.getJobCounts('waiting', 'active', 'delayed'))
          .active === 0,
      'flushes to settle',
    );
    for (const t of targets) {
      const { window } = await expectNothingLost(t, accepted.get(t.key)!);
      expect(window.summary?.content).toMatch(/^LLM summary of \d+ new messages\.$/);
      expect(window.summary!.tokens).toBeLessThanOrEqual(60);
    }
    expect(llm.state.unauthorized).toBe(0);
    const text = await pipeline.metrics.registry.metrics();
    expect(text).toMatch(/memq_summaries_total\{source="llm"\} \d+/);
    expect(text).not.toContain(KEY);
    expect(text).not.toMatch(/outcome="(failed|retry)"/);
  }, 120_000);

  it('falls back to the rule-based summary when the LLM fails, counting it, losing nothing', async () => {
    llm.state.mode = '500';
    llm.state.delayMs = 0;
    const target = { resource: 'summarized', key: 'f:1' };
    const receipt = await pipeline.client.append(
      target,
      Array.from({ length: 40 }, (_, i) => ({
        role: i % 2 ? ('assistant' as const) : ('user' as const),
        content: `Message ${i} says something worth keeping. More text.`,
      })),
    );
    await pipeline.client.waitFor(receipt.jobId!);
    await eventually(
      async () => (await pipeline.client.read(target)).summary !== undefined,
      'the fallback summary',
    );
    const { window } = await expectNothingLost(target, [...receipt.messageIds]);
    expect(window.summary!.content).toMatch(
      /^- (user|assistant): Message \d+ says something worth keeping\./m,
    );
    const fallbacks = (await pipeline.metrics.summarizerFallbacks.get()).values;
    expect(fallbacks.find((v) => v.labels.reason === 'server_error')?.value).toBeGreaterThanOrEqual(
      1,
    );
    // Recorded once the commit returned, just after the summary became visible.
    await eventually(
      async () =>
        ((await pipeline.metrics.summaries.get()).values.find(
          (v) => v.labels.source === 'rule_based',
        )?.value ?? 0) >= 1,
      'the rule-based summary to be counted',
    );
  });

  it('stops waiting for the LLM when the flush gives up (lost lock), without a fallback summary', async () => {
    llm.state.delayMs = 5_000;
    const metrics = createMetrics();
    const summarizer = createLlmSummarizer({
      endpoint: llm.url,
      model: 'fake',
      apiKey: KEY,
      timeoutMs: 10_000,
      metrics,
      log: pino({ level: 'silent' }),
    });
    try {
      const controller = new AbortController();
      const reason = new Error('lock lost');
      setTimeout(() => controller.abort(reason), 100);
      const started = Date.now();
      await expect(
        summarizer.summarize({
          folded: [
            {
              id: '01JC0000000000000000000003',
              role: 'user',
              content: 'hello',
              created_at: new Date().toISOString(),
            },
          ],
          maxTokens: 100,
          countTokens: (text) => text.length,
          signal: controller.signal,
        }),
      ).rejects.toBe(reason);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect((await metrics.summarizerFallbacks.get()).values).toEqual([]);
    } finally {
      summarizer.close();
    }
  });

  it('refuses to start when the summarizer key variable is unset', async () => {
    const other = createRedisNamespace();
    try {
      const parsed = parseMemoryResource(yaml(llm.url), 'summarized.yaml');
      await expect(
        startPipeline(other, createMemoryRegistry([parsed.resource!]), 'test', { env: {} }),
      ).rejects.toThrow(
        'memory "summarized": flushing.summarizer.api_key_env: environment variable TEST_SUMMARIZER_KEY is not set',
      );
    } finally {
      await other.cleanup();
    }
  });
});
