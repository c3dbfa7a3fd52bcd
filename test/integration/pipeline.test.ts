import { Queue } from 'bullmq';
import { beforeEach, describe, expect, it } from 'vitest';
import type { MemoryRegistry } from '../../src/config/load-memories.js';
import { createTokenCounter, encodingForModel } from '../../src/tokens/counter.js';
import { QUEUES } from '../../queues/names.js';
import { eventually, usePipelinePerTest, type TestPipeline } from '../helpers/pipeline.js';
import type { RedisNamespace } from '../helpers/redis-namespace.js';

describe('append and token-count pipeline on real Redis', () => {
  const context = usePipelinePerTest();
  let ns: RedisNamespace;
  let registry: MemoryRegistry;
  let pipeline: TestPipeline;
  beforeEach(() => {
    ({ ns, registry, pipeline } = context());
  });

  const target = { resource: 'agent-memory', key: 'agent:7' };

  it('commits appended messages once, in order, with exact token counts', async () => {
    const receipts = [];
    for (let i = 0; i < 12; i++) {
      receipts.push(
        await pipeline.client.append(target, [
          { role: i % 2 ? 'assistant' : 'user', content: `turn ${i}: <|endoftext|> ünïcödé 🚀` },
        ]),
      );
    }
    for (const r of receipts)
      expect(await pipeline.client.waitFor(r.jobId!)).toEqual({ added: 1, duplicates: 0 });
    await eventually(async () => (await pipeline.client.read(target)).exact, 'exact token counts');

    const window = await pipeline.client.read(target, { limit: 100 });
    expect(window.messages.map((m) => m.message.id)).toEqual(receipts.map((r) => r.messageIds[0]));
    expect(window.messages.map((m) => m.message.content)).toEqual(
      receipts.map((_, i) => `turn ${i}: <|endoftext|> ünïcödé 🚀`),
    );
    const counter = await createTokenCounter(
      encodingForModel(registry.get('agent-memory').tokenProvider.model),
    );
    const expected = window.messages.map((m) => counter.countMessage(m.message));
    expect(window.messages.map((m) => m.tokens)).toEqual(expected);
    expect(window.tokenCount).toBe(expected.reduce((a, b) => a + b, 0));
    expect(window.estimatedTokens).toBe(0);
  });

  it('stores a resubmitted message once', async () => {
    const first = await pipeline.client.append(target, [{ role: 'user', content: 'only once' }]);
    await pipeline.client.waitFor(first.jobId!);
    const id = first.messageIds[0]!;
    // A producer retry of the same message id (e.g. after a timeout it could not interpret).
    const again = await pipeline.client.append(target, [
      { id, role: 'user', content: 'only once' },
    ]);
    expect(again.jobId).not.toBe(first.jobId);
    expect(await pipeline.client.waitFor(again.jobId!)).toEqual({ added: 0, duplicates: 1 });
    expect((await pipeline.client.read(target)).total).toBe(1);
  });

  it('redacts and drops per the privacy policy before anything is enqueued or stored', async () => {
    const support = { resource: 'customer-support', key: 'support:1' };
    const receipt = await pipeline.client.append(support, [
      { role: 'system', content: 'internal prompt' },
      { role: 'user', content: 'mail me at jane.doe@example.com or call +1 415-555-0199' },
    ]);
    expect(receipt.dropped).toBe(1);
    expect(receipt.redactions).toBe(2);
    await pipeline.client.waitFor(receipt.jobId!);
    const stored = (await pipeline.client.read(support)).messages.map((m) => m.message.content);
    expect(stored).toEqual(['mail me at [REDACTED] or call [REDACTED]']);
    const raw = await ns.allText();
    expect(raw).toContain('mail me at [REDACTED] or call [REDACTED]');
    expect(raw).not.toContain('jane.doe@example.com');
    expect(raw).not.toContain('415-555-0199');
    expect(raw).not.toContain('internal prompt');
  });

  it('fails an invalid job without retries or writes, and keeps the worker running', async () => {
    const queue = new Queue(QUEUES.append, { connection: ns.redis, prefix: ns.queuePrefix });
    try {
      const bad = await queue.add(
        'append',
        {
          ref: { project: 'test', resource: 'agent-memory', key: 'agent:7' },
          messages: [{ id: 'not-a-ulid', role: 'robot', content: 'x', created_at: 'yesterday' }],
        },
        { attempts: 5 },
      );
      await eventually(async () => (await bad.getState()) === 'failed', 'the invalid job to fail');
      const failed = await queue.getJob(bad.id!);
      expect(failed!.attemptsMade).toBe(1);
      expect(failed!.failedReason).toContain('invalid payload');
      expect(failed!.failedReason).toContain('messages.0.id');
      expect(failed!.failedReason).toContain('messages.0.role');
      expect((await pipeline.client.read(target)).total).toBe(0);

      const unknown = await queue.add(
        'append',
        {
          ref: { project: 'test', resource: 'no-such-memory', key: 'k' },
          messages: [
            {
              id: '01JC0000000000000000000000',
              role: 'user',
              content: 'x',
              created_at: new Date().toISOString(),
            },
          ],
        },
        { attempts: 5 },
      );
      await eventually(
        async () => (await unknown.getState()) === 'failed',
        'the unknown-resource job to fail',
      );
      const unknownFailed = await queue.getJob(unknown.id!);
      expect(unknownFailed!.attemptsMade).toBe(1);
      expect(unknownFailed!.failedReason).toContain('MEMORY_NOT_FOUND');

      const good = await pipeline.client.append(target, [{ role: 'user', content: 'still alive' }]);
      expect(await pipeline.client.waitFor(good.jobId!)).toEqual({ added: 1, duplicates: 0 });
    } finally {
      await queue.close();
    }
  });

  it("resolves the key from the resource's default_key_template and the caller's context", async () => {
    const receipt = await pipeline.client.append(
      { resource: 'customer-support', context: { conversation_id: 'c-77' } },
      [{ role: 'user', content: 'hi' }],
    );
    expect(receipt.ref).toEqual({
      project: 'test',
      resource: 'customer-support',
      key: 'support:c-77',
    });
    await pipeline.client.waitFor(receipt.jobId!);
    expect(
      (await pipeline.client.read({ resource: 'customer-support', key: 'support:c-77' })).total,
    ).toBe(1);
    await expect(
      pipeline.client.append({ resource: 'customer-support', context: {} }, [
        { role: 'user', content: 'hi' },
      ]),
    ).rejects.toThrow(
      /default_key_template "support:\{\{ \.conversation_id \}\}": \.conversation_id is missing from the context/,
    );
  });

  it('refuses a key that carries data the privacy policy redacts', async () => {
    await expect(
      pipeline.client.append(
        { resource: 'customer-support', key: 'support:jane.doe@example.com' },
        [{ role: 'user', content: 'hi' }],
      ),
    ).rejects.toThrow(
      /key: contains text that memory "customer-support"'s privacy policy redacts \(privacy_policy\.redact_patterns\[0\]\)/,
    );
    expect(await ns.allText()).not.toContain('jane.doe@example.com');
  });

  it('rejects invalid input at the client with a clear error and enqueues nothing', async () => {
    await expect(pipeline.client.append(target, [])).rejects.toThrow(
      /messages: .*at least 1|expected array to have >=1/i,
    );
    await expect(
      pipeline.client.append({ resource: 'agent-memory', key: '__bad' }, [
        { role: 'user', content: 'x' },
      ]),
    ).rejects.toThrow(/key: expected 1-256 characters/);
    await expect(
      pipeline.client.append({ resource: 'nope', key: 'k' }, [{ role: 'user', content: 'x' }]),
    ).rejects.toThrow(/memory resource "nope" is not declared/);
    await expect(
      pipeline.client.append(target, [{ role: 'user', content: 'x', extra: 1 } as never]),
    ).rejects.toThrow(/messages: 0: Unrecognized key/i);
    const queue = new Queue(QUEUES.append, { connection: ns.redis, prefix: ns.queuePrefix });
    const counts = await queue.getJobCounts();
    await queue.close();
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
  });
});
