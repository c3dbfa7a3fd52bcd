/**
 * `memq audit` on a memory without a privacy policy (the shipped `agent-memory`): e-mail
 * addresses and phone numbers are stored as sent, which is what such a resource asks for, so the
 * audit must not report them as leaks, while every other check still runs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMemoryResources } from '../../src/config/load-memories.js';
import { memoryKeys } from '../../src/redis/keys.js';
import { loadConversationFile } from '../../src/replay/conversation-file.js';
import { runReplay } from '../../src/replay/replay.js';
import { runAudit } from '../../src/replay/replay-audit.js';
import { replayDepsFor, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const FIXTURE = 'test/fixtures/agent-conversation.json';

describe('memq audit without a privacy policy', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  let registry: Awaited<ReturnType<typeof loadMemoryResources>>;

  beforeAll(async () => {
    ns = createRedisNamespace();
    registry = await loadMemoryResources('memories');
    expect(registry.get('agent-memory').privacyPolicy).toBeUndefined();
    pipeline = await startPipeline(ns, registry, 'test');
  });
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('reports no leak of what the resource stores on purpose, and still checks the rest', async () => {
    const report = await runReplay(replayDepsFor(ns, pipeline), {
      memory: 'agent-memory',
      conversations: FIXTURE,
    });
    expect(report).toMatchObject({ failedJobs: 0, enqueueErrors: 0 });
    const deps = {
      redis: ns.redis,
      keyPrefix: ns.keyPrefix,
      queuePrefix: ns.queuePrefix,
      registry,
      env: {},
    };
    const options = { memory: 'agent-memory', project: 'test', conversations: FIXTURE };
    const clean = await runAudit(deps, options);
    expect(clean.violations).toEqual([]);
    expect(clean.messages).toBe(report.messagesAccepted);

    // The other checks still run: a field changed behind memq's back is found (key names from
    // memoryKeys, not KEYS: on a Redis Cluster KEYS answers for one node only),
    const [first] = loadConversationFile(FIXTURE).conversations;
    const keys = memoryKeys(ns.keyPrefix, {
      project: 'test',
      resource: 'agent-memory',
      key: first!.key,
    });
    const msg = keys.msg;
    const bodies = await ns.redis.hgetall(msg);
    const [id, body] = Object.entries(bodies)[0]!;
    const changed = { ...(JSON.parse(body) as Record<string, unknown>), name: 'tampered' };
    await ns.redis.hset(msg, id, JSON.stringify(changed));
    // (a changed name also changes the message's tokens: those are reported too)
    expect((await runAudit(deps, options)).violations).toContainEqual({
      kind: 'content',
      where: expect.any(String) as unknown,
      // `name` when the message had one, `extra field name` when it had none
      detail: expect.stringMatching(
        new RegExp(`^message ${id}: (extra field )?name not as the privacy policy`),
      ) as unknown,
    });
    await ns.redis.hset(msg, id, body);
    // and a token count changed behind memq's back.
    await ns.redis.hset(keys.meta, 'token_count', 1);
    const tampered = await runAudit(deps, options);
    expect(tampered.violations).toEqual([
      expect.objectContaining({
        kind: 'token_count',
        detail: expect.stringMatching(/^token_count 1, /) as unknown,
      }),
    ]);
  }, 120_000);
});
