import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createTokenCounters } from '../../../src/tokens/resource-counters.js';
import { createMemoryRegistry } from '../../../src/config/load-memories.js';
import { createTokenCounter } from '../../../src/tokens/counter.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { testResource } from '../../helpers/memories.js';

describe('token counters of a worker process', () => {
  it('counts a batch exactly, then answers the same contents from the cache (one lookup each)', async () => {
    const resource = testResource();
    const metrics = createMetrics();
    /** The cache figures `/metrics` would show now. */
    const cacheStats = async () => {
      const value = async (name: string) =>
        (await metrics.registry.getSingleMetric(`memq_token_cache_${name}_total`)!.get()).values[0]!
          .value;
      return { hits: await value('hits'), misses: await value('misses') };
    };
    const counters = createTokenCounters({
      registry: createMemoryRegistry([resource]),
      metrics,
      log: pino({ level: 'silent' }),
      countInThread: false,
    });
    try {
      await counters.ready;
      const counter = await counters.counterFor(resource);
      const oracle = await createTokenCounter('o200k_base');
      const messages = [
        { role: 'user' as const, content: 'Where is my order? It was due on Monday.' },
        { role: 'assistant' as const, content: 'Let me check the tracking number for you.' },
        { role: 'user' as const, content: 'x'.repeat(200) },
      ];
      const expected = messages.map((m) => oracle.countMessage(m));
      const first = await counter.countMessages(messages);
      expect(first.map((r) => r.tokens)).toEqual(expected);
      expect(await cacheStats()).toEqual({ hits: 0, misses: 3 });
      const second = await counter.countMessages(messages);
      expect(second.map((r) => r.tokens)).toEqual(expected);
      expect(second.every((r) => r.source === 'o200k_base')).toBe(true);
      expect(await cacheStats()).toEqual({ hits: 3, misses: 3 });
    } finally {
      await counters.close();
    }
  });
});
