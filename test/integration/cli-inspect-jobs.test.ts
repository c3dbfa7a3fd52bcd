import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOBS } from '../../queues/names.js';
import { runMemq } from '../helpers/cli.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

describe('memq inspect and memq jobs', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  const memq = (...args: string[]) => runMemq(ns, args);

  beforeAll(async () => {
    ns = createRedisNamespace();
    pipeline = await startPipeline(ns, await shippedMemories());
    const target = { resource: 'customer-support', key: 'cli:1' };
    const receipt = await pipeline.client.append(target, [
      { role: 'user', content: 'where is my parcel? mail me at x@example.org' },
      { role: 'assistant', content: 'it ships tomorrow' },
    ]);
    await pipeline.client.waitFor(receipt.jobId!);
    await eventually(
      async () => (await pipeline.client.stats(target)).uncountedMessages === 0,
      'exact counts',
    );
    // A job that fails permanently (an undeclared resource), for the failed list.
    await pipeline.workers.queues.append.add(JOBS.append, {
      ref: { project: 'test', resource: 'undeclared', key: 'cli:2' },
      messages: [
        {
          id: '01JC0000000000000000000009',
          role: 'user',
          content: 'x',
          created_at: new Date().toISOString(),
        },
      ],
    });
    await eventually(
      async () => (await pipeline.workers.queues.append.getFailedCount()) === 1,
      'the failing job',
    );
  });
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('inspect shows counters, TTL, lock and the newest messages as stored (redacted)', () => {
    const run = memq('inspect', 'customer-support', 'cli:1', '--project', 'test');
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('memory test/customer-support/cli:1');
    expect(run.stdout).toMatch(/messages 2, tokens \d+ exact \+ 0 estimated of 4000, uncounted 0/);
    expect(run.stdout).toContain(
      'accepted 2 = present 2 + folded 0 + evicted 0; counters consistent',
    );
    expect(run.stdout).toMatch(/ttl \d+ s/);
    expect(run.stdout).toContain('lock free');
    expect(run.stdout).toContain('where is my parcel? mail me at [REDACTED]');
    const json = memq('inspect', 'customer-support', 'cli:1', '--project', 'test', '--json');
    const report = JSON.parse(json.stdout) as { counters: { messages: number; roles: object } };
    expect(report.counters).toMatchObject({ messages: 2, roles: { user: 1, assistant: 1 } });
  });

  it('inspect explains usage errors with exit code 2', () => {
    const run = memq('inspect', 'customer-support');
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('inspect: expected <resource> <key>');
    expect(memq('inspect', '--help').stdout).toContain('usage: memq inspect');
  });

  it('jobs counts per queue and state, lists failed jobs with reasons, and retries them', () => {
    const run = memq('jobs');
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/memory-append\s+0\s+0\s+0\s+0\s+1\s+1/);
    expect(run.stdout).toContain('failed in memory-append (newest 1):');
    expect(run.stdout).toContain('memory resource "undeclared" is not declared');
    const retry = memq('jobs', '--queue', 'memory-append', '--retry', '--json');
    const report = JSON.parse(retry.stdout) as { queues: Array<{ retried: number }> };
    expect(report.queues[0]!.retried).toBe(1);
  });
});
