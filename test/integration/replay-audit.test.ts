import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { memoryKeys } from '../../src/redis/keys.js';
import { buildConversations } from '../../src/replay/corpus.js';
import { runReplay, replayMessageIds, type ReplayReport } from '../../src/replay/replay.js';
import { auditSummaryLine, runAudit, type AuditDeps } from '../../src/replay/replay-audit.js';
import { runMemq } from '../helpers/cli.js';
import { shippedMemories } from '../helpers/memories.js';
import { replayDepsFor, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const LIMIT = 500;
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/;

describe('memq replay + memq audit on 500 real e-mails', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let pipeline: TestPipeline;
  let report: ReplayReport;
  let deps: AuditDeps;
  const options = { memory: 'customer-support', project: 'test', limit: LIMIT };
  const memq = (...args: string[]) => runMemq(ns, args, { MEMQ_PROJECT: 'test' });

  beforeAll(async () => {
    ns = createRedisNamespace();
    registry = await shippedMemories();
    pipeline = await startPipeline(ns, registry);
    report = await runReplay(replayDepsFor(ns, pipeline), {
      memory: 'customer-support',
      limit: LIMIT,
    });
    deps = {
      redis: ns.redis,
      keyPrefix: ns.keyPrefix,
      queuePrefix: ns.queuePrefix,
      registry,
      env: {},
    };
  }, 180_000);
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('finds nothing wrong after a clean replay, and counts what the replay reported', async () => {
    expect(report.failedJobs).toBe(0);
    expect(report.flushes).toBeGreaterThan(0); // at least one thread folds into a summary
    const audit = await runAudit(deps, options);
    expect(audit.violations).toEqual([]);
    expect(audit.memories).toBe(report.threads);
    expect(audit.messages).toBe(report.messagesAccepted);
    expect(audit.folded + audit.evicted).toBe(report.messagesFolded);
    expect(audit.notPersisted).toBe(0);
    expect(audit.originals).toBeGreaterThan(100);
    expect(auditSummaryLine(audit)).toBe(
      `audit: ${report.threads} memories, ${LIMIT} messages, 0 violations`,
    );
    const cli = memq('audit', '--limit', String(LIMIT));
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout.trim().split('\n').at(-1)).toBe(auditSummaryLine(audit));
  }, 240_000);

  it('reports a lost message, a stray body, a wrong counter, a changed field and leaked personal data (even glued into a longer address), and exits 1', async () => {
    const { conversations } = await buildConversations({ limit: LIMIT });
    const thread = conversations.find((c) => c.messages.length >= 3)!;
    const ref = { project: 'test', resource: 'customer-support', key: thread.threadId };
    const keys = memoryKeys(ns.keyPrefix, ref);
    const stored = await ns.redis.zrange(keys.ord, '0', '-1');
    const lost = stored.at(-1)!;
    expect(replayMessageIds(thread)).toContain(lost);
    await ns.redis.zrem(keys.ord, lost);
    await ns.redis.hdel(keys.msg, lost);
    const other = conversations.find((c) => c !== thread)!;
    await ns.redis.hincrby(
      memoryKeys(ns.keyPrefix, { ...ref, key: other.threadId }).meta,
      'token_count',
      5,
    );
    const address = conversations
      .flatMap((c) => c.messages.map((m) => EMAIL.exec(m.content)?.[0]))
      .find((a) => a !== undefined)!;
    // Glued to other address characters on both sides: still the original address in the value.
    await ns.redis.set(`${ns.keyPrefix}planted`, `note: x${address}.evil`);
    // A stored message whose metadata changed, with a field the replay never sends.
    const third = conversations.find((c) => c !== thread && c !== other)!;
    const thirdKeys = memoryKeys(ns.keyPrefix, { ...ref, key: third.threadId });
    const [tamperedId] = await ns.redis.zrange(thirdKeys.ord, '0', '0');
    const tampered = JSON.parse((await ns.redis.hget(thirdKeys.msg, tamperedId!))!) as {
      metadata: Record<string, string>;
    };
    expect(replayMessageIds(third)).toContain(tamperedId);
    const changed: Record<string, unknown> = {
      ...tampered,
      metadata: { ...tampered.metadata, subject: 'changed' },
      x: 1,
    };
    await ns.redis.hset(thirdKeys.msg, tamperedId!, JSON.stringify(changed));
    // A body left behind without its log entry.
    await ns.redis.hset(
      keys.msg,
      '01JC00000000000000000000ZZ',
      '{"id":"01JC00000000000000000000ZZ"}',
    );

    const audit = await runAudit(deps, options);
    const kinds = audit.violations.map((v) => `${v.kind} ${v.where}`);
    expect(kinds).toEqual(
      expect.arrayContaining([
        `missing ${thread.threadId}`,
        `unexpected ${thread.threadId}`,
        `message_count ${thread.threadId}`,
        `token_count ${other.threadId}`,
        `personal_data ${ns.keyPrefix}planted`,
        `content ${third.threadId}`,
      ]),
    );
    expect(audit.violations.find((v) => v.where === third.threadId)?.detail).toBe(
      `message ${tamperedId}: metadata, extra field x not as the privacy policy should store the source`,
    );
    expect(JSON.stringify(audit.violations)).not.toContain(address);
    const cli = memq('audit', '--limit', String(LIMIT));
    expect(cli.status).toBe(1);
    expect(cli.stdout).not.toContain(address);
    expect(cli.stdout.trim().split('\n').at(-1)).toBe(auditSummaryLine(audit));
  }, 240_000);
});
