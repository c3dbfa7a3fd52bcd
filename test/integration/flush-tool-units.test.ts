import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createMemoryRegistry,
  parseMemoryResource,
  type MemoryRegistry,
} from '../../src/config/load-memories.js';
import type { MessageInput } from '../../src/core/message.js';
import { planFromPrefix } from '../../processors/flush.js';
import { PREFIX_PAGE_SIZE, readWholeLog } from '../../src/store/log-pages.js';
import { planFlush } from '../../src/flush/strategies.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

/** A message-count memory: flushes at 83 messages (0.8 x 104) down to 52 (0.5 x 104). */
const yaml = (id: string, strategy: string) => `resource: memory
id: ${id}
type: message_count_based
max_messages: 104
flushing:
  type: ${strategy}
  summarize_threshold: 0.8
  summary_tokens: 200
  summarize_oldest_percent: 0.3
  target_ratio: 0.5
persistence:
  type: redis
  ttl: 1h
`;

const text = (role: 'user' | 'assistant', i: number): MessageInput => ({
  role,
  content: `Message ${i} about the trip.`,
});

/**
 * 252 messages: a system message, 197 ordinary ones, then at index 198 an assistant message
 * calling two tools, a user message, and their two results out of order at 200 and 201 (past
 * the first 200-message page), then 50 ordinary messages.
 */
function conversation(): MessageInput[] {
  return [
    { role: 'system', content: 'You are a travel agent.' },
    ...Array.from({ length: 197 }, (_, i) => text(i % 2 ? 'assistant' : 'user', i + 1)),
    {
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          id: 'call_flight',
          type: 'function',
          function: { name: 'search_flights', arguments: '{"to": "Rome"}' },
        },
        {
          id: 'call_hotel',
          type: 'function',
          function: { name: 'search_hotels', arguments: '{"city": "Rome"}' },
        },
      ],
    },
    { role: 'user', content: 'Take your time.' },
    { role: 'tool', tool_call_id: 'call_hotel', content: 'Hotel Roma, 120 EUR a night.' },
    { role: 'tool', tool_call_id: 'call_flight', content: 'AZ 331, 08:10, 95 EUR.' },
    ...Array.from({ length: 50 }, (_, i) => text(i % 2 ? 'user' : 'assistant', 202 + i)),
  ];
}

describe('flushes keep a tool call with results on a later page, on real Redis', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  let registry: MemoryRegistry;
  beforeEach(async () => {
    ns = createRedisNamespace();
    const parsed = ['simple_fifo', 'hybrid_summary'].map((s) =>
      parseMemoryResource(yaml(s.replace('_', '-'), s), `${s}.yaml`),
    );
    expect(parsed.flatMap((p) => p.problems)).toEqual([]);
    registry = createMemoryRegistry(parsed.map((p) => p.resource!));
    pipeline = await startPipeline(ns, registry);
  });
  afterEach(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('a simple_fifo flush job reads on and evicts the call with both results', async () => {
    const target = { resource: 'simple-fifo', key: 'trip:1' };
    const written = conversation();
    expect(written.length).toBeGreaterThan(PREFIX_PAGE_SIZE + 2);
    const ids = await pipeline.client.write(target, written).then(async (receipt) => {
      await pipeline.client.waitFor(receipt);
      return (await pipeline.client.read(target, { limit: 1000 })).messages.map(
        (m) => m.message.id,
      );
    });
    expect(ids).toHaveLength(252);
    // The write crossed the trigger (83 messages): the automatic flush runs.
    await eventually(
      async () => (await pipeline.client.stats(target)).evictedCount > 0,
      'the automatic flush',
    );
    const after = await pipeline.client.read(target, { limit: 1000 });
    const kept = after.messages.map((m) => m.message);
    // The system message and the 50 newest stay; the call went with both results (index 201
    // is on the second page), and nothing answers a call that is gone.
    expect(kept.map((m) => m.id)).toEqual([ids[0], ...ids.slice(202)]);
    expect(kept.some((m) => m.role === 'tool' || m.tool_calls)).toBe(false);
    const stats = await pipeline.client.stats(target, { deep: true });
    expect(stats.consistent).toBe(true);
    expect(stats.evictedCount).toBe(201);
  });

  it('plans hybrid_summary from pages of any size as from the whole log, units whole', async () => {
    const target = { resource: 'hybrid-summary', key: 'trip:2' };
    const ref = { project: 'test', ...target };
    await pipeline.workers.queues.flush.pause(); // no automatic flush under the comparison
    await pipeline.client.write(target, conversation()).then((r) => pipeline.client.waitFor(r));
    const resource = registry.get('hybrid-summary');
    const whole = await readWholeLog(pipeline.store, ref);
    const ids = whole.messages.map((m) => m.message.id);
    const expected = planFlush('hybrid_summary', resource, {
      window: whole.messages,
      summaryTokens: whole.summaryTokens,
    });
    // Down to 52 with the summary counted as no message: the fold takes the call, the message
    // between and both results, the last at index 201.
    expect(expected.foldedIds).toEqual(ids.slice(1, 202));
    for (const pageSize of [7, 199, 200]) {
      const { plan } = await planFromPrefix(
        pipeline.store,
        ref,
        resource,
        'hybrid_summary',
        pageSize,
      );
      expect(plan.foldedIds, `page size ${pageSize}`).toEqual(expected.foldedIds);
    }
  });
});
