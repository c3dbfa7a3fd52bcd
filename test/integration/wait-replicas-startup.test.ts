/**
 * `MEMQ_WAIT_REPLICAS` at start-up: with fewer replicas connected to the primary than it asks to
 * confirm, every acknowledged write would answer 503 after the WAIT timeout, so `memq work` says
 * so at start (and goes on: a replica may be reconnecting). On a Redis Cluster the setting is
 * refused before anything starts.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, connect, RedisUnavailableError } from '../../src/index.js';
import { memqEnv, startMemqProcess } from '../helpers/cli.js';
import { createRedisNamespace } from '../helpers/redis-namespace.js';

describe('MEMQ_WAIT_REPLICAS at start-up and in connect()', () => {
  it('warns when the primary has fewer connected replicas than asked (a cluster refuses the setting)', async () => {
    const ns = createRedisNamespace();
    try {
      if (ns.clusterNodes) {
        await expect(
          startMemqProcess('work', memqEnv(ns, { MEMQ_WAIT_REPLICAS: '1' })),
        ).rejects.toThrow(/MEMQ_WAIT_REPLICAS: expected 0 with REDIS_CLUSTER_NODES/);
        return;
      }
      // The test Redis has no replicas: asking for 2 must be called out, naming both counts.
      const memq = await startMemqProcess('work', memqEnv(ns, { MEMQ_WAIT_REPLICAS: '2' }));
      try {
        const warning = memq
          .stderr()
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => JSON.parse(line) as Record<string, unknown>)
          .find((line) => String(line.msg).startsWith('MEMQ_WAIT_REPLICAS asks more replicas'));
        expect(warning).toMatchObject({ connectedReplicas: 0, waitReplicas: 2 });
      } finally {
        expect(await memq.stop()).toBe(0);
      }
      // Without the setting: no such line.
      const plain = await startMemqProcess('work', memqEnv(ns));
      try {
        expect(plain.stderr()).not.toContain('MEMQ_WAIT_REPLICAS asks');
      } finally {
        await plain.stop();
      }
    } finally {
      await ns.cleanup();
    }
  });

  it('connect({ waitReplicas }): an append no replica confirms is refused as Redis-unavailable (a cluster refuses the option)', async () => {
    const ns = createRedisNamespace();
    try {
      const options = {
        memories: 'memories',
        project: 'wait-replicas',
        keyPrefix: ns.keyPrefix,
        queuePrefix: ns.queuePrefix,
        waitReplicas: { replicas: 1, timeoutMs: 100 },
      };
      if (ns.clusterNodes) {
        await expect(connect({ ...options, redis: { cluster: ns.clusterNodes } })).rejects.toThrow(
          ConfigError,
        );
        return;
      }
      const memq = await connect({ ...options, redis: ns.url });
      try {
        // The test Redis has no replica: WAIT 1 answers 0 after 100 ms.
        await expect(
          memq.append({ resource: 'customer-support', key: 'wait-1' }, [
            { role: 'user', content: 'hello' },
          ]),
        ).rejects.toThrow(RedisUnavailableError);
      } finally {
        await memq.close();
      }
      await expect(
        connect({ ...options, redis: ns.url, waitReplicas: { replicas: 1, timeoutMs: 5000 } }),
      ).rejects.toThrow(/waitReplicas/);
    } finally {
      await ns.cleanup();
    }
  });
});
