import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createMemoryRegistry,
  parseMemoryResource,
  type MemoryRegistry,
} from '../../src/config/load-memories.js';
import type { MessageInput } from '../../src/core/message.js';
import { planFromPrefix } from '../../processors/flush.js';
import { readWholeLog } from '../../src/store/log-pages.js';
import { planFlush } from '../../src/flush/strategies.js';
import { startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const STRATEGIES = ['simple_fifo', 'hybrid_summary'] as const;

/** A message-count memory flushed down to 2 messages (0.5 x 4): every plan reaches the call. */
const yaml = (strategy: string) => `resource: memory
id: ${strategy.replace('_', '-')}
type: message_count_based
max_messages: 4
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

/** Page 1 (5 messages): a system message, three ordinary ones, and the call, last on the page. */
const firstPage: MessageInput[] = [
  { role: 'system', content: 'You are a travel agent.' },
  { role: 'user', content: 'Find me a flight to Rome.' },
  { role: 'assistant', content: 'For which day?' },
  { role: 'user', content: 'Friday, please.' },
  {
    role: 'assistant',
    content: null,
    tool_calls: [
      {
        id: 'call_1',
        type: 'function',
        function: { name: 'search_flights', arguments: '{"to": "Rome", "day": "Friday"}' },
      },
    ],
  },
];
const PAGE = firstPage.length;
const CALL = PAGE - 1;

describe('a prefix plan and a tool call whose next page decides, on real Redis', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  let registry: MemoryRegistry;
  beforeEach(async () => {
    ns = createRedisNamespace();
    const parsed = STRATEGIES.map((s) => parseMemoryResource(yaml(s), `${s}.yaml`));
    expect(parsed.flatMap((p) => p.problems)).toEqual([]);
    registry = createMemoryRegistry(parsed.map((p) => p.resource!));
    pipeline = await startPipeline(ns, registry);
    await pipeline.workers.queues.flush.pause(); // no automatic flush: the plans are compared
  });
  afterEach(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  /** Writes `messages` to a fresh instance; its ids, the prefix plan and the whole-log plan. */
  async function plans(
    strategy: (typeof STRATEGIES)[number],
    key: string,
    messages: MessageInput[],
  ) {
    const target = { resource: strategy.replace('_', '-'), key };
    const ref = { project: 'test', ...target };
    await pipeline.client.write(target, messages).then((r) => pipeline.client.waitFor(r));
    const resource = registry.get(target.resource);
    const whole = await readWholeLog(pipeline.store, ref);
    const fromWhole = planFlush(strategy, resource, {
      window: whole.messages,
      summaryTokens: whole.summaryTokens,
    });
    const { plan } = await planFromPrefix(pipeline.store, ref, resource, strategy, PAGE);
    const removed = (p: typeof plan) => [...p.evictedIds, ...p.foldedIds];
    return {
      ids: whole.messages.map((m) => m.message.id),
      fromPrefix: removed(plan),
      fromWhole: removed(fromWhole),
    };
  }

  it.each(STRATEGIES)(
    '%s: only a user message on the last page, so the call keeps waiting',
    async (strategy) => {
      const { ids, fromPrefix, fromWhole } = await plans(strategy, 'waiting', [
        ...firstPage,
        { role: 'user', content: 'Also, please hurry up.' },
      ]);
      // The three ordinary messages go; the call, and what follows it, stay.
      expect(fromPrefix).toEqual(ids.slice(1, CALL));
      expect(fromWhole).toEqual(fromPrefix);
    },
  );

  it.each(STRATEGIES)(
    '%s: a later assistant message on the next page, so the call was abandoned',
    async (strategy) => {
      const { ids, fromPrefix, fromWhole } = await plans(strategy, 'abandoned', [
        ...firstPage,
        { role: 'user', content: 'Also, please hurry up.' },
        { role: 'assistant', content: 'The search is down; try the airline site.' },
        { role: 'user', content: 'Fine, thanks.' },
        { role: 'assistant', content: 'Have a good trip.' },
        ...Array.from({ length: 6 }, (_, i) => ({
          role: i % 2 ? ('assistant' as const) : ('user' as const),
          content: `Later message ${i}.`,
        })),
      ]);
      // Down to 2 messages: everything but the system message and the newest message goes,
      // the call with it.
      expect(fromPrefix).toContain(ids[CALL]);
      expect(fromPrefix).toEqual(ids.slice(1, -1));
      expect(fromWhole).toEqual(fromPrefix);
    },
  );
});
