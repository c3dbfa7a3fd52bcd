import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import { PayloadError } from '../../src/core/errors.js';
import type { Message, MessageInput, Summary } from '../../src/core/message.js';
import { createTokenCounter, estimateTokens } from '../../src/tokens/counter.js';
import { memoryKeys, type MemoryRef } from '../../src/redis/keys.js';
import { createMaintenanceStore } from '../../src/store/maintenance-store.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/memory-store.js';
import { runMemq } from '../helpers/cli.js';
import { dataUrl, png } from '../helpers/images.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const nextId = monotonicFactory();

/** A loopback port nothing listens on: the counting API there refuses every connection. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A resource file's text: `message_count_based`, 10 messages, fifo, with `tokenProvider` lines. */
function resourceYaml(id: string, tokenProvider: string) {
  return `resource: memory
id: ${id}
type: message_count_based
max_messages: 10
flushing:
  type: fifo
persistence:
  type: redis
  ttl: 1h
token_provider:
${tokenProvider}`;
}

/** The resource of {@link resourceYaml}, parsed. */
function resource(id: string, tokenProvider: string) {
  const parsed = parseMemoryResource(resourceYaml(id, tokenProvider), `${id}.yaml`);
  expect(parsed.problems).toEqual([]);
  return parsed.resource!;
}

const CLAUDE = 'o200k_base (approximation for claude-sonnet-4-5)';
const MISTRAL = 'o200k_base (approximation for mistral-large-latest)';

const turns = (n: number, prefix = 'turn') =>
  Array.from({ length: n }, (_, i) => ({
    role: i % 2 === 0 ? ('user' as const) : ('assistant' as const),
    content: `${prefix} ${i}: where is my parcel?`,
  }));

describe('exact and approximate token counts through the pipeline on real Redis', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline | undefined;
  beforeEach(() => {
    ns = createRedisNamespace();
  });
  afterEach(async () => {
    await pipeline?.close();
    pipeline = undefined;
    await ns.cleanup();
  });

  const start = async (port: number) => {
    const registry = createMemoryRegistry([
      resource(
        'claude-memory',
        `  provider: anthropic
  model: claude-sonnet-4-5
  api_key_env: TEST_ANTHROPIC_KEY
  endpoint: http://127.0.0.1:${port}
`,
      ),
      resource('gpt-memory', '  provider: openai\n  model: gpt-4o\n'),
      resource('mistral-memory', '  provider: mistral\n  model: mistral-large-latest\n'),
    ]);
    pipeline = await startPipeline(ns, registry, 'test', {
      env: { TEST_ANTHROPIC_KEY: 'sk-test-key' },
    });
    return pipeline;
  };
  /** Appends `messages` and waits until every message of the instance is counted. */
  const appendCounted = async (
    p: TestPipeline,
    target: { resource: string; key: string },
    messages: MessageInput[],
  ) => {
    await p.client.waitFor((await p.client.append(target, messages)).jobId!);
    await eventually(
      async () => (await p.client.read(target)).estimatedTokens === 0,
      'every message counted',
    );
  };

  it('reads a Claude memory counted while its counting API is down as approximate, naming the approximation', async () => {
    const p = await start(await closedPort());
    const target = { resource: 'claude-memory', key: 'c:1' };
    await appendCounted(p, target, turns(3));

    const local = await createTokenCounter('o200k_base');
    const window = await p.client.read(target);
    expect(window).toMatchObject({
      exact: false,
      countedBy: { exact: 0, approximate: 3, estimated: 0 },
      approximatedBy: [CLAUDE],
      tokenCount: turns(3).reduce((sum, m) => sum + local.countMessage(m), 0),
    });
    expect(window.approximateTokens).toBe(window.tokenCount);
    expect(window.messages.map((m) => m.approximatedBy)).toEqual([CLAUDE, CLAUDE, CLAUDE]);
    const stats = await p.client.stats(target, { deep: true });
    expect(stats).toMatchObject({
      exact: false,
      countedBy: { exact: 0, approximate: 3, estimated: 0 },
      approximateTokens: window.tokenCount,
      approximatedBy: [CLAUDE],
      approximateMessagesBy: { [CLAUDE]: 3 },
      consistent: true,
    });
  });

  it('reads an openai gpt-4o memory as exact', async () => {
    const p = await start(await closedPort());
    const target = { resource: 'gpt-memory', key: 'g:1' };
    await appendCounted(p, target, turns(3));
    const window = await p.client.read(target);
    expect(window).toMatchObject({
      exact: true,
      countedBy: { exact: 3, approximate: 0, estimated: 0 },
      approximateTokens: 0,
      approximatedBy: [],
    });
    expect(window.messages.every((m) => m.approximatedBy === undefined)).toBe(true);
    const k = memoryKeys(ns.keyPrefix, { project: 'test', ...target });
    expect(Object.keys(await ns.redis.hgetall(k.tok))).toHaveLength(3); // counts only, no marks
  });

  it('marks a tool call and an image of unknown size approximate and a low-detail image exact, in read and inspect', async () => {
    const p = await start(await closedPort());
    const target = { resource: 'gpt-memory', key: 'g:parts' };
    const photo = dataUrl(png(4096, 4096, 300_000));
    const messages: MessageInput[] = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What does this label say?' },
          { type: 'image_url', image_url: { url: photo, detail: 'low' } },
        ],
      },
      {
        role: 'user',
        content: [{ type: 'image_url', image_url: { url: 'https://example.com/label.png' } }],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'read_label', arguments: '{"side": "front"}' },
          },
        ],
      },
      { role: 'tool', content: 'FRAGILE', tool_call_id: 'call_1' },
    ];
    await appendCounted(p, target, messages);

    const local = await createTokenCounter('o200k_base');
    const IMAGE = 'o200k_base; estimated: images';
    const CALL = 'o200k_base; estimated: tool calls';
    const RESULT = 'o200k_base; estimated: tool_call_id';
    const window = await p.client.read(target);
    expect(window.messages.map((m) => [m.tokens, m.approximatedBy])).toEqual(
      messages.map((m, i) => [
        local.countMessage(m as Message),
        [undefined, IMAGE, CALL, RESULT][i],
      ]),
    );
    // 85 tokens for the 4096 x 4096 photo at low detail, not its 400,000 characters of URL.
    expect(window.messages[0]!.tokens).toBe(
      local.countMessage({ role: 'user', content: 'What does this label say?' }) + 85,
    );
    expect(window).toMatchObject({
      exact: false,
      countedBy: { exact: 1, approximate: 3, estimated: 0 },
      approximateTokens:
        window.messages[1]!.tokens! + window.messages[2]!.tokens! + window.messages[3]!.tokens!,
    });
    expect([...window.approximatedBy].sort()).toEqual([CALL, IMAGE, RESULT].sort());

    const dir = await mkdtemp(path.join(tmpdir(), 'memq-parts-'));
    try {
      await writeFile(
        path.join(dir, 'gpt-memory.yaml'),
        resourceYaml('gpt-memory', '  provider: openai\n  model: gpt-4o\n'),
      );
      const args = ['inspect', 'gpt-memory', target.key, '--project', 'test'];
      const run = runMemq(ns, args, { MEMQ_MEMORIES_DIR: dir });
      expect(run.stderr).toBe('');
      const [first, image, call, result] = window.messages;
      expect(run.stdout).toMatch(new RegExp(`${first!.message.id} user +${first!.tokens} `));
      expect(run.stdout).toMatch(new RegExp(`${image!.message.id} user +≈${image!.tokens} `));
      expect(run.stdout).toMatch(new RegExp(`${call!.message.id} assistant +≈${call!.tokens}`));
      expect(run.stdout).toMatch(new RegExp(`${result!.message.id} tool +≈${result!.tokens} `));
      const json = JSON.parse(
        runMemq(ns, [...args, '--json'], { MEMQ_MEMORIES_DIR: dir }).stdout,
      ) as { messages: Array<{ approximated_by?: string; tokens: number }> };
      expect(json.messages.map((m) => m.approximated_by)).toEqual([undefined, IMAGE, CALL, RESULT]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads a memory of an unknown provider as approximate', async () => {
    const p = await start(await closedPort());
    const target = { resource: 'mistral-memory', key: 'm:1' };
    await appendCounted(p, target, turns(2));
    const window = await p.client.read(target);
    expect(window).toMatchObject({
      exact: false,
      countedBy: { exact: 0, approximate: 2, estimated: 0 },
      approximatedBy: [MISTRAL],
    });
    // What Redis holds: each count has its mark beside it.
    const k = memoryKeys(ns.keyPrefix, { project: 'test', ...target });
    const tok = await ns.redis.hgetall(k.tok);
    for (const m of window.messages) {
      expect(tok[m.message.id]).toBe(String(m.tokens));
      expect(tok[`~${m.message.id}`]).toBe(MISTRAL);
    }
  });

  it('keeps the approximate counters consistent through flush, write, clear and delete', async () => {
    const p = await start(await closedPort());
    const target = { resource: 'mistral-memory', key: 'm:2' };
    const deep = () => p.client.stats(target, { deep: true });

    // 9 messages: over the trigger (8 of 10), flushed down to the target (5), oldest first.
    await appendCounted(p, target, turns(9));
    await eventually(async () => (await p.client.read(target)).total === 5, 'the automatic flush');
    await eventually(
      async () => (await p.client.read(target)).estimatedTokens === 0,
      'every message counted',
    );
    let stats = await deep();
    expect(stats).toMatchObject({
      messageCount: 5,
      evictedCount: 4,
      countedBy: { exact: 0, approximate: 5, estimated: 0 },
      approximateMessagesBy: { [MISTRAL]: 5 },
      approximateTokens: stats.tokenCount,
      approximateRecount: { tokens: stats.tokenCount, by: { [MISTRAL]: 5 } },
      consistent: true,
    });

    await p.client.waitFor(await p.client.write(target, turns(2, 'new')));
    stats = await deep();
    expect(stats).toMatchObject({
      exact: false,
      countedBy: { approximate: 0 },
      approximateTokens: 0,
      approximatedBy: [],
      consistent: true,
    });
    await eventually(
      async () => (await p.client.read(target)).estimatedTokens === 0,
      'the written messages counted',
    );
    expect(await deep()).toMatchObject({
      countedBy: { exact: 0, approximate: 2, estimated: 0 },
      approximateMessagesBy: { [MISTRAL]: 2 },
      consistent: true,
    });

    await p.client.waitFor(await p.client.clear(target, { confirm: true }));
    expect(await deep()).toMatchObject({
      exact: true,
      countedBy: { exact: 0, approximate: 0, estimated: 0 },
      approximateTokens: 0,
      approximatedBy: [],
      approximateMessagesBy: {},
      consistent: true,
    });

    await appendCounted(p, target, turns(1, 'after clear'));
    expect(await deep()).toMatchObject({
      countedBy: { approximate: 1 },
      approximateMessagesBy: { [MISTRAL]: 1 },
      consistent: true,
    });
    await p.client.waitFor(await p.client.delete(target));
    expect(await deep()).toMatchObject({ exists: false, approximateTokens: 0, consistent: true });
    await appendCounted(p, target, turns(1, 'after delete'));
    expect(await deep()).toMatchObject({
      countedBy: { exact: 0, approximate: 1, estimated: 0 },
      approximateMessagesBy: { [MISTRAL]: 1 },
      consistent: true,
    });
  });
});

describe('approximate counts in the store on real Redis', () => {
  const ref: MemoryRef = { project: 'p1', resource: 'claude-memory', key: 'c:9' };
  let ns: RedisNamespace;
  let store: MemoryStore;
  beforeEach(() => {
    ns = createRedisNamespace();
    store = createMemoryStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
  });
  afterEach(async () => {
    await ns.cleanup();
  });

  const messages = (n: number): Message[] =>
    Array.from({ length: n }, (_, i) => ({
      id: nextId(),
      role: 'user' as const,
      content: `message ${i}`,
      created_at: new Date().toISOString(),
    }));
  const summaryThrough = (id: string, tokens: number): Summary => ({
    content: 'The customer asked about a parcel.',
    tokens,
    covers_through_id: id,
    message_count_covered: 1,
    updated_at: new Date().toISOString(),
  });

  it('reads a mix of exact and approximate counts, and an approximate summary, as not exact', async () => {
    const batch = messages(3);
    await store.append(ref, batch, 3600);
    await store.commitTokens(
      ref,
      [
        { id: batch[0]!.id, tokens: 10 }, // the provider's API answered
        { id: batch[1]!.id, tokens: 12, approximatedBy: CLAUDE },
        { id: batch[2]!.id, tokens: 14, approximatedBy: CLAUDE },
      ],
      3600,
    );
    let window = await store.read(ref);
    expect(window).toMatchObject({
      exact: false,
      tokenCount: 36,
      countedBy: { exact: 1, approximate: 2, estimated: 0 },
      approximateTokens: 26,
      approximatedBy: [CLAUDE],
    });
    expect(window.messages.map((m) => m.approximatedBy)).toEqual([undefined, CLAUDE, CLAUDE]);

    // A flush folds the exact message and one approximate one into a summary counted locally.
    await ns.redis.set(memoryKeys(ns.keyPrefix, ref).lock, 'flush-token');
    const SUMMARY = 'o200k_base (approximation for claude-haiku-4-5)';
    await store.applyFlush(
      ref,
      {
        lockToken: 'flush-token',
        epoch: window.epoch,
        foldedIds: [batch[0]!.id, batch[1]!.id],
        evictedIds: [],
        summary: summaryThrough(batch[1]!.id, 5),
        summaryApproximatedBy: SUMMARY,
      },
      3600,
    );
    window = await store.read(ref);
    expect(window).toMatchObject({
      exact: false,
      tokenCount: 19,
      countedBy: { exact: 0, approximate: 1, estimated: 0 },
      approximateTokens: 19,
      approximatedBy: [CLAUDE, SUMMARY].sort(),
      summaryApproximatedBy: SUMMARY,
    });
    expect(await store.stats(ref, { deep: true })).toMatchObject({
      approximateMessagesBy: { [CLAUDE]: 1 },
      summaryApproximatedBy: SUMMARY,
      consistent: true,
    });

    // The last approximate message goes and the next summary is exact: the memory is exact.
    await store.applyFlush(
      ref,
      {
        lockToken: 'flush-token',
        epoch: window.epoch,
        foldedIds: [batch[2]!.id],
        evictedIds: [],
        summary: summaryThrough(batch[2]!.id, 6),
      },
      3600,
    );
    window = await store.read(ref);
    expect(window).toMatchObject({
      exact: true,
      tokenCount: 6,
      countedBy: { exact: 0, approximate: 0, estimated: 0 },
      approximateTokens: 0,
      approximatedBy: [],
    });
    expect(window.summaryApproximatedBy).toBeUndefined();
    const meta = await ns.redis.hgetall(memoryKeys(ns.keyPrefix, ref).meta);
    expect(meta.approximated_by).toBeUndefined();
    expect(meta.approximate_tokens).toBe('0');
    expect((await store.stats(ref, { deep: true })).consistent).toBe(true);
  });

  it('estimates an appended 1 MB image by the image rule until it is counted', async () => {
    const [message] = messages(1);
    const withImage: Message = {
      ...message!,
      content: [
        { type: 'text', text: 'see attached' },
        {
          type: 'image_url',
          image_url: { url: dataUrl(png(1024, 1024, 2 ** 20)), detail: 'high' },
        },
      ],
    };
    await store.append(ref, [withImage], 3600);
    const window = await store.read(ref);
    expect(window.estimatedTokens).toBe(estimateTokens(withImage));
    // 3 + ceil((4 + 12) / 4) + 765 for the 1024 x 1024 image, not ~350,000 for its URL.
    expect(window.estimatedTokens).toBe(3 + 4 + 765);
  });

  it('refuses an empty approximation before writing anything', async () => {
    const batch = messages(1);
    await store.append(ref, batch, 3600);
    await expect(
      store.commitTokens(ref, [{ id: batch[0]!.id, tokens: 3, approximatedBy: '' }], 3600),
    ).rejects.toThrow(PayloadError);
    expect((await store.read(ref)).countedBy).toEqual({ exact: 0, approximate: 0, estimated: 1 });
  });

  it('reconcile repairs drifted approximate counters and orphaned marks', async () => {
    const batch = messages(3);
    await store.append(ref, batch, 3600);
    await store.commitTokens(
      ref,
      batch.map((m, i) => ({ id: m.id, tokens: 10 + i, approximatedBy: CLAUDE })),
      3600,
    );
    const maintenance = createMaintenanceStore({ redis: ns.redis, keyPrefix: ns.keyPrefix });
    expect((await maintenance.reconcile(ref)).changed).toBe(false);

    const k = memoryKeys(ns.keyPrefix, ref);
    await ns.redis.hincrby(k.meta, 'approximate_tokens', 5);
    await ns.redis.hset(k.meta, 'approximated_by', JSON.stringify({ [CLAUDE]: 2, other: 1 }));
    await ns.redis.hset(k.tok, `~${nextId()}`, CLAUDE); // a mark without a count
    expect((await store.stats(ref, { deep: true })).consistent).toBe(false);

    const result = await maintenance.reconcile(ref);
    expect(result).toMatchObject({
      changed: true,
      approximateMessages: { before: 3, after: 3 },
      approximateTokens: { before: 38, after: 33 },
      orphansRemoved: { tok: 1, unc: 0, msg: 0 },
    });
    expect(await store.stats(ref, { deep: true })).toMatchObject({
      approximateTokens: 33,
      approximateMessagesBy: { [CLAUDE]: 3 },
      consistent: true,
    });
    expect((await maintenance.reconcile(ref)).changed).toBe(false);
  });

  it('memq inspect shows the approximate tokens, how they were approximated, and marks them', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'memq-exactness-'));
    try {
      await writeFile(
        path.join(dir, 'mistral-memory.yaml'),
        resourceYaml('mistral-memory', '  provider: mistral\n  model: mistral-large-latest\n'),
      );
      const mistral = { ...ref, resource: 'mistral-memory' };
      const batch = messages(2);
      await store.append(mistral, batch, 3600);
      await store.commitTokens(
        mistral,
        [
          { id: batch[0]!.id, tokens: 10 },
          { id: batch[1]!.id, tokens: 12, approximatedBy: MISTRAL },
        ],
        3600,
      );
      const args = ['inspect', 'mistral-memory', ref.key, '--project', ref.project];
      const run = runMemq(ns, args, { MEMQ_MEMORIES_DIR: dir });
      expect(run.stderr).toBe('');
      expect(run.stdout).toContain(
        `messages 2, tokens 10 exact + 12 approximate (${MISTRAL}) + 0 estimated, uncounted 0`,
      );
      expect(run.stdout).toMatch(new RegExp(`${batch[1]!.id} user +≈12 message 1`));
      const json = JSON.parse(
        runMemq(ns, [...args, '--json'], { MEMQ_MEMORIES_DIR: dir }).stdout,
      ) as { counters: unknown; messages: Array<{ approximated_by?: string }> };
      expect(json.counters).toMatchObject({
        exact: false,
        counted_by: { exact: 1, approximate: 1, estimated: 0 },
        approximate_tokens: 12,
        approximated_by: [MISTRAL],
      });
      expect(json.messages[1]?.approximated_by).toBe(MISTRAL);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
