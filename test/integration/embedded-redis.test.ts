import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { answersPing, resolveDefaultRedis } from '../../src/runtime/embedded-redis.js';
import { freePort } from '../setup/redis-global-setup.js';

describe('embedded Redis default (REDIS_URL unset)', () => {
  it('starts a private redis-server on a free loopback port when nothing answers, says so, and stops it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'memq-embedded-'));
    const lines: string[] = [];
    try {
      const deadPort = await freePort();
      const { url, embedded } = await resolveDefaultRedis((l) => lines.push(l), {
        dataDir,
        defaultPort: deadPort,
      });
      expect(embedded).toBeDefined();
      const port = Number(new URL(url).port);
      expect(port).not.toBe(deadPort);
      expect(await answersPing('127.0.0.1', port)).toBe(true);
      expect(lines.join('\n')).toMatch(
        /started a private redis-server at redis:\/\/127\.0\.0\.1:\d+ \(data in /,
      );
      await embedded!.stop();
      expect(await answersPing('127.0.0.1', port)).toBe(false);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('uses a Redis that already answers on the default port', async () => {
    const lines: string[] = [];
    const { url, embedded } = await resolveDefaultRedis((l) => lines.push(l), {
      defaultPort: Number(new URL(inject('redisUrl')).port),
    });
    expect(embedded).toBeUndefined();
    expect(url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(lines).toEqual([]);
  });

  it('fails naming both fixes when no redis-server binary exists', async () => {
    const deadPort = await freePort();
    await expect(
      resolveDefaultRedis(() => {}, {
        defaultPort: deadPort,
        redisServerBin: 'memq-no-such-redis-server',
      }),
    ).rejects.toThrow(/install Redis >= 7.*docker compose up -d redis/);
  });
});
