import { Queue } from 'bullmq';
import { beforeEach, describe, expect, it } from 'vitest';
import { QUEUES } from '../../queues/names.js';
import { eventually, usePipelinePerTest, type TestPipeline } from '../helpers/pipeline.js';
import type { RedisNamespace } from '../helpers/redis-namespace.js';

/** The value of one sample in Prometheus text format, or undefined when absent. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-z_]+)(\{(.*)\})? (.+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = new Map(
      [...(match[3] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!] as const),
    );
    if (Object.entries(labels).every(([k, v]) => found.get(k) === v)) return Number(match[4]);
  }
  return undefined;
}

describe('pipeline metrics on real Redis', () => {
  const context = usePipelinePerTest();
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  beforeEach(() => {
    ({ ns, pipeline } = context());
  });

  it('counts job outcomes, messages, tokens, redactions and queue depth as a scrape shows them', async () => {
    const target = { resource: 'customer-support', key: 'ticket:9' };
    const receipt = await pipeline.client.append(target, [
      { role: 'user', content: 'Reach me at jane.doe@example.com please' },
      { role: 'assistant', content: 'Noted.' },
    ]);
    expect(receipt.redactions).toBe(1);
    await pipeline.client.waitFor(receipt.jobId!);
    const queue = new Queue(QUEUES.append, { connection: ns.redis, prefix: ns.queuePrefix });
    try {
      const bad = await queue.add('append', { ref: { project: 'test' }, messages: [] });
      await eventually(async () => (await bad.getState()) === 'failed', 'the invalid job to fail');
    } finally {
      await queue.close();
    }
    await eventually(async () => (await pipeline.client.read(target)).exact, 'exact token counts');
    // Counts are exact once committed; the token-count job records its outcome just after.
    await eventually(
      async () =>
        (sample(await pipeline.metrics.registry.metrics(), 'memq_jobs_total', {
          queue: QUEUES.tokenCount,
          outcome: 'completed',
        }) ?? 0) >= 1,
      'the token-count job to complete',
    );
    const stats = await pipeline.client.stats(target);

    const text = await pipeline.metrics.registry.metrics();
    const append = { queue: QUEUES.append };
    expect(sample(text, 'memq_jobs_total', { ...append, outcome: 'completed' })).toBe(1);
    expect(sample(text, 'memq_jobs_total', { ...append, outcome: 'invalid' })).toBe(1);
    expect(
      sample(text, 'memq_jobs_total', { queue: QUEUES.tokenCount, outcome: 'completed' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sample(text, 'memq_job_duration_seconds_count', { ...append, outcome: 'completed' }),
    ).toBe(1);
    expect(sample(text, 'memq_job_wait_seconds_count', append)).toBe(2);
    expect(sample(text, 'memq_messages_appended_total', { resource: 'customer-support' })).toBe(2);
    expect(sample(text, 'memq_redactions_total', { resource: 'customer-support' })).toBe(1);
    expect(sample(text, 'memq_tokens_counted_total', { resource: 'customer-support' })).toBe(
      stats.tokenCount,
    );
    expect(sample(text, 'memq_queue_jobs', { ...append, state: 'failed' })).toBe(1);
    expect(sample(text, 'memq_queue_jobs', { ...append, state: 'waiting' })).toBe(0);
    // Labels carry ids of resources and queues, never message content or memory keys.
    expect(text).not.toContain('jane.doe');
    expect(text).not.toContain('ticket:9');
  });
});
