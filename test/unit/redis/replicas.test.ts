/**
 * Replica confirmation settings (src/redis/replicas.ts): off at 0, and refused on a Redis Cluster
 * connection, where WAIT cannot be routed to the node that took the writes. Nothing needs to run:
 * the Cluster client never connects (lazyConnect). test/integration/wait-replicas.test.ts runs
 * WAIT on a real replica.
 */
import { Cluster } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import {
  checkReplicaConfirmation,
  confirmReplicas,
  replicaConfirmation,
} from '../../../src/redis/replicas.js';

describe('replica confirmation', () => {
  it('is off at 0 and takes the timeout (default 1000 ms) otherwise', () => {
    expect(replicaConfirmation({ waitReplicas: 0, waitReplicasTimeoutMs: 500 })).toBeUndefined();
    expect(replicaConfirmation({})).toBeUndefined();
    expect(replicaConfirmation({ waitReplicas: 2, waitReplicasTimeoutMs: 500 })).toEqual({
      replicas: 2,
      timeoutMs: 500,
    });
    expect(replicaConfirmation({ waitReplicas: 1 })).toEqual({ replicas: 1, timeoutMs: 1000 });
  });

  it('is refused on a Redis Cluster connection, before any command', async () => {
    const cluster = new Cluster([{ host: '127.0.0.1', port: 1 }], { lazyConnect: true });
    try {
      expect(() => checkReplicaConfirmation(cluster, undefined)).not.toThrow();
      expect(() => checkReplicaConfirmation(cluster, { replicas: 1, timeoutMs: 100 })).toThrow(
        ConfigError,
      );
      await expect(
        confirmReplicas(cluster, { replicas: 1, timeoutMs: 100 }, 'append', 0),
      ).rejects.toThrow('MEMQ_WAIT_REPLICAS: expected 0 on a Redis Cluster');
    } finally {
      cluster.disconnect();
    }
  });
});
