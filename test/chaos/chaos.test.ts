/**
 * The chaos suite (`npm run test:chaos`): real e-mail threads replayed through memq
 * while worker processes are SIGKILLed, Redis crashes and restarts from its AOF, and Redis is
 * away for 10 s. After each, the independent audit must find every message the producer was told
 * was accepted stored exactly once, in order, counted exactly, with no personal data anywhere.
 *
 * Each scenario has its own `redis-server` (never the shared one) and its own `memq work`
 * processes; the producer (MemoryClient + replay) runs in this process, as a service would.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { QUEUES } from '../../queues/names.js';
import { createMemoryClient, type MemoryClient } from '../../queues/memory-client.js';
import { loadMemoryResources, type MemoryRegistry } from '../../src/config/load-memories.js';
import { RedisUnavailableError } from '../../src/core/errors.js';
import { closeRedis, createRedis } from '../../src/redis/connection.js';
import { runAudit, type AuditReport } from '../../src/replay/replay-audit.js';
import { runReplay, type ReplayReport } from '../../src/replay/replay.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { startMemqProcess, type MemqProcess } from '../helpers/cli.js';
import { quietLog } from '../helpers/pipeline.js';
import { startTestRedisServer, type TestRedisServer } from '../helpers/redis-server.js';

const KEY_PREFIX = 'memqx:';
const QUEUE_PREFIX = '{memqx}';
const PROJECT = 'chaos';
const MEMORY = 'customer-support';
/** The longest a producer call may take: the client's Redis deadline (5 s) plus scheduling slack. */
const PRODUCER_CALL_BOUND_MS = 6_500;

/**
 * The shipped customer-support resource with `flush_ttl: 20s` instead of 5m: a worker killed
 * while it holds an instance lock blocks that memory's flushes until the lock's TTL passes (the
 * next flush waits, spending no attempt), and 5 minutes would outlast the replay's wait.
 */
const memoriesDir = mkdtempSync(join(tmpdir(), 'memq-chaos-memories-'));
writeFileSync(
  join(memoriesDir, 'customer-support.yaml'),
  readFileSync('memories/customer-support.yaml', 'utf8').replace(/flush_ttl: 5m/, 'flush_ttl: 20s'),
);
afterAll(() => rmSync(memoriesDir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const between = (low: number, high: number) => low + Math.random() * (high - low);

/** Environment of the scenario's `memq work` / `memq serve` processes. */
function workerEnv(redis: TestRedisServer, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_URL: redis.url,
    MEMQ_KEY_PREFIX: KEY_PREFIX,
    MEMQ_QUEUE_PREFIX: QUEUE_PREFIX,
    MEMQ_LOG_LEVEL: 'error',
    // A killed worker's jobs return to waiting within about 2 x 5 s instead of 2 x 30 s.
    MEMQ_JOB_LOCK_MS: '5000',
    MEMQ_SHUTDOWN_GRACE_MS: '5000',
    MEMQ_APPEND_CONCURRENCY: '8',
    // The sweep re-enqueues the token count of a memory left uncounted (a token-count job lost to
    // a SIGKILL): every 20 s here, well inside the replay's 90 s without counting progress.
    MEMQ_MAINTENANCE_INTERVAL_MS: '20000',
    MEMQ_MEMORIES_DIR: memoriesDir,
    ...extra,
  };
}

/** One scenario's Redis, worker processes and in-process producer. */
interface Scenario {
  readonly redis: TestRedisServer;
  readonly registry: MemoryRegistry;
  readonly client: MemoryClient;
  readonly workers: MemqProcess[];
  /**
   * Replays `limit` messages at `rate` per second (producer retries Redis-unavailable errors).
   * `started` resolves once the corpus is parsed and the first message is handed to the client:
   * faults are injected from then on (parsing takes 3-20 s, depending on the machine's day).
   */
  replay(limit: number, rate: number): { started: Promise<void>; done: Promise<ReplayReport> };
  /** The independent audit of the same slice. */
  audit(limit: number): Promise<AuditReport>;
  /** Failed (dead-letter) jobs of every memq queue. */
  failedJobs(): Promise<number>;
  close(): Promise<void>;
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
  const registry = await loadMemoryResources(memoriesDir, process.env);
  const producer = createRedis({ url: redis.url, role: 'producer' });
  producer.on('error', () => undefined); // outages are the point; the client reports them
  const store = createMemoryStore({ redis: producer, keyPrefix: KEY_PREFIX });
  const client = createMemoryClient({
    connection: producer,
    queuePrefix: QUEUE_PREFIX,
    registry,
    project: PROJECT,
    store,
    backpressure: { highWaterMessages: 2_000, lowWaterMessages: 1_000, policy: 'reject' },
  });
  const workers = await Promise.all(
    Array.from({ length: workerCount }, () => startMemqProcess('work', workerEnv(redis))),
  );
  const scenario: Scenario = {
    redis,
    registry,
    client,
    workers,
    replay: (limit, rate) => {
      let onStarted = () => {};
      const started = new Promise<void>((resolve) => (onStarted = resolve));
      const done = runReplay(
        {
          client,
          store,
          connection: producer,
          queuePrefix: QUEUE_PREFIX,
          project: PROJECT,
          log: quietLog,
        },
        {
          memory: MEMORY,
          limit,
          ratePerSecond: rate,
          retryUnavailableMs: 250,
          stallTimeoutMs: 90_000,
          onProgress: (progress) => {
            if (progress.enqueued > 0) onStarted();
          },
        },
      );
      // A replay that fails before its first append must not leave the chaos loop waiting.
      void done.finally(onStarted).catch(() => undefined);
      return { started, done };
    },
    audit: (limit) =>
      runAudit(
        { redis: producer, keyPrefix: KEY_PREFIX, queuePrefix: QUEUE_PREFIX, registry, env: {} },
        { memory: MEMORY, project: PROJECT, limit },
      ),
    async failedJobs() {
      let failed = 0;
      for (const name of Object.values(QUEUES)) {
        const queue = new Queue(name, { connection: producer, prefix: QUEUE_PREFIX });
        const jobs = await queue.getFailed(0, -1);
        failed += jobs.length;
        // A failure says which job failed and why (reasons carry ids, never content).
        for (const job of jobs) {
          console.info(`failed ${name} ${job.name} ${job.id}: ${job.failedReason}`);
        }
        await queue.close();
      }
      return failed;
    },
    async close() {
      await Promise.all(workers.filter((w) => w.alive()).map((w) => w.kill()));
      await client.close();
      await closeRedis(producer);
      await redis.destroy();
    },
  };
  current = scenario;
  return scenario;
}

/**
 * Every message the producer was told was accepted is stored as the audit expects. Prints the
 * scenario's figures (docs/reliability.md quotes them).
 */
function expectNothingLost(
  scenario: string,
  report: ReplayReport,
  audit: AuditReport,
  limit: number,
): void {
  console.info(
    `chaos ${scenario}: ${report.messagesEnqueued} messages in ${report.elapsedSeconds.toFixed(1)} s, ` +
      `${report.unavailableRetries} Redis-unavailable retries, longest append call ${report.appendCallMaxMs} ms, ` +
      `p99 enqueue->committed ${report.latencyMs.p99} ms (per append), ` +
      `${report.failedJobs} failed jobs (${report.failedAppends} appends not committed), ` +
      `audit ${audit.messages} messages / ${audit.violations.length} violations`,
  );
  expect(report.enqueueErrors).toBe(0); // every message was eventually accepted
  expect(report.failedJobs).toBe(0);
  expect(report.failedAppends).toBe(0); // appends sharing a job are accounted one by one
  // Each append answered once, per append even when appends share a job (an append retried
  // after Redis was unavailable may find its first attempt stored: a duplicate).
  expect(report.messagesAccepted + report.duplicates).toBe(limit);
  expect(report.messagesStored + report.messagesFolded).toBe(limit);
  expect(audit.messages).toBe(limit);
  expect(audit.violations).toEqual([]);
  expect(report.appendCallMaxMs).toBeLessThan(PRODUCER_CALL_BOUND_MS); // an error, never a hang
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
