import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { answersPing, freePort } from '../../src/runtime/embedded-redis.js';
import { startTestRedisServer, type TestRedisServer } from './redis-server.js';

/** The master group name the test sentinels watch (`REDIS_SENTINEL_NAME`). */
export const TEST_SENTINEL_NAME = 'memq-test';

/** Options of {@link startTestSentinels}. */
export interface TestSentinelOptions {
  /** Replicas of the primary (`replicaof`), 0-4; default 1. */
  readonly replicas?: number;
  /**
   * `sentinel down-after-milliseconds`: how long the primary must not answer before a sentinel
   * deems it down, ms; default 1000 (Redis's default is 30 000).
   */
  readonly downAfterMs?: number;
  /** `sentinel failover-timeout`, ms; default 3000 (Redis's default is 180 000). */
  readonly failoverTimeoutMs?: number;
}

/** A primary, its replicas and three sentinels (quorum 2), each a local process with its own dir. */
export interface TestSentinels {
  /** The data nodes: `nodes[0]` starts as the primary, the others as its replicas. */
  readonly nodes: readonly TestRedisServer[];
  /** The sentinels, `127.0.0.1:<port>` each (what `REDIS_SENTINELS` takes). */
  readonly sentinels: readonly string[];
  /** The master group name ({@link TEST_SENTINEL_NAME}). */
  readonly name: string;
  /** Port of the data node a sentinel names as primary now (`SENTINEL get-master-addr-by-name`). */
  primaryPort(): Promise<number>;
  /**
   * Waits until every sentinel names a primary other than `oldPort` and that node answers
   * `ROLE` as master; resolves with its port.
   * @throws Error when that does not happen within `timeoutMs` (default 30 000).
   */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  /**
   * Replication lag, as a network fault between the primary and its replicas would make it:
   * every other data node is made unable to resynchronize (its `masteruser` set to a user the
   * primary does not have, so its AUTH fails) and the primary at `primaryPort` closes its
   * replica links (`CLIENT KILL TYPE replica`); from then on the primary's writes are on it
   * alone. (A bare `CLIENT KILL` is not lag: a Redis 7 replica reconnects and resynchronizes in a
   * few milliseconds.) `release` lets the replicas resynchronize again (with whichever primary
   * they are pointed at then).
   * @returns The replica links closed, and `release`.
   */
  holdReplication(primaryPort: number): Promise<{ links: number; release(): Promise<void> }>;
  /**
   * Starts the stopped data node at `port` again (empty: no persistence) as a replica of the
   * primary at `primaryPort` (`REPLICAOF`, as a node brought back with `replicaof` in its
   * configuration would be) and waits until its link is up; Sentinel then lists it as a replica.
   * @throws Error when it does not sync within 20 s.
   */
  rejoin(port: number, primaryPort: number): Promise<void>;
  /** Kills every sentinel (SIGKILL) and waits until they have exited; they stay down. */
  haltSentinels(): Promise<void>;
  /** Stops the sentinels and every data node, and removes their directories. */
  stop(): Promise<void>;
}

/** Runs `command` on a short-lived connection to `127.0.0.1:port`. */
async function ask<T>(port: number, command: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await command(redis);
  } finally {
    redis.disconnect();
  }
}

/** Polls `check` every 100 ms until it resolves true; throws `what` after `timeoutMs`. */
async function until(what: string, timeoutMs: number, check: () => Promise<boolean>) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`redis-sentinel helper: ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts a primary (`redis-server`, no persistence), `replicas` replicas of it, waits until each
 * replica's link is up, then three sentinels (`redis-server <conf> --sentinel`, quorum 2, each
 * with its own directory and config file, which Sentinel rewrites) and waits until every sentinel
 * knows the replicas and the two other sentinels, so a failover can be authorized at once.
 * @throws Error naming the step that did not complete (what was started is stopped).
 */
export async function startTestSentinels(
  options: TestSentinelOptions = {},
): Promise<TestSentinels> {
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > 4) {
    throw new Error(`redis-sentinel helper: replicas: expected an integer 0-4, got ${replicas}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'memq-sentinel-'));
  const nodes: TestRedisServer[] = [];
  const processes: ChildProcess[] = [];
  const sentinels: string[] = [];
  /** Sends `signal` to every sentinel still running and waits until each has exited. */
  const haltSentinels = (signal: NodeJS.Signals) =>
    Promise.all(
      processes.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill(signal);
          }),
      ),
    );
  const stop = async () => {
    await haltSentinels('SIGTERM');
    await Promise.all(nodes.map((node) => node.destroy()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const primary = await startTestRedisServer('none');
    nodes.push(primary);
    for (let i = 0; i < replicas; i++) {
      nodes.push(
        await startTestRedisServer('none', ['--replicaof', '127.0.0.1', String(primary.port)]),
      );
    }
    for (const replica of nodes.slice(1)) {
      await until(`replica ${replica.port} did not sync`, 20_000, () =>
        ask(replica.port, async (r) =>
          (await r.info('replication')).includes('master_link_status:up'),
        ),
      );
    }
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${TEST_SENTINEL_NAME} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${TEST_SENTINEL_NAME} ${options.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${TEST_SENTINEL_NAME} ${options.failoverTimeoutMs ?? 3000}`,
          `sentinel parallel-syncs ${TEST_SENTINEL_NAME} 1`,
          '',
        ].join('\n'),
      );
      const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
      processes.push(child);
      sentinels.push(`127.0.0.1:${port}`);
      await until(`sentinel ${port} did not answer PING`, 20_000, () =>
        answersPing('127.0.0.1', port),
      );
    }
    for (const sentinel of sentinels) {
      const port = Number(sentinel.split(':')[1]);
      await until(
        `sentinel ${port} did not learn the replicas and the other sentinels`,
        30_000,
        () =>
          ask(port, async (r) => {
            const known = (await r.call('SENTINEL', 'REPLICAS', TEST_SENTINEL_NAME)) as unknown[];
            const others = (await r.call('SENTINEL', 'SENTINELS', TEST_SENTINEL_NAME)) as unknown[];
            return known.length === replicas && others.length === 2;
          }),
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const sentinelPort = (i: number) => Number(sentinels[i]!.split(':')[1]);
  const primaryOf = async (i: number) =>
    Number(
      (
        (await ask(sentinelPort(i), (r) =>
          r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', TEST_SENTINEL_NAME),
        )) as string[]
      )[1],
    );
  return {
    nodes,
    sentinels,
    name: TEST_SENTINEL_NAME,
    primaryPort: () => primaryOf(0),
    async waitForFailover(oldPort, timeoutMs = 30_000) {
      let promoted = oldPort;
      await until(`no failover away from ${oldPort}`, timeoutMs, async () => {
        const named = await Promise.all(sentinels.map((_, i) => primaryOf(i)));
        if (named.some((port) => port === oldPort || port !== named[0])) return false;
        promoted = named[0]!;
        const role = (await ask(promoted, (r) => r.call('ROLE'))) as unknown[];
        return role[0] === 'master';
      });
      return promoted;
    },
    async holdReplication(primaryPort) {
      const others = nodes.filter((node) => node.port !== primaryPort && node.running());
      const auth = (user: string, password: string) =>
        Promise.all(
          others.map((node) =>
            ask(node.port, async (r) => {
              await r.config('SET', 'masteruser', user);
              await r.config('SET', 'masterauth', password);
            }),
          ),
        );
      await auth('memq-test-no-such-user', 'memq-test-lag');
      const links = Number(
        await ask(primaryPort, (r) => r.call('CLIENT', 'KILL', 'TYPE', 'replica')),
      );
      return { links, release: () => auth('', '').then(() => undefined) };
    },
    haltSentinels: () => haltSentinels('SIGKILL').then(() => undefined),
    async rejoin(port, primaryPort) {
      const node = nodes.find((candidate) => candidate.port === port);
      if (!node) throw new Error(`redis-sentinel helper: no data node on port ${port}`);
      await node.start();
      await ask(port, (r) => r.replicaof('127.0.0.1', primaryPort));
      await until(`node ${port} did not sync with ${primaryPort}`, 20_000, () =>
        ask(port, async (r) => (await r.info('replication')).includes('master_link_status:up')),
      );
    },
    stop,
  };
}
