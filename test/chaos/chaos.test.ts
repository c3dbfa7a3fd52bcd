/**
 * The chaos suite (`npm run test:chaos`): real e-mail threads replayed through memq
 * while worker processes are SIGKILLed, Redis crashes and restarts from its AOF, and Redis is
 * away for 10 s. After each, the independent audit must find every message the producer was told
 * was accepted stored exactly once, in order, counted exactly, with no personal data anywhere.
 *
 * Each scenario has its own `redis-server` (never the shared one) and its own `memq work`
 * processes; the producer (MemoryClient + replay) runs in this process, as a service would.
 */
import { QueueEvents } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { QUEUES } from '../../queues/names.js';
import { RedisUnavailableError } from '../../src/core/errors.js';
import { startMemqProcess } from '../helpers/cli.js';
import { startTestRedisServer, type TestRedisServer } from '../helpers/redis-server.js';
import {
  MEMORY,
  PRODUCER_CALL_BOUND_MS,
  PROJECT,
  QUEUE_PREFIX,
  between,
  expectNothingLost,
  sleep,
  startReplayScenario,
  workerEnv,
  type ReplayScenario,
} from './scenario.js';

/** One scenario on its own `redis-server`, which the test may crash and restart. */
interface Scenario extends ReplayScenario {
  readonly redis: TestRedisServer;
}

/** Counts of one BullMQ event on every memq queue, from QueueEvents listeners. */
interface QueueWatch {
  total(): number;
  /** `memory-append 3, memory-token-count 1, ...`. */
  describe(): string;
  close(): Promise<void>;
}

/** Listens for `event` (e.g. `stalled`: a job taken back from a dead worker) on every queue. */
async function watchQueues(redis: TestRedisServer, event: 'stalled'): Promise<QueueWatch> {
  const counts = new Map<string, number>();
  const listeners = Object.values(QUEUES).map((name) => {
    const events = new QueueEvents(name, {
      connection: { url: redis.url },
      prefix: QUEUE_PREFIX,
    });
    events.on('error', () => undefined);
    events.on(event, () => counts.set(name, (counts.get(name) ?? 0) + 1));
    return events;
  });
  await Promise.all(listeners.map((l) => l.waitUntilReady()));
  return {
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
    describe: () =>
      Object.values(QUEUES)
        .map((name) => `${name} ${counts.get(name) ?? 0}`)
        .join(', '),
    close: async () => {
      await Promise.all(listeners.map((l) => l.close()));
    },
  };
}

let current: Scenario | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

async function startScenario(
  persistence: 'aof-always' | 'aof-everysec',
  workerCount: number,
): Promise<Scenario> {
  const redis = await startTestRedisServer(persistence);
  const replay = await startReplayScenario(redis, { workers: workerCount });
  const scenario: Scenario = {
    ...replay,
    redis,
    async close() {
      await replay.close();
      await redis.destroy();
    },
  };
  current = scenario;
  return scenario;
}

describe('chaos: nothing the producer was told was accepted is lost', () => {
  it('survives 20 worker SIGKILLs at random moments during a replay', async () => {
    const limit = 3_500;
    const scenario = await startScenario('aof-always', 2);
    const stalls = await watchQueues(scenario.redis, 'stalled');
    let replayRunning = true;
    let kills = 0;
    const boots: Promise<void>[] = [];
    const replay = scenario.replay(limit, 120);
    const chaos = (async () => {
      await replay.started;
      await sleep(2_000);
      while (kills < 20 && replayRunning) {
        await sleep(between(400, 1_400));
        const alive = scenario.workers.filter((w) => w.alive());
        if (alive.length === 0) continue; // both crashed; their replacements are booting
        const victim = alive[Math.floor(Math.random() * alive.length)]!;
        await victim.kill();
        kills += 1;
        // A supervisor restarts the crashed worker; the others keep working meanwhile.
        boots.push(
          startMemqProcess('work', workerEnv(scenario.redis)).then((w) => {
            scenario.workers.push(w);
          }),
        );
      }
    })();
    const report = await replay.done.finally(() => (replayRunning = false));
    const killsDuringReplay = kills;
    await chaos;
    await Promise.all(boots);
    await stalls.close();
    console.info(
      `chaos 20 worker SIGKILLs: jobs taken back from killed workers ${stalls.describe()}`,
    );
    expect(killsDuringReplay).toBe(20);
    expect(stalls.total()).toBeGreaterThan(0); // kills did land in the middle of jobs
    const audit = await scenario.audit(limit);
    expectNothingLost('20 worker SIGKILLs', report, audit, limit);
    expect(await scenario.failedJobs()).toBe(0); // no dead letters in any queue
  }, 300_000);

  it.each(['aof-always', 'aof-everysec'] as const)(
    'survives 3 Redis crashes (SIGKILL, restart from the AOF, %s) during a replay; workers resume on their own',
    async (persistence) => {
      const limit = 1_500;
      const scenario = await startScenario(persistence, 2);
      const pids = scenario.workers.map((w) => w.pid);
      let restarts = 0;
      const replay = scenario.replay(limit, 50);
      const chaos = (async () => {
        await replay.started;
        while (restarts < 3) {
          await sleep(between(4_000, 7_000));
          await scenario.redis.halt('SIGKILL');
          await sleep(between(100, 1_000));
          await scenario.redis.start();
          restarts += 1;
        }
      })();
      const report = await replay.done;
      await chaos;
      expect(restarts).toBe(3);
      const audit = await scenario.audit(limit);
      expectNothingLost(`3 Redis crashes, ${persistence}`, report, audit, limit);
      expect(await scenario.failedJobs()).toBe(0); // no dead letters in any queue
      expect(report.unavailableRetries).toBeGreaterThan(0); // the producer did see the crashes
      // The same worker processes did all of it: none exited, none was restarted.
      expect(scenario.workers.map((w) => w.pid)).toEqual(pids);
      expect(scenario.workers.every((w) => w.alive())).toBe(true);
    },
    300_000,
  );

  it('rides out 10 s without Redis: producers and HTTP get a prompt clear error, workers resume', async () => {
    const limit = 1_500;
    const scenario = await startScenario('aof-always', 1);
    const serve = await startMemqProcess(
      'serve',
      workerEnv(scenario.redis, {
        PORT: '0',
        MEMQ_API_KEYS: `chaos-test-key-0123456789:${PROJECT}`,
        MEMQ_BOARD_PASSWORD: 'chaos-board-password',
      }),
    );
    try {
      const outage: { direct?: unknown; directMs?: number; status?: number; httpMs?: number } = {};
      const replay = scenario.replay(limit, 50);
      const chaos = (async () => {
        await replay.started;
        await sleep(5_000);
        await scenario.redis.halt('SIGKILL');
        const outageStarted = Date.now();
        await sleep(1_000);
        let started = Date.now();
        try {
          await scenario.client.append({ resource: MEMORY, key: 'outage:probe' }, [
            { role: 'user', content: 'sent while Redis is away' },
          ]);
        } catch (error) {
          outage.direct = error;
        }
        outage.directMs = Date.now() - started;
        started = Date.now();
        const response = await fetch(`${serve.base}/v1/memories/${MEMORY}/outage:probe/messages`, {
          method: 'POST',
          headers: {
            Authorization: 'Bearer chaos-test-key-0123456789',
            'Content-Type': 'application/json',
          },
          body: JSON.stringify({ messages: [{ role: 'user', content: 'over HTTP, Redis away' }] }),
        });
        outage.status = response.status;
        outage.httpMs = Date.now() - started;
        await sleep(Math.max(0, 10_000 - (Date.now() - outageStarted)));
        await scenario.redis.start();
      })();
      const report = await replay.done;
      await chaos;
      expect(outage.direct).toBeInstanceOf(RedisUnavailableError);
      expect(outage.directMs).toBeLessThan(PRODUCER_CALL_BOUND_MS);
      expect(outage.status).toBe(503);
      expect(outage.httpMs).toBeLessThan(PRODUCER_CALL_BOUND_MS);
      const audit = await scenario.audit(limit);
      expectNothingLost('10 s outage', report, audit, limit);
      expect(await scenario.failedJobs()).toBe(0); // no dead letters in any queue
      expect(report.unavailableRetries).toBeGreaterThan(0);
      expect(scenario.workers[0]!.alive()).toBe(true); // resumed without a restart
      // The HTTP server also recovers without a restart.
      const ready = await fetch(`${serve.base}/readyz`);
      expect(ready.status).toBe(200);
    } finally {
      await serve.kill();
    }
  }, 300_000);
});
