/** `memq list` (src/cli/list-command.ts) as a child process on real Redis. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMemq } from '../helpers/cli.js';
import { shippedMemories } from '../helpers/memories.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const RESOURCE = 'chat-buffer';
const KEYS = ['list:1', 'list:2', 'list:3'];

describe('memq list', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  const memq = (...args: string[]) => runMemq(ns, args);

  beforeAll(async () => {
    ns = createRedisNamespace();
    pipeline = await startPipeline(ns, await shippedMemories());
    for (const key of KEYS) {
      const target = { resource: RESOURCE, key };
      const receipt = await pipeline.client.append(target, [
        { role: 'user', content: `hello from ${key}` },
        { role: 'assistant', content: 'hi' },
      ]);
      await pipeline.client.waitFor(receipt.jobId!);
      await eventually(
        async () => (await pipeline.client.stats(target)).uncountedMessages === 0,
        'exact counts',
      );
    }
  });
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it("lists a project's instances with messages, tokens and last activity", () => {
    const run = memq('list', RESOURCE, '--project', 'test');
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain(`3 instances of test/${RESOURCE}`);
    for (const key of KEYS) {
      expect(run.stdout).toMatch(
        new RegExp(`${key}\\s+2\\s+\\d+\\s+\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z`),
      );
    }
    const json = memq('list', RESOURCE, '--project', 'test', '--json');
    expect(json.status, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as {
      items: { key: string; message_count: number; exact: boolean }[];
      next_cursor: string | null;
    };
    expect(report.items.map((i) => i.key).sort()).toEqual(KEYS);
    expect(report.items.every((i) => i.message_count === 2 && i.exact)).toBe(true);
    expect(report.next_cursor).toBeNull();
  });

  it('stops at --limit and goes on from the printed --cursor', () => {
    const first = memq('list', RESOURCE, '--project', 'test', '--limit', '2', '--json');
    const page = JSON.parse(first.stdout) as { items: { key: string }[]; next_cursor: string };
    expect(page.items).toHaveLength(2);
    expect(page.next_cursor).toEqual(expect.any(String));
    const text = memq('list', RESOURCE, '--project', 'test', '--limit', '2');
    expect(text.stdout).toContain('(more)');
    expect(text.stdout).toContain('more: memq list');
    const rest = memq(
      'list',
      RESOURCE,
      '--project',
      'test',
      '--cursor',
      page.next_cursor,
      '--json',
    );
    const last = JSON.parse(rest.stdout) as { items: { key: string }[]; next_cursor: null };
    expect([...page.items, ...last.items].map((i) => i.key).sort()).toEqual(KEYS);
    expect(last.next_cursor).toBeNull();
  });

  it('shows another project none, and explains usage errors with exit code 2', () => {
    const other = memq('list', RESOURCE, '--project', 'someone-else');
    expect(other.status, other.stderr).toBe(0);
    expect(other.stdout).toContain(`0 instances of someone-else/${RESOURCE}`);
    const missing = memq('list');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('list: expected <resource>');
    const badLimit = memq('list', RESOURCE, '--limit', '0');
    expect(badLimit.status).toBe(2);
    expect(badLimit.stderr).toContain('--limit');
    const badProject = memq('list', RESOURCE, '--project', 'a b');
    expect(badProject.status).toBe(2);
    const unknown = memq('list', 'undeclared');
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('undeclared');
    expect(memq('list', '--help').stdout).toContain('usage: memq list');
  });
});
