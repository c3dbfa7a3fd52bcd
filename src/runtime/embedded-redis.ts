import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { ensurePrivateDir, ensureSecret, writeSecretFile } from './state-files.js';

/** Where memq looks for Redis when REDIS_URL is unset. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** A Redis that memq started for itself. */
export interface EmbeddedRedis {
  /** `redis://:<password>@127.0.0.1:<port>` (a secret: never print it). */
  readonly url: string;
  /** Stops the server (SHUTDOWN via SIGTERM, waits for exit). Idempotent. */
  stop(): Promise<void>;
}

/** True if something at `host:port` answers a Redis PING within `timeoutMs`. */
export function answersPing(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolvePing) => {
    const socket = net.connect(port, host);
    const done = (ok: boolean) => {
      socket.destroy();
      resolvePing(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(/^(\+PONG|-NOAUTH)/.test(data.toString())));
    socket.once('error', () => done(false));
  });
}

/** A free TCP port on the loopback interface (bind to port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolvePort(port));
    });
  });
}

/** Options of {@link resolveDefaultRedis}; the defaults are what `memq start` uses. */
export interface EmbeddedRedisOptions {
  /**
   * Where a private server's password (`redis-password`) and configuration (`redis.conf`) are
   * kept, mode 0600 in a 0700 directory. Default `.memq` in the cwd, or `dataDir` when only that
   * is given (a throwaway server keeps everything in one place).
   */
  readonly stateDir?: string;
  /** Data directory of a private server (AOF lives here), made 0700. Default `<stateDir>/redis`. */
  readonly dataDir?: string;
  /** The server binary. Default `redis-server` (looked up on PATH). */
  readonly redisServerBin?: string;
  /** Loopback port probed first. Default 6379. */
  readonly defaultPort?: number;
}

/**
 * The `redis.conf` of a private server: loopback only, AOF (`appendfsync everysec`), no RDB
 * snapshots, no eviction, and `requirepass` (in the file rather than argv, where `ps` would show
 * it). Values are double-quoted with escapes, as redis-server's config parser reads them.
 */
function privateRedisConfig(port: number, dataDir: string, password: string): string {
  const quote = (value: string) => JSON.stringify(value);
  return [
    `port ${port}`,
    'bind 127.0.0.1',
    `dir ${quote(dataDir)}`,
    'appendonly yes',
    'appendfsync everysec',
    'save ""',
    'maxmemory-policy noeviction',
    `requirepass ${quote(password)}`,
    '',
  ].join('\n');
}

/**
 * The embedded default: if `redis://127.0.0.1:6379` answers, use it; otherwise,
 * if a `redis-server` binary is on PATH, start a private one on a free loopback port with data
 * (AOF, `appendfsync everysec`) under `<dataDir>`, behind a password memq generates once and keeps
 * in `<stateDir>/redis-password` (0600; the directories 0700); otherwise throw.
 * @param say Called with one human line when a private server is started (never the password).
 * @returns The URL to connect with (with the password, for a private server) and that server.
 * @throws ConfigError naming both fixes (install Redis, or `docker compose up`); ConfigError when
 *   the state directory cannot be made private or the server does not start within 10 s.
 */
export async function resolveDefaultRedis(
  say: (line: string) => void,
  options: EmbeddedRedisOptions = {},
): Promise<{ url: string; embedded?: EmbeddedRedis }> {
  const stateDir = path.resolve(options.stateDir ?? options.dataDir ?? '.memq');
  const dataDir = path.resolve(options.dataDir ?? path.join(stateDir, 'redis'));
  const bin = options.redisServerBin ?? 'redis-server';
  const defaultPort = options.defaultPort ?? 6379;
  if (await answersPing('127.0.0.1', defaultPort))
    return { url: `redis://127.0.0.1:${defaultPort}` };
  const probe = spawnSync(bin, ['--version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) {
    throw new ConfigError(
      `REDIS_URL is unset and nothing answers at redis://127.0.0.1:${defaultPort}, and no ${bin} binary is on PATH. Fix: install Redis >= 7 (e.g. apt-get install redis-server) and run npm start again, or start one with \`docker compose up -d redis\`, or set REDIS_URL.`,
    );
  }
  await ensurePrivateDir(stateDir);
  await ensurePrivateDir(dataDir);
  const passwordFile = path.join(stateDir, 'redis-password');
  const { value: password } = await ensureSecret(passwordFile, () =>
    randomBytes(24).toString('base64url'),
  );
  const port = await freePort();
  const configFile = path.join(stateDir, 'redis.conf');
  await writeSecretFile(configFile, privateRedisConfig(port, dataDir, password));
  const child = spawn(bin, [configFile], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (!(await answersPing('127.0.0.1', port, 200))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new ConfigError(
        `the private redis-server (port ${port}, configuration ${configFile}, data ${dataDir}) did not start within 10 s`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const shown = `redis://127.0.0.1:${port}`;
  const url = `redis://:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  say(
    `REDIS_URL is unset and nothing answers at redis://127.0.0.1:${defaultPort}: started a private redis-server at ${shown} (password in ${passwordFile}, data in ${dataDir}); it stops when memq exits.`,
  );
  let stopping: Promise<void> | undefined;
  return {
    url,
    embedded: {
      url,
      stop() {
        stopping ??= new Promise<void>((done) => {
          if (child.exitCode !== null) return done();
          child.once('exit', () => done());
          child.kill('SIGTERM');
        });
        return stopping;
      },
    },
  };
}
