/**
 * Shutdown while Redis is gone (docs/operations.md, "Shutdown"): `memq start` and `memq work`
 * on a private `redis-server` that is killed after some traffic; once every connection has
 * reached ioredis's longest reconnect delay, the first SIGTERM must end the process within
 * `MEMQ_SHUTDOWN_GRACE_MS` (plus a margin for process teardown), with `/readyz` answering 503
 * "draining" and `/healthz` 200 during the drain, and no "Unhandled error event" line.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startMemqProcess, type MemqProcess } from '../helpers/cli.js';
import { startTestRedisServer, type TestRedisServer } from '../helpers/redis-server.js';

const API_KEY = 'shutdown-test-key-0123456789';
const GRACE_MS = 5_000;
/** Process teardown and the signal's delivery on a busy 2-core machine. */
const MARGIN_MS = 3_000;
/**
 * ioredis 6's default reconnect delay (`retryStrategy`, ioredis/built/redis/RedisOptions.js):
 * `min(2^(attempt-1) * 50, 5000)` ms plus up to 200 ms of jitter; memq sets no strategy of its
 * own, and BullMQ's duplicates of memq's connections inherit it. The ceiling is reached after
 * about 6.4 s of attempts (50 + 100 + ... + 3 200 ms).
 */
const RECONNECT_CEILING_MS = 5_200;
/** How long Redis stays away before the SIGTERM: every connection at the ceiling, and then some. */
const AWAY_MS = 6_400 + RECONNECT_CEILING_MS + 2_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The environment of a `memq` process on `redis`, with the test's deadline and credentials. */
function memqEnv(redis: TestRedisServer): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_URL: redis.url,
    MEMQ_KEY_PREFIX: 'memqsd:',
    MEMQ_QUEUE_PREFIX: '{memqsd}',
    MEMQ_LOG_LEVEL: 'warn',
    MEMQ_SHUTDOWN_GRACE_MS: String(GRACE_MS),
    PORT: '0',
    MEMQ_API_KEYS: `${API_KEY}:shutdown`,
    MEMQ_BOARD_PASSWORD: 'shutdown-board-password',
  };
}

/** What a probe answered: its status and, for `/readyz`, the body's `status`. */
interface ProbeAnswer {
  readonly path: string;
  readonly status: number;
  readonly body?: string;
}

/** Polls `/readyz` and `/healthz` every 100 ms until `done` resolves; what answered. */
async function probeUntil(base: string, done: Promise<unknown>): Promise<ProbeAnswer[]> {
  const answers: ProbeAnswer[] = [];
  let over = false;
  void done.finally(() => (over = true));
  while (!over) {
    for (const path of ['/readyz', '/healthz']) {
      try {
        const response = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(1_000) });
        const body = (await response.json()) as { status?: string };
        answers.push({
          path,
          status: response.status,
          ...(body.status ? { body: body.status } : {}),
        });
      } catch {
        // Refused, reset or timed out: the server has closed, or is closing.
      }
    }
    await sleep(100);
  }
  return answers;
}

/** Sends SIGTERM and measures how long the process takes to exit, ms, with its exit code. */
async function timedStop(memq: MemqProcess): Promise<{ ms: number; code: number | null }> {
  const started = Date.now();
  const code = await memq.stop();
  return { ms: Date.now() - started, code };
}

describe('shutdown while Redis is gone', () => {
  let redis: TestRedisServer | undefined;
  let memq: MemqProcess | undefined;
  afterEach(async () => {
    if (memq?.alive()) await memq.kill();
    memq = undefined;
    await redis?.destroy();
    redis = undefined;
  });

  it(`memq start exits within MEMQ_SHUTDOWN_GRACE_MS (${GRACE_MS} ms), /readyz 503 and /healthz 200 while it drains`, async () => {
    redis = await startTestRedisServer();
    memq = await startMemqProcess('start', memqEnv(redis));
    const base = memq.base!;
    const auth = { Authorization: `Bearer ${API_KEY}` };
    const url = `${base}/v1/memories/customer-support/shutdown-1/messages`;
    const append = await fetch(`${url}?wait=true`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'before the outage' }] }),
    });
    expect(append.status).toBe(200);
    const read = await fetch(url, { headers: auth });
    expect(read.status).toBe(200);
    expect(((await read.json()) as { messages: unknown[] }).messages).toHaveLength(1);

    await redis.halt('SIGKILL');
    await sleep(AWAY_MS);
    expect(memq.alive()).toBe(true);

    const stopping = timedStop(memq);
    const answers = await probeUntil(base, stopping);
    const { ms, code } = await stopping;
    console.log(
      `memq start, Redis away ${AWAY_MS} ms: exited ${ms} ms after SIGTERM (code ${code})`,
    );

    expect(ms).toBeLessThan(GRACE_MS + MARGIN_MS);
    // Work was abandoned at the deadline (the workers could not drain without Redis): exit 1.
    expect(code).toBe(1);
    const stderr = memq.stderr();
    expect(stderr).toContain(`SIGTERM: draining (deadline ${GRACE_MS} ms)`);
    expect(stderr).toMatch(/memq: shutdown incomplete after \d+ ms: abandoned workers/);
    expect(stderr).not.toContain('Unhandled error event');
    // The drain is observable over HTTP: not ready (503 "draining"), still alive (200).
    expect(answers).toContainEqual({ path: '/readyz', status: 503, body: 'draining' });
    expect(answers).toContainEqual({ path: '/healthz', status: 200, body: 'ok' });
  });

  it(`memq work exits within MEMQ_SHUTDOWN_GRACE_MS (${GRACE_MS} ms)`, async () => {
    redis = await startTestRedisServer();
    memq = await startMemqProcess('work', memqEnv(redis));
    await sleep(1_000); // the workers have taken the maintenance job and block on their queues
    await redis.halt('SIGKILL');
    await sleep(AWAY_MS);
    expect(memq.alive()).toBe(true);

    const { ms, code } = await timedStop(memq);
    console.log(
      `memq work, Redis away ${AWAY_MS} ms: exited ${ms} ms after SIGTERM (code ${code})`,
    );

    expect(ms).toBeLessThan(GRACE_MS + MARGIN_MS);
    expect(code).toBe(1);
    expect(memq.stderr()).not.toContain('Unhandled error event');
  });

  it('a second SIGTERM during the drain exits at once with 130', async () => {
    redis = await startTestRedisServer();
    memq = await startMemqProcess('work', memqEnv(redis));
    await redis.halt('SIGKILL');
    await sleep(2_000);
    const first = timedStop(memq);
    await sleep(300);
    const again = Date.now();
    process.kill(memq.pid, 'SIGTERM');
    const { code } = await first;
    const ms = Date.now() - again;
    console.log(`memq work, second SIGTERM: exited ${ms} ms after it (code ${code})`);
    expect(code).toBe(130);
    expect(ms).toBeLessThan(GRACE_MS / 2); // at once, not at the deadline
    expect(memq.stderr()).toContain(`SIGTERM: draining (deadline ${GRACE_MS} ms)`);
    expect(memq.stderr()).toContain('SIGTERM again: forcing exit');
  });

  it('with Redis up, memq start stops cleanly (exit 0) long before the deadline', async () => {
    redis = await startTestRedisServer();
    memq = await startMemqProcess('start', memqEnv(redis));
    const { ms, code } = await timedStop(memq);
    console.log(`memq start, Redis up: exited ${ms} ms after SIGTERM (code ${code})`);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(GRACE_MS);
    expect(memq.stderr()).toMatch(/memq: stopped cleanly in \d+ ms/);
  });
});
