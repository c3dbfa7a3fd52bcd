/**
 * The ioredis options of a Redis Sentinel endpoint (src/redis/connection.ts) and the endpoint
 * shapes that lead there (`REDIS_SENTINELS`, `connect({ redis: { url, sentinel } })`). Nothing
 * needs to run; test/integration/redis-sentinel.test.ts connects to real sentinels.
 */
import { describe, expect, it } from 'vitest';
import { configuredRedis } from '../../../src/cli/redis-target.js';
import { loadEnvConfig } from '../../../src/config/env.js';
import { ConfigError } from '../../../src/core/errors.js';
import { redisClientOptions } from '../../../src/redis/connection.js';
import { endpointOf } from '../../../src/runtime/connect.js';

describe('redisClientOptions with a sentinel', () => {
  it('asks the sentinels for the group, with the URL credentials on the data nodes ', () => {
    const built = redisClientOptions({
      url: 'redis://app:s%3Acret@ignored:6379/2',
      sentinel: { nodes: ['10.0.0.1:26379', '[::1]:26380'], name: 'memq-primary' },
      role: 'worker',
    });
    expect(built.kind).toBe('sentinel');
    if (built.kind !== 'sentinel') return;
    expect(built.url).toBe('redis://app:s%3Acret@ignored:6379/2');
    expect(built.options).toMatchObject({
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'memq-primary',
      maxRetriesPerRequest: null,
      protocol: 2,
    });
    expect(built.options.sentinelPassword).toBeUndefined();
    expect(built.options.tls).toBeUndefined();
  });

  it('rediss:// turns TLS on for the data nodes and the sentinels', () => {
    const built = redisClientOptions({
      url: 'rediss://127.0.0.1:6379',
      sentinel: { nodes: ['s1:26379'], name: 'g' },
      role: 'producer',
    });
    expect(built.options).toMatchObject({
      tls: {},
      enableTLSForSentinelMode: true,
      sentinelTLS: {},
      maxRetriesPerRequest: 1,
    });
  });

  it('refuses sentinels with cluster nodes, and a sentinel without nodes', () => {
    const sentinel = { nodes: ['s1:26379'], name: 'g' };
    expect(() =>
      redisClientOptions({ url: 'redis://x', sentinel, clusterNodes: ['n:7000'], role: 'worker' }),
    ).toThrow(ConfigError);
    expect(() =>
      redisClientOptions({ url: 'redis://x', sentinel: { nodes: [], name: 'g' }, role: 'worker' }),
    ).toThrow('sentinel.nodes: expected at least one host:port');
  });
});

describe('sentinel endpoints', () => {
  it('REDIS_SENTINELS with REDIS_SENTINEL_NAME is where CLI commands connect', () => {
    const env = loadEnvConfig({
      REDIS_SENTINELS: '10.0.0.1:26379,10.0.0.2:26379',
      REDIS_SENTINEL_NAME: 'memq-primary',
      REDIS_URL: 'rediss://:pw@primary.internal:6380',
    });
    expect(configuredRedis(env)).toEqual({
      url: 'rediss://:pw@primary.internal:6380',
      sentinel: { nodes: ['10.0.0.1:26379', '10.0.0.2:26379'], name: 'memq-primary' },
    });
    const withoutUrl = configuredRedis(
      loadEnvConfig({ REDIS_SENTINELS: '10.0.0.1:26379', REDIS_SENTINEL_NAME: 'g' }),
    );
    expect(withoutUrl?.url).toBe('redis://127.0.0.1:6379');
  });

  it("connect's { url, sentinel } passes the sentinel through", () => {
    const sentinel = { nodes: ['s1:26379'], name: 'g' };
    expect(endpointOf({ url: 'redis://:pw@x:6379', sentinel })).toEqual({
      url: 'redis://:pw@x:6379',
      sentinel,
    });
  });
});
