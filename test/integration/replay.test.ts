import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createTokenCounter, encodingForModel } from '../../src/tokens/counter.js';
import { buildConversations, type Conversation } from '../../src/replay/corpus.js';
import {
  replayMessageIds,
  runReplay,
  type ReplayDeps,
  type ReplayReport,
} from '../../src/replay/replay.js';
import { shippedMemories } from '../helpers/memories.js';
import { replayDepsFor, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const LIMIT = 300;
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/;
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('memq replay on 300 real e-mails', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let pipeline: TestPipeline;
  let report: ReplayReport;
  let source: Conversation[];
  let deps: ReplayDeps;

  beforeAll(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
    pipeline = await startPipeline(ns, registry);
    deps = replayDepsFor(ns, pipeline);
    report = await runReplay(deps, { memory: 'customer-support', limit: LIMIT });
    source = (await buildConversations({ limit: LIMIT })).conversations;
  }, 120_000);
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('reports every enqueued message as accepted and committed', () => {
    expect(report.messagesEnqueued).toBe(LIMIT);
    expect(report.messagesAccepted).toBe(LIMIT);
    expect(report.duplicates).toBe(0);
    expect(report.failedJobs).toBe(0);
    expect(report.messagesStored + report.messagesFolded).toBe(LIMIT);
    expect(report.exactMemories).toBe(report.threads);
    expect(report.redactionsByRule['redact_patterns[0]']).toBeGreaterThan(0);
    expect(Object.values(report.redactionsByRule).reduce((a, b) => a + b, 0)).toBe(
      report.redactions,
    );
    expect(report.threads).toBe(source.length);
  });

  it('stores every e-mail once, in thread order, redacted, with exact token counts', async () => {
    const resource = registry.get('customer-support');
    const counter = await createTokenCounter(encodingForModel(resource.tokenProvider.model));
    let tokens = 0;
    for (const conversation of source) {
      const window = await pipeline.client.read(
        { resource: 'customer-support', key: conversation.threadId },
        { limit: 1000 },
      );
      // Messages at or below the summary's watermark were folded into it by a flush.
      const watermark = window.summary?.covers_through_id;
      const kept = replayMessageIds(conversation)
        .map((id, index) => ({ id, index }))
        .filter(({ id }) => watermark === undefined || id > watermark);
      expect(window.messages.map((m) => m.message.id)).toEqual(kept.map((k) => k.id));
      expect(window.messages.map((m) => m.message.role)).toEqual(
        kept.map((k) => conversation.messages[k.index]!.role),
      );
      window.messages.forEach(({ message }, i) => {
        const original = conversation.messages[kept[i]!.index]!.content;
        // Independent of the redactor: no e-mail address survives, and the stored text is the
        // original with some spans replaced by [REDACTED].
        expect(message.content).not.toMatch(EMAIL);
        const shape = new RegExp(
          '^' +
            (message.content as string).split('[REDACTED]').map(escapeRegExp).join('[\\s\\S]+?') +
            '$',
        );
        expect(original).toMatch(shape);
      });
      const exact = window.messages.map((m) => counter.countMessage(m.message));
      expect(window.messages.map((m) => m.tokens)).toEqual(exact);
      expect(window.tokenCount).toBe(
        exact.reduce((a, b) => a + b, 0) + (window.summary?.tokens ?? 0),
      );
      expect(window.estimatedTokens).toBe(0);
      expect(window.messageCount).toBe(window.total);
      tokens += window.tokenCount;
    }
    expect(report.tokensCounted).toBe(tokens);
    expect(report.redactions).toBeGreaterThan(0);
  });

  it('stores nothing twice when the same slice is replayed again', async () => {
    const again = await runReplay(deps, { memory: 'customer-support', limit: LIMIT });
    expect(again.messagesAccepted).toBe(0);
    expect(again.duplicates).toBe(LIMIT);
    expect(again.messagesStored).toBe(report.messagesStored);
    expect(again.tokensCounted).toBe(report.tokensCounted);
  }, 120_000);
});
