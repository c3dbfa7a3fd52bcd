import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { answersPing, freePort } from '../../src/runtime/embedded-redis.js';

/** How a test Redis persists: no persistence, or AOF with one of Redis's fsync policies. */
export type Persistence = 'none' | 'aof-always' | 'aof-everysec';

/** A private `redis-server` a test may kill and restart (same port, same data directory). */
export interface TestRedisServer {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Its data directory (the AOF lives here). */
  readonly dir: string;
  /** True while the server process runs. */
  running(): boolean;
  /**
   * Stops the server: `SIGKILL` is a crash (no final AOF fsync, no shutdown); `SIGTERM` is a
   * clean shutdown (Redis fsyncs the AOF before exiting). Resolves once it has exited.
   */
  halt(signal: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** Starts it again on the same port and directory and waits until it answers PING. */
  start(): Promise<void>;
  /** Stops it (if running) and removes its directory. */
  destroy(): Promise<void>;
}

/**
 * Spawns `redis-server` (`REDIS_SERVER_BIN` if set) on a free loopback port with `persistence`
 * and waits until it answers PING (a server loading its AOF answers `LOADING`, not PONG, so this
 * also waits for the load). `extraArgs` are appended to its command line (e.g. `--replicaof
 * 127.0.0.1 6380`); default none.
 * @throws Error naming the fix when the binary cannot be spawned, or when it exits or does not
 *   answer within 20 s.
 */
export async function startTestRedisServer(
  persistence: Persistence = 'none',
  extraArgs: readonly string[] = [],
): Promise<TestRedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'memq-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--maxmemory-policy',
    'noeviction',
    ...(persistence === 'none'
      ? ['--appendonly', 'no']
      : [
          '--appendonly',
          'yes',
          '--appendfsync',
          persistence === 'aof-always' ? 'always' : 'everysec',
        ]),
    ...extraArgs,
  ];
  let child: ChildProcess | undefined;
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const server: TestRedisServer = {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    running,
    async halt(signal) {
      if (!child || !running()) return;
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill(signal);
      await exited;
    },
    async start() {
      if (running()) return;
      const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
      let spawnError: Error | undefined;
      child = spawn(bin, args, { stdio: 'ignore' });
      child.once('error', (error) => (spawnError = error));
      const deadline = Date.now() + 20_000;
      while (!(await answersPing('127.0.0.1', port))) {
        if (spawnError) {
          throw new Error(
            `tests need Redis: set REDIS_URL, or run a container runtime for Testcontainers, or install redis-server (apt-get install redis-server). Spawning ${bin} failed: ${spawnError.message}`,
          );
        }
        if (!running()) throw new Error(`redis-server on port ${port} exited while starting`);
        if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async destroy() {
      await server.halt('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
