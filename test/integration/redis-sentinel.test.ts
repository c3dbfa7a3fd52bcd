/**
 * memq through Redis Sentinel (`REDIS_SENTINELS`, `REDIS_SENTINEL_NAME`): local processes -- a
 * primary, its replicas and three sentinels (test/helpers/redis-sentinel.ts) -- never the shared
 * Redis. `memq start` finds the primary through the sentinels, and a running memq follows a
 * failover to the promoted replica on its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnvConfig } from '../../src/config/env.js';
import { RedisUnavailableError } from '../../src/core/errors.js';
import { closeRedis, createRedis } from '../../src/redis/connection.js';
import { startRuntime, type Runtime } from '../../src/runtime/runtime.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import { startMemqProcess } from '../helpers/cli.js';
import { shippedMemories } from '../helpers/memories.js';
import { quietLog } from '../helpers/pipeline.js';
import { startTestSentinels, type TestSentinels } from '../helpers/redis-sentinel.js';

const KEY = 'sentinel-test-key-0123456789';
const KEY_PREFIX = 'memqs:';
const QUEUE_PREFIX = '{memqs}';
const MEMORY = 'customer-support';

/** The messages of `key` as stored on the data node at `port` (read there directly). */
async function storedOn(port: number, project: string, key: string): Promise<string[]> {
  const redis = createRedis({ url: `redis://127.0.0.1:${port}`, role: 'producer' });
  try {
    const store = createMemoryStore({ redis, keyPrefix: KEY_PREFIX });
    const window = await store.read({ project, resource: MEMORY, key });
    return window.messages.map(({ message: { content } }) =>
      typeof content === 'string' ? content : JSON.stringify(content),
    );
  } finally {
    await closeRedis(redis);
  }
}

describe('memq through Redis Sentinel', () => {
  let deployment: TestSentinels;
  /** A memq process's environment on the deployment: its sentinels, the suite's prefixes, warn logs. */
  const sentinelEnv = (): NodeJS.ProcessEnv => ({
    ...process.env,
    REDIS_SENTINELS: deployment.sentinels.join(','),
    REDIS_SENTINEL_NAME: deployment.name,
    MEMQ_KEY_PREFIX: KEY_PREFIX,
    MEMQ_QUEUE_PREFIX: QUEUE_PREFIX,
    MEMQ_LOG_LEVEL: 'warn',
  });
  beforeAll(async () => {
    // Two replicas: after a failover one is left to replicate from the promoted one.
    deployment = await startTestSentinels({ replicas: 2 });
  }, 60_000);
  afterAll(async () => {
    await deployment?.stop();
  });

  it('memq start with REDIS_SENTINELS (no REDIS_URL) commits an append on the primary', async () => {
    const memq = await startMemqProcess('start', {
      ...sentinelEnv(),
      PORT: '0',
      MEMQ_API_KEYS: `${KEY}:sentinel`,
      MEMQ_BOARD_PASSWORD: 'sentinel-board-password',
    });
    try {
      const response = await fetch(`${memq.base!}/v1/memories/${MEMORY}/cli-1/messages?wait=true`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'through the sentinels' }] }),
      });
      expect(response.status).toBe(200);
      expect(((await response.json()) as { result: unknown }).result).toEqual({
        added: 1,
        duplicates: 0,
      });
      expect(await storedOn(await deployment.primaryPort(), 'sentinel', 'cli-1')).toEqual([
        'through the sentinels',
      ]);
    } finally {
      expect(await memq.stop()).toBe(0);
    }
  });

  it('follows a failover: after the primary is killed, appends commit on the promoted replica', async () => {
    const runtime: Runtime = await startRuntime({
      env: loadEnvConfig({
        MEMQ_KEY_PREFIX: KEY_PREFIX,
        MEMQ_QUEUE_PREFIX: QUEUE_PREFIX,
        MEMQ_PROJECT: 'failover',
        MEMQ_WAIT_REPLICAS: '1',
        MEMQ_MAINTENANCE_INTERVAL_MS: '3600000',
        MEMQ_SHUTDOWN_GRACE_MS: '5000',
      }),
      redisUrl: 'redis://127.0.0.1:6379', // only its (absent) credentials are used
      sentinel: { nodes: deployment.sentinels, name: deployment.name },
      registry: await shippedMemories(),
      log: quietLog,
      workers: true,
    });
    try {
      const target = { resource: MEMORY, key: 'ride' };
      const before = await runtime.client.append(target, [{ role: 'user', content: 'before' }]);
      await runtime.client.waitFor(before, { timeoutMs: 10_000 });
      const oldPrimary = await deployment.primaryPort();
      await deployment.nodes.find((node) => node.port === oldPrimary)!.halt('SIGKILL');
      const promoted = await deployment.waitForFailover(oldPrimary);
      expect(promoted).not.toBe(oldPrimary);
      // The producer answers 503 (RedisUnavailableError) until it reaches the promoted primary
      // and a replica confirms; a client retries.
      const deadline = Date.now() + 30_000;
      let unavailable = 0;
      for (;;) {
        try {
          // One message id for every retry: a 503 after the job was enqueued (too few replicas
          // confirmed it) leaves that job to commit, and the retry's copy is a duplicate. An id
          // later than the first message's, so it is stored after it.
          const after = await runtime.client.append(target, [
            { id: '06000000000000000000000AF7', role: 'user', content: 'after' },
          ]);
          await runtime.client.waitFor(after, { timeoutMs: 20_000 });
          break;
        } catch (error) {
          if (!(error instanceof RedisUnavailableError) || Date.now() > deadline) throw error;
          unavailable += 1;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      console.info(`sentinel failover: ${unavailable} Redis-unavailable retries after the kill`);
      // Acknowledged before the kill with a replica's confirmation: the promoted node has it.
      expect(await storedOn(promoted, 'failover', 'ride')).toEqual(['before', 'after']);
    } finally {
      await runtime.close();
    }
  }, 90_000);

  // Last: it leaves the deployment down.
  it('memq work with the sentinels and the data nodes down: one "Redis unreachable" line naming the sentinels, no "worker error"', async () => {
    const memq = await startMemqProcess('work', {
      ...sentinelEnv(),
      MEMQ_SHUTDOWN_GRACE_MS: '3000',
    });
    try {
      await deployment.haltSentinels();
      await Promise.all(deployment.nodes.map((node) => node.halt('SIGKILL')));
      // Several reconnect attempts of every connection, each asking every sentinel.
      await new Promise((r) => setTimeout(r, 5000));
      const lines = memq
        .stderr()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines.filter((line) => line.msg === 'worker error')).toEqual([]);
      const unreachable = lines.filter((line) => line.msg === 'Redis unreachable; reconnecting');
      expect(unreachable).toHaveLength(1);
      expect(unreachable[0]!.target).toBe(
        `sentinel ${deployment.name} (${deployment.sentinels.join(',')})`,
      );
      // Nothing but the outage reporter's lines while Redis is away (no reminder within 30 s).
      expect(lines.filter((line) => Number(line.level) >= 40).map((line) => line.msg)).toEqual([
        'Redis unreachable; reconnecting',
      ]);
    } finally {
      await memq.stop();
    }
  }, 60_000);
});
