import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConversations } from '../../src/replay/corpus.js';
import { runReplay, type ReplayReport } from '../../src/replay/replay.js';
import { shippedMemories } from '../helpers/memories.js';
import { replayDepsFor, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const LIMIT = 2000;
// Independent of the redactor (JavaScript regexes, not memq's RE2 patterns).
const EMAILS = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
const PHONES = /\+\d{1,3}[\s.-]?\(?\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4}\b/g;

describe('privacy: 2,000 real e-mails through a redacting policy, then every key scanned', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  let report: ReplayReport;
  let originals: string[];

  beforeAll(async () => {
    ns = createRedisNamespace();
    pipeline = await startPipeline(ns, await shippedMemories());
    report = await runReplay(replayDepsFor(ns, pipeline), {
      memory: 'customer-support',
      limit: LIMIT,
    });
    const { conversations } = await buildConversations({ limit: LIMIT });
    const texts = conversations.flatMap((c) => c.messages.map((m) => m.content));
    originals = [
      ...new Set(texts.flatMap((t) => [...(t.match(EMAILS) ?? []), ...(t.match(PHONES) ?? [])])),
    ];
  }, 180_000);
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('stores 2,000 messages and none of the addresses or phone numbers they held', async () => {
    expect(report.messagesStored + report.messagesFolded).toBe(LIMIT);
    expect(report.flushes).toBeGreaterThan(0); // summaries are built from redacted text only
    expect(report.failedJobs).toBe(0);
    expect(report.redactions).toBeGreaterThan(0);
    expect(originals.length).toBeGreaterThan(100);
    // Memory keys, BullMQ job hashes (job data), event streams, summaries: all of it.
    const everything = await ns.allText();
    expect(everything.length).toBeGreaterThan(1_000_000);
    const leaked = originals.filter((original) => everything.includes(original));
    expect(leaked).toEqual([]);
  });

  it('never stores a non-persistable role and reports the drop to the caller', async () => {
    const target = { resource: 'customer-support', key: 'privacy:roles' };
    const receipt = await pipeline.client.append(target, [
      { role: 'system', content: 'internal prompt with ops@example.org' },
      { role: 'tool', tool_call_id: 'call_1', content: 'tool output' },
      { role: 'user', content: 'hello' },
    ]);
    expect(receipt.dropped).toBe(2);
    await pipeline.client.waitFor(receipt.jobId!);
    const window = await pipeline.client.read(target);
    expect(window.messages.map((m) => m.message.role)).toEqual(['user']);
    const everything = await ns.allText();
    expect(everything).not.toContain('internal prompt');
    expect(everything).not.toContain('tool output');
  });
});
