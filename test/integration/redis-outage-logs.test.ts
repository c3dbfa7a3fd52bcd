/**
 * What an operator reads while Redis is away (docs/operations.md, "Logs while Redis is down"):
 * `memq start` on a private `redis-server` that is killed for 8 s and restarted on the same port.
 * The log must say once that Redis is unreachable and once that it is back -- not one line per
 * queue, connection and reconnect attempt, and no "Unhandled error event" from a connection
 * without an error listener -- and the process must serve again without a restart.
 */
import { describe, expect, it } from 'vitest';
import { startMemqProcess } from '../helpers/cli.js';
import { startTestRedisServer } from '../helpers/redis-server.js';

const API_KEY = 'outage-log-key-0123456789';
/** How long Redis stays away: several reconnect attempts of every connection, under the 30 s reminder. */
const AWAY_MS = 8_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 200 ms until it is true or `ms` passed; whether it became true. */
async function eventually(check: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(200);
  }
  return check();
}

/** Lines of `text` containing `fragment`. */
const linesWith = (text: string, fragment: string) =>
  text.split('\n').filter((line) => line.includes(fragment));

describe('Redis outage in the logs', () => {
  it('memq start logs one "unreachable" and one "reachable again" line for an 8 s outage, and serves again', async () => {
    const redis = await startTestRedisServer();
    const memq = await startMemqProcess('start', {
      ...process.env,
      REDIS_URL: redis.url,
      MEMQ_KEY_PREFIX: 'memqol:',
      MEMQ_QUEUE_PREFIX: '{memqol}',
      MEMQ_LOG_LEVEL: 'warn',
      MEMQ_SHUTDOWN_GRACE_MS: '5000',
      PORT: '0',
      MEMQ_API_KEYS: `${API_KEY}:outage`,
      MEMQ_BOARD_PASSWORD: 'outage-board-password',
    });
    try {
      const base = memq.base!;
      const appendOne = (content: string) =>
        fetch(`${base}/v1/memories/customer-support/outage-1/messages?wait=true`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ messages: [{ role: 'user', content }] }),
        });
      expect((await appendOne('before')).status).toBe(200);

      await redis.halt('SIGKILL');
      await sleep(AWAY_MS);
      const during = memq.stderr();
      await redis.start();

      const ready = await eventually(
        async () => (await fetch(`${base}/readyz`)).status === 200,
        30_000,
      );
      expect(ready).toBe(true);
      expect(await eventually(() => memq.stderr().includes('Redis reachable again'), 15_000)).toBe(
        true,
      );
      expect((await appendOne('after')).status).toBe(200);

      const stderr = memq.stderr();
      expect(linesWith(stderr, 'Unhandled error event')).toEqual([]);
      const unreachable = linesWith(stderr, '"msg":"Redis unreachable');
      expect(unreachable).toHaveLength(1);
      const record = JSON.parse(unreachable[0]!) as Record<string, unknown>;
      expect(record).toMatchObject({ target: `127.0.0.1:${redis.port}` });
      expect(['ECONNREFUSED', 'ECONNRESET']).toContain(record.code);
      expect(linesWith(stderr, 'Redis still unreachable')).toEqual([]); // no reminder within 30 s
      expect(linesWith(stderr, 'Redis reachable again')).toHaveLength(1);
      // Nothing else per connection or per worker while Redis was away.
      expect(linesWith(during, 'ECONNREFUSED')).toHaveLength(
        linesWith(unreachable[0]!, 'ECONNREFUSED').length,
      );
      expect(linesWith(stderr, '"worker error"')).toEqual([]);
    } finally {
      if (memq.alive()) await memq.stop();
      await redis.destroy();
    }
  }, 90_000);
});
