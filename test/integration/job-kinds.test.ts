import { beforeEach, describe, expect, it } from 'vitest';
import type { FlushJobResult } from '../../processors/flush.js';
import { eventually, usePipelinePerTest, type TestPipeline } from '../helpers/pipeline.js';

const turns = (n: number, prefix = 'turn') =>
  Array.from({ length: n }, (_, i) => ({
    role: i % 2 === 0 ? ('user' as const) : ('assistant' as const),
    content: `${prefix} ${i}`,
  }));

describe('every job kind through producer -> worker -> store', () => {
  const context = usePipelinePerTest();
  let pipeline: TestPipeline;
  beforeEach(() => {
    ({ pipeline } = context());
  });

  const chat = { resource: 'chat-buffer', key: 'chat:s1' };

  it('flushes automatically past the trigger, down to the target, oldest first', async () => {
    // chat-buffer: max_messages 50, threshold 0.8 (40 messages), target 0.5 (25 messages).
    const receipt = await pipeline.client.append(chat, turns(45));
    await pipeline.client.waitFor(receipt.jobId!);
    await eventually(
      async () => (await pipeline.client.read(chat)).total === 25,
      'the automatic flush',
    );
    const window = await pipeline.client.read(chat, { limit: 100 });
    expect(window.messages.map((m) => m.message.content)).toEqual(
      turns(45)
        .slice(20)
        .map((m) => m.content),
    );
    const stats = await pipeline.client.stats(chat, { deep: true });
    expect(stats).toMatchObject({
      messageCount: 25,
      acceptedCount: 45,
      evictedCount: 20,
      consistent: true,
    });
  });

  it('plans a dry-run flush without changing anything', async () => {
    const key = { resource: 'chat-buffer', key: 'chat:dry' };
    // 35 messages: under the automatic trigger (40), over the target (25).
    await pipeline.client.write(key, turns(35)).then((r) => pipeline.client.waitFor(r));
    const before = await pipeline.client.read(key, { limit: 100 });
    const result = await pipeline.client.waitFor<FlushJobResult>(
      await pipeline.client.flush(key, { dryRun: true }),
    );
    expect(result.applied).toBe(false);
    expect(result.plan.evictedIds).toEqual(before.messages.slice(0, 10).map((m) => m.message.id));
    expect(result.plan.after.messages).toBe(25);
    const after = await pipeline.client.read(key, { limit: 100 });
    expect(after.messages.map((m) => m.message)).toEqual(before.messages.map((m) => m.message));
  });

  it('fails a flush with an unknown strategy once, with a clear reason', async () => {
    const receipt = await pipeline.client.flush(chat, { strategy: 'newest_first' as never });
    await expect(pipeline.client.waitFor(receipt)).rejects.toThrow(
      /memory-flush job .*: invalid payload.*strategy/s,
    );
  });

  it('replaces the log with write and counts its tokens', async () => {
    const agent = { resource: 'agent-memory', key: 'agent:a:1' };
    await pipeline.client
      .append(agent, turns(3, 'old'))
      .then((r) => pipeline.client.waitFor(r.jobId!));
    const receipt = await pipeline.client.write(agent, turns(2, 'new'));
    expect(await pipeline.client.waitFor(receipt)).toMatchObject({ messageCount: 2 });
    await eventually(
      async () => (await pipeline.client.read(agent)).exact,
      'exact tokens after the write',
    );
    const window = await pipeline.client.read(agent);
    expect(window.messages.map((m) => m.message.content)).toEqual(['new 0', 'new 1']);
    expect(window.tokenCount).toBeGreaterThan(0);
  });

  it('clears only with confirm: true, and deletes', async () => {
    const agent = { resource: 'agent-memory', key: 'agent:b:1' };
    await pipeline.client.append(agent, turns(4)).then((r) => pipeline.client.waitFor(r.jobId!));
    await expect(pipeline.client.clear(agent, {} as { confirm: true })).rejects.toThrow(
      'clear: pass { confirm: true }',
    );
    expect((await pipeline.client.read(agent)).total).toBe(4);
    expect(
      await pipeline.client.waitFor(await pipeline.client.clear(agent, { confirm: true })),
    ).toMatchObject({ removed: 4 });
    expect(await pipeline.client.stats(agent)).toMatchObject({
      exists: true,
      messageCount: 0,
      tokenCount: 0,
      consistent: true,
    });
    await pipeline.client
      .append(agent, turns(2, 'again'))
      .then((r) => pipeline.client.waitFor(r.jobId!));
    expect(await pipeline.client.waitFor(await pipeline.client.delete(agent))).toMatchObject({
      removed: 2,
    });
    expect((await pipeline.client.stats(agent)).exists).toBe(false);
  });
});
