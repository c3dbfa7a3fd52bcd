/**
 * The outage reporter's lines (src/redis/redis-outage.ts): one when an outage starts, reminders
 * at most every `reminderMs`, one when every failing connection is back. No Redis: connections
 * are plain objects, the clock is the test's. The target names are read off clients that never
 * connect; duplicate tracking uses the shared Redis (connect and quit only).
 */
import { Cluster, Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import {
  closeRedis,
  createRedis,
  duplicateConnection,
  redisClientOptions,
} from '../../../src/redis/connection.js';
import {
  createRedisOutageReporter,
  OUTAGE_REMINDER_MS,
  targetOf,
  trackedDuplicates,
} from '../../../src/redis/redis-outage.js';

/** A reporter over a recording log and a clock the test moves. */
function reporterWithClock() {
  const lines: Array<{ msg: string; fields: Record<string, unknown> }> = [];
  let now = 1_000_000;
  const reporter = createRedisOutageReporter({
    log: {
      warn: ((fields: Record<string, unknown>, msg: string) =>
        lines.push({ msg, fields })) as never,
    },
    now: () => now,
  });
  return {
    reporter,
    lines,
    advance: (ms: number) => (now += ms),
    messages: () => lines.map((line) => line.msg),
  };
}

const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });

describe('createRedisOutageReporter', () => {
  it('six connections failing every 2 s for 65 s: one line, two reminders, one line when all are back', () => {
    const { reporter, lines, advance, messages } = reporterWithClock();
    const connections = Array.from({ length: 6 }, () => ({}));
    for (let t = 0; t <= 65_000; t += 2_000) {
      for (const connection of connections) reporter.error(connection, '127.0.0.1:6379', refused());
      advance(2_000);
    }
    expect(reporter.down).toBe(true);
    for (const connection of connections.slice(0, 5)) reporter.ready(connection);
    expect(reporter.down).toBe(true); // one connection still failing
    reporter.ready(connections[5]!);
    expect(reporter.down).toBe(false);
    expect(messages()).toEqual([
      'Redis unreachable; reconnecting',
      'Redis still unreachable; reconnecting',
      'Redis still unreachable; reconnecting',
      'Redis reachable again',
    ]);
    expect(lines[0]!.fields).toEqual({
      target: '127.0.0.1:6379',
      code: 'ECONNREFUSED',
      err: 'connect ECONNREFUSED 127.0.0.1:6379',
    });
    expect(lines[1]!.fields).toMatchObject({ down_ms: 30_000, errors: 6 * 15 + 1 });
    expect(lines[3]!.fields).toMatchObject({ down_ms: 66_000, errors: 6 * 33 });
    expect(OUTAGE_REMINDER_MS).toBe(30_000);
  });

  it('a connection closed while failing does not end the outage by itself; the next ready does', () => {
    const { reporter, advance, messages } = reporterWithClock();
    const [a, b] = [{}, {}];
    reporter.error(a, 'h:1', refused());
    reporter.error(b, 'h:1', refused());
    reporter.end(a);
    expect(reporter.down).toBe(true);
    advance(1_000);
    reporter.ready(b);
    expect(messages()).toEqual(['Redis unreachable; reconnecting', 'Redis reachable again']);
    // A later outage is a new one.
    reporter.error(b, 'h:1', refused());
    expect(messages()).toHaveLength(3);
  });
});

describe('targetOf', () => {
  /** A client of `options` (createRedis's ioredis options) that never connects. */
  const lazy = (options: Parameters<typeof redisClientOptions>[0]) => {
    const built = redisClientOptions(options);
    if (built.kind === 'cluster')
      return new Cluster([...built.nodes], { ...built.options, lazyConnect: true });
    return new Redis(built.url, { ...built.options, lazyConnect: true });
  };

  it('names the sentinels and the group of a Sentinel connection, not the unused URL host, and no credentials', () => {
    const client = lazy({
      url: 'redis://app:s3cret@127.0.0.1:6379',
      role: 'worker',
      sentinel: { nodes: ['10.0.0.1:26379', '[::1]:26380'], name: 'memq-primary' },
    });
    expect(targetOf(client)).toBe('sentinel memq-primary (10.0.0.1:26379,[::1]:26380)');
  });

  it('names host:port of one server and the seed nodes of a cluster, without credentials', () => {
    expect(targetOf(lazy({ url: 'redis://app:s3cret@cache:6380', role: 'producer' }))).toBe(
      'cache:6380',
    );
    expect(
      targetOf(
        lazy({
          url: 'redis://app:s3cret@ignored:6379',
          role: 'worker',
          clusterNodes: ['10.0.0.1:7000', '10.0.0.2:7001'],
        }),
      ),
    ).toBe('cluster 10.0.0.1:7000,10.0.0.2:7001');
  });
});

describe('watchConnection duplicates', () => {
  it('a duplicate that ended is no longer tracked', async () => {
    // No server needed: connections to a closed port, ended by a hard disconnect.
    const client = createRedis({ url: 'redis://127.0.0.1:1', role: 'producer' });
    try {
      const copy = duplicateConnection(client, {});
      const other = duplicateConnection(client, {});
      expect(trackedDuplicates(client)).toBe(2);
      await closeRedis(copy);
      await vi.waitFor(() => expect(copy.status).toBe('end'));
      expect(trackedDuplicates(client)).toBe(1);
      await closeRedis(other);
      await vi.waitFor(() => expect(other.status).toBe('end'));
      expect(trackedDuplicates(client)).toBe(0);
    } finally {
      await closeRedis(client);
    }
  });
});
