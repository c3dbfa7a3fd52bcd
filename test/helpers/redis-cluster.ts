import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { answersPing, freePort } from '../../src/runtime/embedded-redis.js';

/** A local three-master Redis Cluster for tests (no replicas, no persistence). */
export interface TestCluster {
  /** Seed nodes, `127.0.0.1:<port>` each (what `REDIS_CLUSTER_NODES` takes). */
  readonly nodes: readonly string[];
  /** Stops every node and removes their directories. */
  stop(): Promise<void>;
}

/**
 * Starts three `redis-server`s with `cluster-enabled yes` on free loopback ports, joins them with
 * `redis-cli --cluster create`, and waits until every node reports `cluster_state:ok`.
 * @throws Error naming the step that failed (the nodes started so far are stopped).
 */
export async function startTestCluster(): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'memq-cluster-'));
  const processes: ChildProcess[] = [];
  const ports: number[] = [];
  const stop = async () => {
    await Promise.all(
      processes.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill('SIGTERM');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      ports.push(port);
      processes.push(
        spawn(
          'redis-server',
          [
            '--port',
            String(port),
            '--bind',
            '127.0.0.1',
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--cluster-node-timeout',
            '5000',
            '--save',
            '',
            '--appendonly',
            'no',
            '--dir',
            dir,
          ],
          { stdio: 'ignore' },
        ),
      );
    }
    for (const port of ports) {
      const deadline = Date.now() + 10_000;
      while (!(await answersPing('127.0.0.1', port))) {
        if (Date.now() > deadline) throw new Error(`cluster node ${port} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const nodes = ports.map((port) => `127.0.0.1:${port}`);
    const create = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'],
      { encoding: 'utf8' },
    );
    if (create.status !== 0)
      throw new Error(`redis-cli --cluster create: ${create.stdout}${create.stderr}`);
    for (const port of ports) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const info = spawnSync('redis-cli', ['-p', String(port), 'cluster', 'info'], {
          encoding: 'utf8',
        });
        if (info.stdout.includes('cluster_state:ok')) break;
        if (Date.now() > deadline)
          throw new Error(`cluster node ${port} never reported cluster_state:ok`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { nodes, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
