import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createMemoryRegistry } from '../../../src/config/load-memories.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { createTokenCounter, type CountableMessage } from '../../../src/tokens/counter.js';
import { createTokenCounters } from '../../../src/tokens/resource-counters.js';
import { testResource } from '../../helpers/memories.js';

/** Live heap of this (the main) isolate after a full collection, bytes. */
function liveHeap(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('token counters of a worker process with the counting thread', () => {
  it('count batches, single texts and summaries exactly without loading a tokenizer on the main thread', async () => {
    const resource = testResource({ tokenProvider: { provider: 'openai', model: 'gpt-4o' } });
    const counters = createTokenCounters({
      registry: createMemoryRegistry([resource]),
      metrics: createMetrics(),
      log: pino({ level: 'silent' }),
    });
    const small: CountableMessage[] = [
      { role: 'user', content: 'Where is my order?', name: 'ana' },
      { role: 'assistant', content: 'It left the depot on Monday.' },
    ];
    const large: CountableMessage[] = [
      { role: 'user', content: 'The parcel left the depot on Monday. '.repeat(300) },
      { role: 'tool', content: 'delivered', tool_call_id: 'call_1' },
    ];
    const summary = 'Summary: the customer asked about an order; it was delivered on Tuesday.';
    const before = liveHeap();
    let counted: { small: number[]; large: number[]; summary: number; text: number };
    try {
      await counters.ready;
      const counter = await counters.counterFor(resource);
      const local = await counters.localCounterFor(resource);
      counted = {
        small: (await counter.countMessages(small)).map((r) => r.tokens),
        large: (await counter.countMessages(large)).map((r) => r.tokens),
        // Synchronous, as the flush processor counts a summary against its budget.
        summary: local.countMessage({ role: 'system', content: summary }),
        text: local.countText(summary),
      };
    } finally {
      await counters.close();
    }
    // An o200k_base encoder holds ~20 MB of heap wherever it is loaded.
    expect(liveHeap() - before).toBeLessThan(8 * 2 ** 20);
    const oracle = await createTokenCounter('o200k_base');
    expect(counted).toEqual({
      small: small.map((m) => oracle.countMessage(m)),
      large: large.map((m) => oracle.countMessage(m)),
      summary: oracle.countMessage({ role: 'system', content: summary }),
      text: oracle.countText(summary),
    });
  }, 60_000);
});
