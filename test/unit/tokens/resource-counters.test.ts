import pino from 'pino';
import { describe, expect, it } from 'vitest';
import {
  createTokenCounters,
  THREAD_REQUEST_CHARS,
} from '../../../src/tokens/resource-counters.js';
import { createMemoryRegistry } from '../../../src/config/load-memories.js';
import { createTokenCounter } from '../../../src/tokens/counter.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { testResource } from '../../helpers/memories.js';
import { dataUrl, png } from '../../helpers/images.js';
import type { CountableMessage } from '../../../src/tokens/counter.js';

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

  it('marks counts with estimated parts, names what is estimated, and caches texts of parts', async () => {
    const gpt4o = testResource();
    const gpt41 = testResource({
      id: 'gpt41',
      tokenProvider: { provider: 'openai', model: 'gpt-4.1' },
    });
    const mistral = testResource({
      id: 'mistral',
      tokenProvider: { provider: 'mistral', model: 'mistral-large-latest' },
    });
    const metrics = createMetrics();
    const counters = createTokenCounters({
      registry: createMemoryRegistry([gpt4o, gpt41, mistral]),
      metrics,
      log: pino({ level: 'silent' }),
      countInThread: false,
    });
    const image = (url: string, detail?: 'low' | 'high') =>
      ({ type: 'image_url', image_url: { url, ...(detail ? { detail } : {}) } }) as const;
    const known = dataUrl(png(1024, 1024));
    const messages: CountableMessage[] = [
      { role: 'user', content: [{ type: 'text', text: 'look' }, image(known, 'low')] },
      { role: 'user', content: [image(known, 'high')] },
      { role: 'user', content: [image('https://example.com/a.png', 'high')] },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
      },
      { role: 'tool', content: 'ok', tool_call_id: 'c1' },
      { role: 'user', content: 'look' },
    ];
    try {
      await counters.ready;
      const oracle = await createTokenCounter('o200k_base');
      const results = await (await counters.counterFor(gpt4o)).countMessages(messages);
      expect(results.map((r) => r.tokens)).toEqual(messages.map((m) => oracle.countMessage(m)));
      expect(results.map((r) => r.approximatedBy)).toEqual([
        undefined, // a low-detail image is exact
        undefined, // a high-detail image of known size is exact
        'o200k_base; estimated: images',
        'o200k_base; estimated: tool calls',
        'o200k_base; estimated: tool_call_id',
        undefined,
      ]);
      // The cache is keyed on text: a text counted as a part is found again as a string content.
      const hits = async () =>
        (await metrics.registry.getSingleMetric('memq_token_cache_hits_total')!.get()).values[0]!
          .value;
      const counter = await counters.counterFor(gpt4o);
      const text = 'a text first seen as a part';
      await counter.countMessages([{ role: 'user', content: [{ type: 'text', text }] }]);
      const before = await hits();
      const [again] = await counter.countMessages([{ role: 'user', content: text }]);
      expect(await hits()).toBe(before + 1);
      expect(again!.tokens).toBe(oracle.countMessage({ role: 'user', content: text }));
      // gpt-4.1's image costs are not the 85 / 170 figures: even a low-detail image is estimated.
      const other = await (await counters.counterFor(gpt41)).countMessages(messages.slice(0, 2));
      expect(other.map((r) => r.approximatedBy)).toEqual([
        'o200k_base; estimated: images',
        'o200k_base; estimated: images',
      ]);
      const approx = await (await counters.counterFor(mistral)).countMessages(messages.slice(3, 5));
      expect(approx.map((r) => r.approximatedBy)).toEqual([
        'o200k_base (approximation for mistral-large-latest); estimated: tool calls',
        'o200k_base (approximation for mistral-large-latest); estimated: tool_call_id',
      ]);
    } finally {
      await counters.close();
    }
  });

  it('counts the texts of parts and tool calls of a large batch in the counting thread', async () => {
    const resource = testResource();
    const metrics = createMetrics();
    const counters = createTokenCounters({
      registry: createMemoryRegistry([resource]),
      metrics,
      log: pino({ level: 'silent' }),
    });
    const long = 'The parcel left the depot on Monday. '.repeat(200);
    const messages: CountableMessage[] = [
      {
        role: 'user',
        content: [
          { type: 'text', text: long },
          { type: 'text', text: 'thanks' },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'c1',
            type: 'function',
            function: { name: 'track', arguments: JSON.stringify({ note: long }) },
          },
        ],
      },
      { role: 'tool', content: long, tool_call_id: 'c1' },
    ];
    try {
      await counters.ready;
      const oracle = await createTokenCounter('o200k_base');
      const results = await (await counters.counterFor(resource)).countMessages(messages);
      expect(results.map((r) => r.tokens)).toEqual(messages.map((m) => oracle.countMessage(m)));
      const busy = await metrics.registry
        .getSingleMetric('memq_counting_thread_busy_seconds_total')!
        .get();
      expect(busy.values[0]!.value).toBeGreaterThan(0); // the thread counted them
    } finally {
      await counters.close();
    }
  }, 60_000);

  it('counts a batch larger than one thread request in several, in order', async () => {
    const resource = testResource();
    const counters = createTokenCounters({
      registry: createMemoryRegistry([resource]),
      metrics: createMetrics(),
      log: pino({ level: 'silent' }),
    });
    // 3 x 1.5 Mi characters: more than THREAD_REQUEST_CHARS (4 Mi), so two requests.
    const size = 1.5 * 2 ** 20;
    const messages: CountableMessage[] = ['parcel ', 'depot 12 ', 'Monday, '].map((word) => ({
      role: 'user',
      content: word.repeat(Math.ceil(size / word.length)),
    }));
    expect(messages.reduce((n, m) => n + (m.content as string).length, 0)).toBeGreaterThan(
      THREAD_REQUEST_CHARS,
    );
    try {
      const results = await (await counters.counterFor(resource)).countMessages(messages);
      const oracle = await createTokenCounter('o200k_base');
      expect(results.map((r) => r.tokens)).toEqual(messages.map((m) => oracle.countMessage(m)));
    } finally {
      await counters.close();
    }
  }, 120_000);
});
