/**
 * The outage reporter's lines (src/redis/redis-outage.ts): one when an outage starts, reminders
 * at most every `reminderMs`, one when every failing connection is back. No Redis: connections
 * are plain objects, the clock is the test's.
 */
import { describe, expect, it } from 'vitest';
import { createRedisOutageReporter, OUTAGE_REMINDER_MS } from '../../../src/redis/redis-outage.js';

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
