/**
 * A scripted agent conversation end to end: developer and system messages, a user message with
 * an image URL and a data: image, parallel tool calls answered out of order with a user message
 * between the results, personal data in tool-call arguments and a text part, a message marked
 * `do_not_persist` (test/fixtures/agent-conversation.json), replayed through a real pipeline
 * into a memory of every flush strategy at small limits (test/fixtures/memories/agent), flushed,
 * then audited (`runAudit` and `memq audit --conversations`) and read back through the context
 * read at every budget.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMemoryResources, type MemoryRegistry } from '../../src/config/load-memories.js';
import { PayloadError } from '../../src/core/errors.js';
import { FLUSH_STRATEGIES, type FlushStrategy } from '../../src/core/memory-resource.js';
import { memoryKeys } from '../../src/redis/keys.js';
import { loadConversationFile } from '../../src/replay/conversation-file.js';
import { runReplay, scriptedMessageIds, type ReplayReport } from '../../src/replay/replay.js';
import { auditSummaryLine, runAudit, type AuditDeps } from '../../src/replay/replay-audit.js';
import { readContext } from '../../src/store/context-read.js';
import { runMemq } from '../helpers/cli.js';
import { replayDepsFor, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const FIXTURE = 'test/fixtures/agent-conversation.json';
const MEMORIES = 'test/fixtures/memories/agent';
const PROJECT = 'test';
/** The fixture's memory resource for `strategy` (`agent-simple-fifo`, ...). */
const resourceOf = (strategy: FlushStrategy) => `agent-${strategy.replaceAll('_', '-')}`;

const { conversations } = loadConversationFile(FIXTURE);
const sent = conversations.flatMap((c) => c.messages);
const accepted = sent.filter((m) => m.privacy?.do_not_persist !== true);
const toolCalls = accepted.reduce((n, m) => n + (m.tool_calls?.length ?? 0), 0);

/** The fields of a message the pairing checks read. */
interface ChatLike {
  readonly role: string;
  readonly tool_calls?: readonly { readonly id: string }[] | undefined;
  readonly tool_call_id?: string | undefined;
}

/**
 * What `context` breaks of the rule "a tool call is sent with every result the log holds for it,
 * and a result only with its call" (call ids as stored), as readable lines; [] when nothing.
 */
function splitPairs(log: readonly ChatLike[], context: readonly ChatLike[]): string[] {
  const resultsInLog = new Map<string, number>();
  const callsInLog = new Set<string>();
  for (const m of log) {
    if (m.role === 'tool' && m.tool_call_id !== undefined)
      resultsInLog.set(m.tool_call_id, (resultsInLog.get(m.tool_call_id) ?? 0) + 1);
    if (m.role === 'assistant') for (const call of m.tool_calls ?? []) callsInLog.add(call.id);
  }
  const callsSent = new Set(
    context
      .filter((m) => m.role === 'assistant')
      .flatMap((m) => (m.tool_calls ?? []).map((c) => c.id)),
  );
  const broken: string[] = [];
  for (const id of callsSent) {
    const sentResults = context.filter((m) => m.role === 'tool' && m.tool_call_id === id).length;
    if (sentResults !== (resultsInLog.get(id) ?? 0))
      broken.push(`call ${id}: ${sentResults} of ${resultsInLog.get(id) ?? 0} results sent`);
  }
  for (const m of context) {
    if (m.role !== 'tool' || m.tool_call_id === undefined) continue;
    if (callsInLog.has(m.tool_call_id) && !callsSent.has(m.tool_call_id))
      broken.push(`result of ${m.tool_call_id} sent without its call`);
  }
  return broken;
}

describe('a scripted agent conversation through every flush strategy', () => {
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let pipeline: TestPipeline;
  let deps: AuditDeps;
  const reports = new Map<FlushStrategy, ReplayReport>();

  beforeAll(async () => {
    ns = createRedisNamespace();
    registry = await loadMemoryResources(MEMORIES);
    pipeline = await startPipeline(ns, registry, PROJECT);
    deps = {
      redis: ns.redis,
      keyPrefix: ns.keyPrefix,
      queuePrefix: ns.queuePrefix,
      registry,
      env: {},
    };
  });
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('has a memory of every flush strategy, and a fixture that exercises the message model', () => {
    expect(
      registry
        .list()
        .map((r) => r.flushing.type)
        .sort(),
    ).toEqual([...FLUSH_STRATEGIES].sort());
    expect(sent.some((m) => m.role === 'developer')).toBe(true);
    expect(sent.some((m) => (m.tool_calls?.length ?? 0) >= 3)).toBe(true);
    const images = sent.flatMap((m) =>
      Array.isArray(m.content) ? m.content.filter((p) => p.type === 'image_url') : [],
    );
    expect(images.map((p) => p.image_url.url.slice(0, 11)).sort()).toEqual(
      expect.arrayContaining(['data:image/', 'https://ima']),
    );
    expect(images.map((p) => p.image_url.detail)).toEqual(expect.arrayContaining(['low', 'high']));
    // the example users start from is this fixture
    expect(readFileSync('examples/agent-conversation.json', 'utf8')).toBe(
      readFileSync(FIXTURE, 'utf8'),
    );
  });

  describe.each(FLUSH_STRATEGIES)('%s', (strategy) => {
    const memory = resourceOf(strategy);
    const refOf = (key: string) => ({ project: PROJECT, resource: memory, key });

    beforeAll(async () => {
      const report = await runReplay(replayDepsFor(ns, pipeline), {
        memory,
        conversations: FIXTURE,
      });
      reports.set(strategy, report);
      // A requested flush of every conversation too, down to the target, whatever the trigger did.
      for (const conversation of conversations) {
        const receipt = await pipeline.client.flush({ resource: memory, key: conversation.key });
        await pipeline.client.waitFor(receipt, { timeoutMs: 30_000 });
      }
    }, 120_000);

    it('replays every message, flushes, and the audit finds nothing wrong', async () => {
      const report = reports.get(strategy)!;
      expect(report).toMatchObject({
        source: 'conversations',
        threads: conversations.length,
        messagesEnqueued: sent.length,
        messagesAccepted: accepted.length,
        notPersisted: 1,
        failedJobs: 0,
        enqueueErrors: 0,
        duplicates: 0,
      });
      expect(report.flushes).toBeGreaterThan(0);
      expect(report.redactions).toBeGreaterThan(0);

      const audit = await runAudit(deps, { memory, project: PROJECT, conversations: FIXTURE });
      expect(audit.violations).toEqual([]);
      expect(audit).toMatchObject({
        memories: conversations.length,
        messages: accepted.length,
        notPersisted: 1,
        toolCalls,
      });
      let inLogs = 0;
      for (const conversation of conversations)
        inLogs += (await pipeline.store.stats(refOf(conversation.key))).messageCount;
      expect(audit.folded + audit.evicted).toBeGreaterThan(0);
      expect(inLogs + audit.folded + audit.evicted).toBe(accepted.length);
      expect(auditSummaryLine(audit)).toBe(
        `audit: ${conversations.length} memories, ${accepted.length} messages, 0 violations`,
      );
    }, 60_000);

    it('sends every tool call with its results, and the instructions, at every context budget', async () => {
      let cuts = 0;
      for (const conversation of conversations) {
        const ref = refOf(conversation.key);
        const log = (await pipeline.store.read(ref, { limit: 1000 })).messages.map(
          (s) => s.message,
        );
        const pinned = log.filter((m) => m.role === 'developer' || m.role === 'system');
        const whole = await readContext(pipeline.store, ref, { maxTokens: 1_000_000 });
        expect(whole.omitted.messages).toBe(0);
        for (let budget = 10; budget <= whole.tokens + 20; budget += 10) {
          const context = await readContext(pipeline.store, ref, { maxTokens: budget });
          const where = `${conversation.key} at ${budget} tokens`;
          expect(splitPairs(log, context.messages), where).toEqual([]);
          for (const instruction of pinned) {
            expect(
              context.messages.filter(
                (m) => m.role === instruction.role && m.content === instruction.content,
              ),
              where,
            ).toHaveLength(1);
          }
          const sentUnits = context.messages.length - pinned.length - (context.summary ? 1 : 0);
          if (context.omitted.messages > 0 && sentUnits > 0) cuts += 1;
        }
      }
      // some budgets cut through a conversation (some messages sent, older ones left out)
      expect(cuts).toBeGreaterThan(0);
    }, 120_000);
  });

  it('memq audit --conversations exits 0 on a replayed memory', () => {
    const memory = resourceOf('hybrid_summary');
    const run = runMemq(
      ns,
      ['audit', '--conversations', FIXTURE, '--memory', memory, '--project', PROJECT],
      { MEMQ_MEMORIES_DIR: MEMORIES },
    );
    expect(run.status, run.stderr + run.stdout).toBe(0);
    expect(run.stdout.trim().split('\n').at(-1)).toBe(
      `audit: ${conversations.length} memories, ${accepted.length} messages, 0 violations`,
    );
  }, 60_000);

  it('reports a tool result removed from a memory, and a call removed while its results stay', async () => {
    const memory = resourceOf('simple_fifo');
    /** A present assistant message with a call whose result is present too, in `key`'s log. */
    const pairIn = async (key: string) => {
      const keys = memoryKeys(ns.keyPrefix, { project: PROJECT, resource: memory, key });
      const ids = await ns.redis.zrange(keys.ord, '0', '-1');
      const bodies = await ns.redis.hgetall(keys.msg);
      const messages = ids.map((id) => JSON.parse(bodies[id]!) as ChatLike & { id: string });
      for (const call of messages) {
        for (const [index, c] of (call.tool_calls ?? []).entries()) {
          const result = messages.find((m) => m.role === 'tool' && m.tool_call_id === c.id);
          if (result) return { keys, call, index, result, ids: messages.map((m) => m.id) };
        }
      }
      return undefined;
    };
    /** Removes `id` from the log as a flush would (counters kept consistent), evicted or folded. */
    const remove = async (keys: ReturnType<typeof memoryKeys>, id: string) => {
      const tokens = Number(await ns.redis.hget(keys.tok, id));
      const watermark = (await ns.redis.hget(keys.meta, 'watermark')) ?? '';
      await ns.redis.zrem(keys.ord, id);
      await ns.redis.hdel(keys.msg, id);
      await ns.redis.hdel(keys.tok, id);
      await ns.redis.hincrby(keys.meta, 'message_count', -1);
      await ns.redis.hincrby(keys.meta, 'token_count', -tokens);
      await ns.redis.hincrby(
        keys.meta,
        watermark !== '' && id <= watermark ? 'folded_count' : 'evicted_count',
        1,
      );
    };
    const found = [];
    for (const conversation of conversations) {
      const pair = await pairIn(conversation.key);
      if (pair) found.push({ key: conversation.key, ...pair });
    }
    expect(
      found.length,
      'memories of simple_fifo that hold a tool call and its result',
    ).toBeGreaterThanOrEqual(2);
    const [first, second] = found as [(typeof found)[0], (typeof found)[0]];
    await remove(first.keys, first.result.id);
    for (const id of second.ids) {
      // the call's message alone
      if (id === second.call.id) await remove(second.keys, id);
    }
    const audit = await runAudit(deps, { memory, project: PROJECT, conversations: FIXTURE });
    expect(audit.violations).toEqual(
      expect.arrayContaining([
        {
          kind: 'tool_pairing',
          where: first.key,
          detail: `tool call ${first.index} of message ${first.call.id} is in the log without its result ${first.result.id}`,
        },
        {
          kind: 'tool_pairing',
          where: second.key,
          detail: `result ${second.result.id} is in the log without message ${second.call.id}, which made its call (tool call ${second.index})`,
        },
      ]),
    );
    // the removals themselves are accounted for: nothing else is wrong
    expect(audit.violations.every((v) => v.kind === 'tool_pairing')).toBe(true);
    const cli = runMemq(
      ns,
      ['audit', '--conversations', FIXTURE, '--memory', memory, '--project', PROJECT],
      { MEMQ_MEMORIES_DIR: MEMORIES },
    );
    expect(cli.status).toBe(1);
    expect(cli.stdout).toContain(`violation tool_pairing ${first.key}: `);

    // A message marked do_not_persist found in a memory is reported as such.
    const trip = conversations.find((c) => c.messages.some((m) => m.privacy?.do_not_persist))!;
    const index = trip.messages.findIndex((m) => m.privacy?.do_not_persist === true);
    const hidden = scriptedMessageIds(trip)[index]!;
    const tripKeys = memoryKeys(ns.keyPrefix, {
      project: PROJECT,
      resource: memory,
      key: trip.key,
    });
    await ns.redis.hset(tripKeys.msg, hidden, JSON.stringify({ id: hidden, role: 'user' }));
    const planted = await runAudit(deps, { memory, project: PROJECT, conversations: FIXTURE });
    expect(planted.violations).toContainEqual({
      kind: 'unexpected',
      where: trip.key,
      detail: `message ${hidden} is marked do_not_persist but is stored`,
    });
  }, 60_000);
});

describe('memq replay --conversations with a bad file', () => {
  let ns: RedisNamespace;
  let dir: string;
  beforeAll(() => {
    ns = createRedisNamespace();
    dir = mkdtempSync(path.join(tmpdir(), 'memq-agent-'));
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await ns.cleanup();
  });

  it('exits 2 naming the file, the conversation and the field, and enqueues nothing', async () => {
    const bad = path.join(dir, 'bad.json');
    const good = conversations[0]!;
    writeFileSync(
      bad,
      JSON.stringify([
        good,
        { key: 'agent:two', messages: [{ role: 'tool', content: 'result without a call id' }] },
      ]),
    );
    const run = runMemq(
      ns,
      ['replay', '--conversations', bad, '--memory', resourceOf('simple_fifo')],
      { MEMQ_MEMORIES_DIR: MEMORIES, MEMQ_PROJECT: PROJECT },
    );
    expect(run.status, run.stderr).toBe(2);
    expect(run.stderr).toContain(
      `--conversations ${bad}: conversation 1: messages[0].tool_call_id: `,
    );
    expect(await ns.keys()).toEqual([]);
  }, 60_000);

  it('refuses a key the privacy policy would redact before the first append (runReplay)', async () => {
    const registry = await loadMemoryResources(MEMORIES);
    const pipeline = await startPipeline(ns, registry, PROJECT);
    try {
      const file = path.join(dir, 'redactable-key.json');
      const [first] = conversations;
      writeFileSync(
        file,
        JSON.stringify([first, { key: 'agent:jane.doe@example.com', messages: first!.messages }]),
      );
      const replay = runReplay(replayDepsFor(ns, pipeline), {
        memory: resourceOf('simple_fifo'),
        conversations: file,
      });
      await expect(replay).rejects.toThrow(PayloadError);
      await expect(replay).rejects.toThrow(
        `--conversations ${file}: conversation 1: messages[0]: key: contains text that memory`,
      );
      const firstIds = scriptedMessageIds(first!);
      const keys = memoryKeys(ns.keyPrefix, {
        project: PROJECT,
        resource: resourceOf('simple_fifo'),
        key: first!.key,
      });
      expect(await ns.redis.zcard(keys.ord)).toBe(0);
      expect(await pipeline.queues.append.getJobCounts()).toMatchObject({
        waiting: 0,
        active: 0,
        completed: 0,
        failed: 0,
      });
      expect(firstIds).toHaveLength(first!.messages.length);
    } finally {
      await pipeline.close();
    }
  }, 60_000);
});
