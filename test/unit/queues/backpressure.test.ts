import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackpressureError } from '../../../src/core/errors.js';
import {
  createBackpressureGate,
  estimateRetryAfterMs,
  RETRY_AFTER_DEFAULT_MS,
  RETRY_AFTER_MAX_MS,
  RETRY_AFTER_MIN_MS,
  type BackpressureGate,
  type BackpressureGateOptions,
} from '../../../queues/backpressure.js';

/** A backlog the test sets by hand; counts its reads and can fail them or hold them pending. */
function fakeBacklog(initialMessages: number) {
  const state = {
    messages: initialMessages,
    calls: 0,
    failure: undefined as Error | undefined,
    hold: undefined as Promise<void> | undefined,
  };
  const countBacklog = async (): Promise<number> => {
    state.calls += 1;
    if (state.hold) await state.hold;
    if (state.failure) throw state.failure;
    return state.messages;
  };
  return { state, countBacklog };
}

/** The error `promise` rejects with (fails the test if it resolves). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.fail('expected a rejection'),
    (error: unknown) => error,
  );
}

const base = { queueName: 'memory-append', highWaterMessages: 100, lowWaterMessages: 50 } as const;

describe('backpressure gate', () => {
  let clockMs: number;
  let gates: BackpressureGate[];
  const gate = (options: Omit<BackpressureGateOptions, 'now'>): BackpressureGate => {
    const created = createBackpressureGate({ now: () => clockMs, ...options });
    gates.push(created);
    return created;
  };

  beforeEach(() => {
    clockMs = 1_000_000;
    gates = [];
  });
  afterEach(() => {
    for (const g of gates) g.close();
  });

  describe('backlog count cache', () => {
    it('shares one in-flight count among many concurrent admits', async () => {
      const backlog = fakeBacklog(10);
      let release!: () => void;
      backlog.state.hold = new Promise((resolve) => (release = resolve));
      const g = gate({ ...base, policy: 'reject', countBacklog: backlog.countBacklog });
      const admits = Array.from({ length: 50 }, () => g.admit());
      expect(backlog.state.calls).toBe(1);
      release();
      await Promise.all(admits);
      expect(backlog.state.calls).toBe(1);
    });

    it('reuses a count for less than cacheMs and counts again once it is cacheMs old', async () => {
      const backlog = fakeBacklog(10);
      const g = gate({ ...base, policy: 'reject', countBacklog: backlog.countBacklog });
      await g.admit();
      clockMs += 249;
      await Promise.all([g.admit(), g.admit(), g.backlog()]);
      expect(backlog.state.calls).toBe(1);
      clockMs += 1;
      await g.admit();
      expect(backlog.state.calls).toBe(2);
    });

    it('with cacheMs 0 counts on every sequential call but still shares concurrent ones', async () => {
      const backlog = fakeBacklog(10);
      const g = gate({ ...base, policy: 'reject', cacheMs: 0, countBacklog: backlog.countBacklog });
      await g.admit();
      await g.admit();
      expect(backlog.state.calls).toBe(2);
      await Promise.all([g.admit(), g.admit(), g.admit()]);
      expect(backlog.state.calls).toBe(3);
    });

    it('backlog() returns the count and shares the cache with admit()', async () => {
      const backlog = fakeBacklog(42);
      const g = gate({ ...base, policy: 'reject', countBacklog: backlog.countBacklog });
      expect(await g.backlog()).toBe(42);
      backlog.state.messages = 43;
      await g.admit();
      expect(await g.backlog()).toBe(42);
      expect(backlog.state.calls).toBe(1);
    });
  });

  describe('hysteresis under policy reject (high 100, low 50)', () => {
    it('admits below high, rejects from high until the backlog is back at low, then admits again', async () => {
      const backlog = fakeBacklog(0);
      const g = gate({ ...base, policy: 'reject', cacheMs: 0, countBacklog: backlog.countBacklog });
      const steps: [number, 'admitted' | 'rejected'][] = [
        [0, 'admitted'],
        [99, 'admitted'],
        [100, 'rejected'],
        [150, 'rejected'],
        [99, 'rejected'],
        [51, 'rejected'],
        [50, 'admitted'],
        [99, 'admitted'],
        [101, 'rejected'],
        [0, 'admitted'],
      ];
      const outcomes: [number, string][] = [];
      for (const [messages] of steps) {
        backlog.state.messages = messages;
        clockMs += 1000;
        const outcome = await g.admit().then(
          () => 'admitted',
          (error: unknown) => (error instanceof BackpressureError ? 'rejected' : String(error)),
        );
        outcomes.push([messages, outcome]);
      }
      expect(outcomes).toEqual(steps);
    });

    it('rejects with a retryable BackpressureError naming the queue, the bound in messages and the marks', async () => {
      const backlog = fakeBacklog(10_234);
      const g = gate({
        queueName: 'memory-append',
        highWaterMessages: 10_000,
        lowWaterMessages: 5_000,
        policy: 'reject',
        countBacklog: backlog.countBacklog,
      });
      const error = await rejectionOf(g.admit());
      expect(error).toBeInstanceOf(BackpressureError);
      expect(error).toMatchObject({
        code: 'BACKPRESSURE',
        retryable: true,
        retryAfterMs: 1000,
        message:
          'memory-append: backlog 10234 messages is at or above the high-water mark 10000 (MEMQ_BACKPRESSURE_HIGH_WATER); retry after 1000 ms',
        details: {
          queue: 'memory-append',
          bound: 'messages',
          usage: 10_234,
          limit: 10_000,
          low_water: 5_000,
        },
      });
    });

    it('names the queue the caller enqueues to when admit is given one', async () => {
      const backlog = fakeBacklog(100);
      const g = gate({ ...base, policy: 'reject', countBacklog: backlog.countBacklog });
      const error = await rejectionOf(g.admit(undefined, 'memory-cleanup'));
      expect(error).toMatchObject({
        details: { queue: 'memory-cleanup', bound: 'messages', usage: 100, limit: 100 },
      });
      expect((error as Error).message).toMatch(
        /^memory-cleanup: backlog 100 messages is at or above the high-water mark 100/,
      );
    });

    it('says the backlog has not drained to the low mark when rejecting between the marks', async () => {
      const backlog = fakeBacklog(120);
      const g = gate({ ...base, policy: 'reject', cacheMs: 0, countBacklog: backlog.countBacklog });
      await rejectionOf(g.admit());
      backlog.state.messages = 70;
      clockMs += 1000;
      const error = await rejectionOf(g.admit());
      // 50 messages drained in 1000 ms; 20 more to the low mark -> 400 ms.
      expect(error).toMatchObject({
        retryAfterMs: 400,
        message:
          'memory-append: backlog 70 messages has not drained to the low-water mark 50 (MEMQ_BACKPRESSURE_LOW_WATER) since reaching the high-water mark 100; retry after 400 ms',
      });
    });

    it('derives retryAfterMs from the drain rate between the last two counts', async () => {
      const backlog = fakeBacklog(200);
      const g = gate({ ...base, policy: 'reject', countBacklog: backlog.countBacklog });
      await rejectionOf(g.admit());
      backlog.state.messages = 150;
      clockMs += 1000;
      // 50 messages/s net drain, 100 messages above the low mark -> 2000 ms.
      expect(await rejectionOf(g.admit())).toMatchObject({ retryAfterMs: 2000 });
    });
  });

  describe('estimateRetryAfterMs', () => {
    const at = (backlogMessages: number, atMs: number) => ({ backlogMessages, atMs });
    it.each([
      ['no previous count', undefined, at(200, 0), 50, RETRY_AFTER_DEFAULT_MS],
      ['a growing backlog', at(100, 0), at(200, 1000), 50, RETRY_AFTER_DEFAULT_MS],
      ['a flat backlog', at(200, 0), at(200, 1000), 50, RETRY_AFTER_DEFAULT_MS],
      ['two counts at the same instant', at(300, 0), at(200, 0), 50, RETRY_AFTER_DEFAULT_MS],
      ['100 messages/s with 300 messages above low', at(450, 0), at(350, 1000), 50, 3000],
      [
        'a rate reaching low in 13 ms (floor)',
        at(2300, 0),
        at(1300, 100),
        1170,
        RETRY_AFTER_MIN_MS,
      ],
      [
        'a rate reaching low in 500 s (ceiling)',
        at(10_100, 0),
        at(10_000, 1000),
        0,
        RETRY_AFTER_MAX_MS,
      ],
      ['a backlog already at or below low', at(100, 0), at(20, 1000), 50, RETRY_AFTER_MIN_MS],
    ])(
      'gives the documented value for %s',
      (_case, previous, latest, lowWaterMessages, expected) => {
        expect(estimateRetryAfterMs(previous, latest, lowWaterMessages)).toBe(expected);
      },
    );
  });

  describe('policy wait', () => {
    beforeEach(() => {
      vi.useFakeTimers();
    });
    afterEach(() => {
      vi.useRealTimers();
    });
    const waitGate = (backlog: ReturnType<typeof fakeBacklog>, waitTimeoutMs = 30_000) => {
      const created = createBackpressureGate({
        ...base,
        policy: 'wait',
        cacheMs: 0,
        pollMs: 100,
        waitTimeoutMs,
        countBacklog: backlog.countBacklog,
      });
      gates.push(created);
      return created;
    };
    const track = (promise: Promise<void>) => {
      const result = { settled: false, error: undefined as unknown };
      promise.then(
        () => (result.settled = true),
        (error: unknown) => {
          result.settled = true;
          result.error = error;
        },
      );
      return result;
    };

    it('admits at once while the gate is open', async () => {
      const backlog = fakeBacklog(99);
      await waitGate(backlog).admit();
      expect(backlog.state.calls).toBe(1);
    });

    it('polls every pollMs and resolves once the backlog is back at the low mark', async () => {
      const backlog = fakeBacklog(200);
      const admitted = track(waitGate(backlog).admit());
      await vi.advanceTimersByTimeAsync(300);
      expect(admitted.settled).toBe(false);
      expect(backlog.state.calls).toBe(4);
      backlog.state.messages = 60;
      await vi.advanceTimersByTimeAsync(100);
      expect(admitted.settled).toBe(false);
      backlog.state.messages = 50;
      await vi.advanceTimersByTimeAsync(100);
      expect(admitted).toEqual({ settled: true, error: undefined });
    });

    it('throws BackpressureError when the backlog does not drain within waitTimeoutMs', async () => {
      const backlog = fakeBacklog(200);
      const admitted = track(waitGate(backlog, 1000).admit());
      await vi.advanceTimersByTimeAsync(999);
      expect(admitted.settled).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      expect(admitted.error).toBeInstanceOf(BackpressureError);
      expect(admitted.error).toMatchObject({
        retryAfterMs: RETRY_AFTER_DEFAULT_MS,
        message:
          'memory-append: backlog 200 messages did not drain to the low-water mark 50 within 1000 ms (high-water mark 100); retry after 1000 ms',
      });
      const callsAtTimeout = backlog.state.calls;
      await vi.advanceTimersByTimeAsync(1000);
      expect(backlog.state.calls).toBe(callsAtTimeout);
    });

    it('rejects with the abort reason and stops polling when the signal aborts', async () => {
      const backlog = fakeBacklog(200);
      const controller = new AbortController();
      const admitted = track(waitGate(backlog).admit(controller.signal));
      await vi.advanceTimersByTimeAsync(250);
      controller.abort();
      await vi.advanceTimersByTimeAsync(0);
      expect(admitted.error).toMatchObject({ name: 'AbortError' });
      const callsAtAbort = backlog.state.calls;
      await vi.advanceTimersByTimeAsync(1000);
      expect(backlog.state.calls).toBe(callsAtAbort);
    });

    it('rejects an already aborted signal without counting', async () => {
      const backlog = fakeBacklog(0);
      const controller = new AbortController();
      controller.abort(new Error('request gone'));
      expect(await rejectionOf(waitGate(backlog).admit(controller.signal))).toMatchObject({
        message: 'request gone',
      });
      expect(backlog.state.calls).toBe(0);
    });

    it('rejects pending waits when the gate is closed, and every later call', async () => {
      const backlog = fakeBacklog(200);
      const g = waitGate(backlog);
      const admitted = track(g.admit());
      await vi.advanceTimersByTimeAsync(150);
      g.close();
      g.close();
      await vi.advanceTimersByTimeAsync(0);
      expect(admitted.error).toMatchObject({
        message: 'memory-append backpressure gate closed while waiting',
      });
      await expect(g.admit()).rejects.toThrow('memory-append backpressure gate is closed');
      await expect(g.backlog()).rejects.toThrow('memory-append backpressure gate is closed');
    });

    it('propagates a count failure while waiting instead of waiting on', async () => {
      const backlog = fakeBacklog(200);
      const admitted = track(waitGate(backlog).admit());
      await vi.advanceTimersByTimeAsync(100);
      const failure = new Error('connect ECONNREFUSED 127.0.0.1:6379');
      backlog.state.failure = failure;
      await vi.advanceTimersByTimeAsync(100);
      expect(admitted.error).toBe(failure);
    });
  });

  describe('count failures', () => {
    it('rethrows the count error to every sharing caller and does not cache it', async () => {
      const backlog = fakeBacklog(10);
      const failure = new Error('connect ECONNREFUSED 127.0.0.1:6379');
      backlog.state.failure = failure;
      const g = gate({ ...base, policy: 'reject', countBacklog: backlog.countBacklog });
      const errors = await Promise.all([rejectionOf(g.admit()), rejectionOf(g.backlog())]);
      expect(errors).toEqual([failure, failure]);
      expect(backlog.state.calls).toBe(1);
      backlog.state.failure = undefined;
      await g.admit();
      expect(backlog.state.calls).toBe(2);
    });

    it('keeps pushing back after a failed count instead of reading the failure as open', async () => {
      const backlog = fakeBacklog(150);
      const g = gate({ ...base, policy: 'reject', cacheMs: 0, countBacklog: backlog.countBacklog });
      await rejectionOf(g.admit());
      backlog.state.failure = new Error('Connection is closed.');
      expect(await rejectionOf(g.admit())).toBe(backlog.state.failure);
      backlog.state.failure = undefined;
      backlog.state.messages = 80;
      expect(await rejectionOf(g.admit())).toBeInstanceOf(BackpressureError);
    });
  });

  describe('options', () => {
    it.each([
      [
        { highWaterMessages: 100, lowWaterMessages: 100 },
        /lowWaterMessages: expected a value below highWaterMessages \(100\), got 100/,
      ],
      [
        { highWaterMessages: 0, lowWaterMessages: 0 },
        /highWaterMessages: expected a number >= 1 \(messages\), got 0/,
      ],
      [
        { highWaterMessages: 100, lowWaterMessages: -1 },
        /lowWaterMessages: expected a number >= 0 \(messages\), got -1/,
      ],
      [
        { highWaterMessages: 100, lowWaterMessages: 50, cacheMs: Number.NaN },
        /cacheMs: expected a duration >= 0 \(ms\), got NaN/,
      ],
      [
        { highWaterMessages: 100, lowWaterMessages: 50, pollMs: 0 },
        /pollMs: expected a duration >= 1 \(ms\), got 0/,
      ],
    ])('rejects %o with a RangeError naming the option', (marks, message) => {
      expect(() =>
        createBackpressureGate({
          queueName: 'memory-append',
          policy: 'reject',
          countBacklog: () => Promise.resolve(0),
          ...marks,
        }),
      ).toThrow(message);
    });
  });
});
