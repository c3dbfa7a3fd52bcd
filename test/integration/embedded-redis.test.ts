import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import { closeRedis, createRedis } from '../../src/redis/connection.js';
import { answersPing, resolveDefaultRedis } from '../../src/runtime/embedded-redis.js';
import { freePort } from '../setup/redis-global-setup.js';

/** Permission bits of `file` as octal text, e.g. `600`. */
const modeOf = (file: string) => (statSync(file).mode & 0o777).toString(8);

describe('embedded Redis default (REDIS_URL unset)', () => {
  it('starts a private redis-server on a free loopback port when nothing answers, says so, and stops it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'memq-embedded-'));
    const lines: string[] = [];
    let stop: (() => Promise<void>) | undefined;
    try {
      const deadPort = await freePort();
      const { url, embedded } = await resolveDefaultRedis((l) => lines.push(l), {
        dataDir,
        defaultPort: deadPort,
      });
      stop = embedded ? () => embedded.stop() : undefined;
      expect(embedded).toBeDefined();
      const port = Number(new URL(url).port);
      expect(port).not.toBe(deadPort);
      expect(await answersPing('127.0.0.1', port)).toBe(true);
      expect(lines.join('\n')).toMatch(
        /started a private redis-server at redis:\/\/127\.0\.0\.1:\d+ \(password in .*, data in /,
      );
      await embedded!.stop();
      expect(await answersPing('127.0.0.1', port)).toBe(false);
    } finally {
      await stop?.();
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

  it('protects a private server with a password: NOAUTH without it, 0600 files in a 0700 .memq, password in a config file', async () => {
    const root = mkdtempSync(join(tmpdir(), 'memq-embedded-auth-'));
    const stateDir = join(root, '.memq');
    // A state directory left world-readable by an older memq is tightened too.
    mkdirSync(stateDir, { mode: 0o755 });
    chmodSync(stateDir, 0o755);
    const lines: string[] = [];
    const { url, embedded } = await resolveDefaultRedis((l) => lines.push(l), {
      stateDir,
      defaultPort: await freePort(),
    });
    const port = Number(new URL(url).port);
    const anonymous = new Redis({
      host: '127.0.0.1',
      port,
      protocol: 2,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
    });
    anonymous.on('error', () => undefined);
    // How memq start connects (runtime.ts): the URL carries the password.
    const authorised = createRedis({ url, role: 'producer' });
    try {
      await expect(anonymous.set('memq-probe', 'x')).rejects.toThrow(/NOAUTH/);
      expect(await authorised.ping()).toBe('PONG');

      const password = readFileSync(join(stateDir, 'redis-password'), 'utf8').trim();
      expect(password.length).toBeGreaterThanOrEqual(32);
      expect(modeOf(stateDir)).toBe('700');
      expect(modeOf(join(stateDir, 'redis'))).toBe('700');
      expect(modeOf(join(stateDir, 'redis-password'))).toBe('600');
      expect(modeOf(join(stateDir, 'redis.conf'))).toBe('600');
      // The password reaches redis-server through its 0600 configuration file, not argv.
      expect(readFileSync(join(stateDir, 'redis.conf'), 'utf8')).toContain(
        `requirepass "${password}"`,
      );
      // memq's own line names the file, never the password.
      expect(lines.join('\n')).toContain(`password in ${join(stateDir, 'redis-password')}`);
      expect(lines.join('\n')).not.toContain(password);

      // The next start reuses the password (the AOF data behind it stays reachable).
      await closeRedis(authorised);
      await embedded!.stop();
      const again = await resolveDefaultRedis(() => {}, {
        stateDir,
        defaultPort: await freePort(),
      });
      try {
        expect(new URL(again.url).password).toBe(encodeURIComponent(password));
      } finally {
        await again.embedded!.stop();
      }
    } finally {
      anonymous.disconnect();
      await closeRedis(authorised);
      await embedded!.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
