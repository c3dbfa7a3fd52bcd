import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import {
  API_KEYS_ALLOWED,
  ENV_GROUPS,
  ENV_VARS,
  RATE_LIMIT_MIN_MESSAGES,
  loadEnvConfig,
  parseApiKeys,
  retiredEnvVariables,
} from '../../../src/config/env.js';
import { MAX_MESSAGES_PER_WRITE } from '../../../queues/job-contracts.js';

function errorOf(env: Record<string, string | undefined>): ConfigError {
  try {
    loadEnvConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected loadEnvConfig to throw a ConfigError');
}

describe('loadEnvConfig', () => {
  it('applies every default to an empty environment', () => {
    expect(loadEnvConfig({})).toEqual({
      appendBatchMaxMessages: 256,
      appendBatchMaxBytes: 1_048_576,
      waitReplicas: 0,
      waitReplicasTimeoutMs: 1000,
      memoriesDir: 'memories',
      port: 3000,
      host: '127.0.0.1',
      keyPrefix: 'memq:',
      queuePrefix: '{memq}',
      appendConcurrency: 16,
      tokenCountConcurrency: 4,
      tokenCacheBytes: 16_777_216,
      backpressureHighWaterMessages: 10_000,
      backpressureLowWaterMessages: 5_000,
      backpressurePolicy: 'reject',
      backpressureProjectHighWaterMessages: 2_500,
      backpressureMaxBytes: 1_073_741_824,
      backpressureProjectMaxBytes: 268_435_456,
      shutdownGraceMs: 25_000,
      maintenanceIntervalMs: 300_000,
      idempotencyWindowMs: 86_400_000,
      jobLockMs: 30_000,
      project: 'default',
      boardUser: 'admin',
      boardReadOnly: false,
      maxBodyBytes: 1_048_576,
      maxMessageBytes: 262_144,
      rateLimitRequestsPerSecond: 100,
      rateLimitRequestsBurst: 1_000,
      rateLimitMessagesPerSecond: 1_000,
      rateLimitMessagesBurst: 10_000,
      maxConcurrentWaits: 32,
      maxConcurrentDryRuns: 4,
      logLevel: 'info',
    });
  });

  it('leaves REDIS_URL and MEMQ_API_KEYS unset by default', () => {
    const config = loadEnvConfig({});
    expect(config.redisUrl).toBeUndefined();
    expect(config.apiKeys).toBeUndefined();
  });

  it('treats empty strings as unset', () => {
    expect(loadEnvConfig({ PORT: '', REDIS_URL: '', MEMQ_LOG_LEVEL: '' })).toMatchObject({
      port: 3000,
      logLevel: 'info',
    });
  });

  it('reads every variable', () => {
    const config = loadEnvConfig({
      REDIS_URL: 'rediss://user:secret@redis.example:6380/2',
      MEMQ_MEMORIES_DIR: '/etc/memq/memories',
      PORT: '8080',
      HOST: '0.0.0.0',
      MEMQ_KEY_PREFIX: 'staging:memq:',
      MEMQ_QUEUE_PREFIX: 'staging{memq}',
      MEMQ_APPEND_CONCURRENCY: '32',
      MEMQ_TOKEN_COUNT_CONCURRENCY: '3',
      MEMQ_APPEND_BATCH_MAX: '1',
      MEMQ_APPEND_BATCH_MAX_BYTES: '65536',
      MEMQ_BACKPRESSURE_HIGH_WATER: '200',
      MEMQ_BACKPRESSURE_LOW_WATER: '100',
      MEMQ_BACKPRESSURE_POLICY: 'wait',
      MEMQ_SHUTDOWN_GRACE_MS: '5000',
      MEMQ_PROJECT: 'acme',
      MEMQ_API_KEYS: 'key-one-0123456789:acme, key-two-0123456789:beta',
      MEMQ_LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      redisUrl: 'rediss://user:secret@redis.example:6380/2',
      memoriesDir: '/etc/memq/memories',
      port: 8080,
      host: '0.0.0.0',
      keyPrefix: 'staging:memq:',
      queuePrefix: 'staging{memq}',
      appendConcurrency: 32,
      tokenCountConcurrency: 3,
      appendBatchMaxMessages: 1,
      appendBatchMaxBytes: 65_536,
      backpressureHighWaterMessages: 200,
      backpressureLowWaterMessages: 100,
      backpressurePolicy: 'wait',
      shutdownGraceMs: 5000,
      project: 'acme',
      logLevel: 'debug',
    });
    expect(Object.fromEntries(config.apiKeys ?? [])).toEqual({
      'key-one-0123456789': { project: 'acme', readOnly: false },
      'key-two-0123456789': { project: 'beta', readOnly: false },
    });
  });

  it('reads a trailing :read as a read-only key', () => {
    const { apiKeys } = loadEnvConfig({
      MEMQ_API_KEYS: 'key-one-0123456789:acme:read,key-two-0123456789:beta',
    });
    expect(apiKeys?.get('key-one-0123456789')).toEqual({ project: 'acme', readOnly: true });
    expect(apiKeys?.get('key-two-0123456789')).toEqual({ project: 'beta', readOnly: false });
  });

  it('reads REDIS_CLUSTER_NODES as host:port seed nodes and refuses anything else', () => {
    expect(
      loadEnvConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, redis-b:7001' }).redisClusterNodes,
    ).toEqual(['10.0.0.1:7000', 'redis-b:7001']);
    expect(() => loadEnvConfig({ REDIS_CLUSTER_NODES: 'redis-a,redis-b:7001' })).toThrow(
      'REDIS_CLUSTER_NODES: expected comma-separated host:port entries',
    );
    expect(() => loadEnvConfig({ REDIS_CLUSTER_NODES: 'redis-a:70000' })).toThrow(
      'REDIS_CLUSTER_NODES: expected comma-separated host:port entries (port 1-65535)',
    );
    expect(() =>
      loadEnvConfig({ REDIS_SENTINELS: 'sentinel-a:0', REDIS_SENTINEL_NAME: 'memq-primary' }),
    ).toThrow('REDIS_SENTINELS: expected comma-separated host:port entries (port 1-65535)');
  });

  it('reads REDIS_SENTINELS with REDIS_SENTINEL_NAME, and refuses one without the other or with a cluster', () => {
    const env = loadEnvConfig({
      REDIS_SENTINELS: '10.0.0.1:26379, sentinel-b:26380',
      REDIS_SENTINEL_NAME: 'memq-primary',
    });
    expect(env.redisSentinels).toEqual(['10.0.0.1:26379', 'sentinel-b:26380']);
    expect(env.redisSentinelName).toBe('memq-primary');
    expect(() => loadEnvConfig({ REDIS_SENTINELS: '10.0.0.1:26379' })).toThrow(
      'REDIS_SENTINEL_NAME: expected REDIS_SENTINELS and REDIS_SENTINEL_NAME together, got unset',
    );
    expect(() => loadEnvConfig({ REDIS_SENTINEL_NAME: 'memq-primary' })).toThrow(
      'REDIS_SENTINEL_NAME: expected REDIS_SENTINELS and REDIS_SENTINEL_NAME together',
    );
    expect(() =>
      loadEnvConfig({
        REDIS_SENTINELS: '10.0.0.1:26379',
        REDIS_SENTINEL_NAME: 'memq-primary',
        REDIS_CLUSTER_NODES: '10.0.0.1:7000',
      }),
    ).toThrow('REDIS_SENTINELS: expected either REDIS_SENTINELS or REDIS_CLUSTER_NODES, not both');
    expect(() => loadEnvConfig({ MEMQ_WAIT_REPLICAS: '17' })).toThrow('MEMQ_WAIT_REPLICAS');
    // Longer than a producer call's 5 s Redis deadline could never confirm anything.
    expect(() => loadEnvConfig({ MEMQ_WAIT_REPLICAS_TIMEOUT_MS: '5000' })).toThrow(
      'MEMQ_WAIT_REPLICAS_TIMEOUT_MS: expected an integer in 1-4000',
    );
    // A zero deadline would abandon every step of every shutdown.
    expect(() => loadEnvConfig({ MEMQ_SHUTDOWN_GRACE_MS: '0' })).toThrow(
      'MEMQ_SHUTDOWN_GRACE_MS: expected an integer in 1000-3600000',
    );
  });

  it('refuses MEMQ_WAIT_REPLICAS with a Redis Cluster, and takes it with one server or Sentinel', () => {
    expect(() =>
      loadEnvConfig({ MEMQ_WAIT_REPLICAS: '1', REDIS_CLUSTER_NODES: '10.0.0.1:7000' }),
    ).toThrow('MEMQ_WAIT_REPLICAS: expected 0 with REDIS_CLUSTER_NODES');
    expect(
      loadEnvConfig({ MEMQ_WAIT_REPLICAS: '0', REDIS_CLUSTER_NODES: '10.0.0.1:7000' }).waitReplicas,
    ).toBe(0);
    const env = loadEnvConfig({
      MEMQ_WAIT_REPLICAS: '2',
      MEMQ_WAIT_REPLICAS_TIMEOUT_MS: '250',
      REDIS_SENTINELS: '10.0.0.1:26379',
      REDIS_SENTINEL_NAME: 'memq-primary',
    });
    expect([env.waitReplicas, env.waitReplicasTimeoutMs]).toEqual([2, 250]);
  });

  it('listens on loopback unless HOST says otherwise; takes IPv6 and host names', () => {
    expect(loadEnvConfig({}).host).toBe('127.0.0.1');
    expect(loadEnvConfig({ HOST: '' }).host).toBe('127.0.0.1');
    expect(loadEnvConfig({ HOST: '::' }).host).toBe('::');
    expect(loadEnvConfig({ HOST: 'memq.internal' }).host).toBe('memq.internal');
  });

  it('reads the fairness limits, 0 turning each off', () => {
    expect(
      loadEnvConfig({
        MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER: '0',
        MEMQ_BACKPRESSURE_MAX_BYTES: '0',
        MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES: '1048576',
        MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND: '0',
        MEMQ_RATE_LIMIT_REQUESTS_BURST: '0',
        MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND: '0',
        MEMQ_RATE_LIMIT_MESSAGES_BURST: '0',
        MEMQ_MAX_CONCURRENT_WAITS: '0',
        MEMQ_MAX_CONCURRENT_DRY_RUNS: '1',
      }),
    ).toMatchObject({
      backpressureProjectHighWaterMessages: 0,
      backpressureMaxBytes: 0,
      backpressureProjectMaxBytes: 1_048_576,
      rateLimitRequestsPerSecond: 0,
      rateLimitRequestsBurst: 0,
      rateLimitMessagesPerSecond: 0,
      rateLimitMessagesBurst: 0,
      maxConcurrentWaits: 0,
      maxConcurrentDryRuns: 1,
    });
  });

  it('refuses a message rate that could never let a full write (1000 messages) through', () => {
    expect(RATE_LIMIT_MIN_MESSAGES).toBe(MAX_MESSAGES_PER_WRITE);
    expect(
      errorOf({ MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND: '50', MEMQ_RATE_LIMIT_MESSAGES_BURST: '999' })
        .message,
    ).toBe(
      'MEMQ_RATE_LIMIT_MESSAGES_BURST: expected at least 1000 while MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND (50) is below it (a write carries up to 1000 messages; 0 per second turns the limit off), got 999',
    );
    expect(
      loadEnvConfig({
        MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND: '50',
        MEMQ_RATE_LIMIT_MESSAGES_BURST: '1000',
      }).rateLimitMessagesPerSecond,
    ).toBe(50);
    expect(
      loadEnvConfig({
        MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND: '0',
        MEMQ_RATE_LIMIT_MESSAGES_BURST: '5',
      }).rateLimitMessagesBurst,
    ).toBe(5);
  });

  it('returns a frozen object', () => {
    expect(Object.isFrozen(loadEnvConfig({}))).toBe(true);
  });

  it('ignores variables it does not know', () => {
    expect(loadEnvConfig({ HOME: '/root', MEMQ_UNKNOWN: 'x' }).port).toBe(3000);
  });

  it.each([
    [
      'REDIS_URL',
      'http://user:hunter2@redis:6379',
      'REDIS_URL: expected a redis:// or rediss:// URL, got a URL with scheme http:',
    ],
    [
      'REDIS_URL',
      'localhost:6379:hunter2',
      'REDIS_URL: expected a redis:// or rediss:// URL, got a URL with scheme localhost:',
    ],
    [
      'REDIS_URL',
      'not a url',
      'REDIS_URL: expected a redis:// or rediss:// URL, got a value that is not a URL',
    ],
    ['PORT', 'abc', 'PORT: expected an integer port in 0-65535, got "abc"'],
    ['PORT', '70000', 'PORT: expected an integer port in 0-65535, got "70000"'],
    ['PORT', '-1', 'PORT: expected an integer port in 0-65535, got "-1"'],
    ['PORT', '3e3', 'PORT: expected an integer port in 0-65535, got "3e3"'],
    [
      'MEMQ_KEY_PREFIX',
      '{memq}:',
      'MEMQ_KEY_PREFIX: expected 1-64 characters without braces or whitespace, got "{memq}:"',
    ],
    [
      'MEMQ_KEY_PREFIX',
      'my prefix',
      'MEMQ_KEY_PREFIX: expected 1-64 characters without braces or whitespace, got "my prefix"',
    ],
    [
      'MEMQ_QUEUE_PREFIX',
      'memq',
      'MEMQ_QUEUE_PREFIX: expected a prefix containing a {hash tag}, e.g. {memq}, got "memq"',
    ],
    [
      'MEMQ_QUEUE_PREFIX',
      '{}',
      'MEMQ_QUEUE_PREFIX: expected a prefix containing a {hash tag}, e.g. {memq}, got "{}"',
    ],
    [
      'MEMQ_APPEND_CONCURRENCY',
      '0',
      'MEMQ_APPEND_CONCURRENCY: expected an integer in 1-10000, got "0"',
    ],
    [
      'MEMQ_TOKEN_COUNT_CONCURRENCY',
      '1.5',
      'MEMQ_TOKEN_COUNT_CONCURRENCY: expected an integer in 1-10000, got "1.5"',
    ],
    [
      'MEMQ_BACKPRESSURE_HIGH_WATER',
      '0',
      'MEMQ_BACKPRESSURE_HIGH_WATER: expected a positive integer (messages), got "0"',
    ],
    [
      'MEMQ_BACKPRESSURE_LOW_WATER',
      'lots',
      'MEMQ_BACKPRESSURE_LOW_WATER: expected a non-negative integer (messages), got "lots"',
    ],
    [
      'MEMQ_BACKPRESSURE_LOW_WATER',
      '10000',
      'MEMQ_BACKPRESSURE_LOW_WATER: expected an integer below MEMQ_BACKPRESSURE_HIGH_WATER (10000), got 10000',
    ],
    [
      'MEMQ_BACKPRESSURE_MAX_BYTES',
      '1GiB',
      'MEMQ_BACKPRESSURE_MAX_BYTES: expected a non-negative integer (bytes; 0 = no bound), got "1GiB"',
    ],
    [
      'MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND',
      '-1',
      'MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND: expected a non-negative integer (requests; 0 = no limit), got "-1"',
    ],
    [
      'MEMQ_MAX_CONCURRENT_WAITS',
      '1000001',
      'MEMQ_MAX_CONCURRENT_WAITS: expected an integer in 0-1000000 (calls; 0 = no cap), got "1000001"',
    ],
    [
      'MEMQ_BACKPRESSURE_POLICY',
      'drop',
      'MEMQ_BACKPRESSURE_POLICY: expected one of reject, wait, got "drop"',
    ],
    [
      'MEMQ_SHUTDOWN_GRACE_MS',
      '30s',
      'MEMQ_SHUTDOWN_GRACE_MS: expected an integer in 1000-3600000 (milliseconds), got "30s"',
    ],
    [
      'MEMQ_PROJECT',
      'my project',
      'MEMQ_PROJECT: expected 1-64 characters of A-Z a-z 0-9 _ - starting with a letter or digit, got "my project"',
    ],
    [
      'HOST',
      'http://0.0.0.0',
      'HOST: expected an IP address or host name, e.g. 127.0.0.1, 0.0.0.0 or ::, got "http://0.0.0.0"',
    ],
    [
      'MEMQ_LOG_LEVEL',
      'verbose',
      'MEMQ_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"',
    ],
  ])(
    'rejects %s=%j naming the variable, what is allowed and what was found',
    (name, value, message) => {
      const error = errorOf({ [name]: value });
      expect(error.code).toBe('CONFIG_INVALID');
      expect(error.message).toBe(message);
    },
  );

  it.each([
    ['sk-secret-0123456789', 'entry 1 without ":"'],
    ['sk-secret-0123456789:acme,,sk-secret-9876543210:beta', 'entry 2 empty'],
    [':acme', 'entry 1 with an empty key or a key containing whitespace'],
    ['sk secret 0123456789:acme', 'entry 1 with an empty key or a key containing whitespace'],
    ['sk-secret-0123456789:', 'entry 1 with a project that is not valid'],
    ['sk-secret-0123456789:my project', 'entry 1 with a project that is not valid'],
    ['sk-secret-0123456789:acme,sk-secret-0123456789:beta', 'entry 2 repeating an earlier key'],
  ])('rejects a malformed MEMQ_API_KEYS entry without echoing the key (%s)', (value, got) => {
    const error = errorOf({ MEMQ_API_KEYS: value });
    expect(error.message).toBe(`MEMQ_API_KEYS: ${API_KEYS_ALLOWED}, got ${got}`);
    expect(error.message).not.toContain('sk');
  });

  it.each([
    // Once accepted, these became read-write keys of projects "READ" / "ro" / "readonly".
    [
      'sk-secret-0123456789:acme:READ',
      'entry 1 whose third part is not "read" (the only scope, lower case)',
    ],
    [
      'sk-secret-0123456789:acme:ro',
      'entry 1 whose third part is not "read" (the only scope, lower case)',
    ],
    [
      'sk-secret-0123456789:acme:Read',
      'entry 1 whose third part is not "read" (the only scope, lower case)',
    ],
    ['sk-secret-0123456789:acme:read:read', 'entry 1 with 4 parts (a key cannot contain ":")'],
    [
      'sk:secret-0123456789:acme',
      'entry 1 whose third part is not "read" (the only scope, lower case)',
    ],
    ['sk-secret-0123456789:acme,sk-short:beta', 'entry 2 with a key of 8 characters (at least 16)'],
  ])('rejects %s: only key:project and key:project:read, keys of 16+ characters', (value, got) => {
    const error = errorOf({ MEMQ_API_KEYS: value });
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toBe(`MEMQ_API_KEYS: ${API_KEYS_ALLOWED}, got ${got}`);
    expect(error.message).not.toContain('sk');
  });

  it('says what an entry must look like, in words', () => {
    expect(errorOf({ MEMQ_API_KEYS: 'sk-secret-0123456789:acme:ro' }).message).toBe(
      'MEMQ_API_KEYS: expected key:project or key:project:read entries (key: at least 16 ' +
        'characters, no ":", "," or whitespace; project: 1-64 characters of A-Z a-z 0-9 _ - ' +
        'starting with a letter or digit; "read", lower case, is the only scope), got entry 1 ' +
        'whose third part is not "read" (the only scope, lower case)',
    );
  });

  it('parses the documented forms into grants', () => {
    const { keys, problems } = parseApiKeys([
      'key-0123456789abcdef:acme',
      'key-fedcba9876543210:acme:read',
      'key-0123456789abcdef0:read',
    ]);
    expect(problems).toEqual([]);
    expect(Object.fromEntries(keys)).toEqual({
      'key-0123456789abcdef': { project: 'acme', readOnly: false },
      'key-fedcba9876543210': { project: 'acme', readOnly: true },
      // Two parts: "read" is the project's name, not a scope.
      'key-0123456789abcdef0': { project: 'read', readOnly: false },
    });
  });

  it('never echoes a REDIS_URL password', () => {
    expect(errorOf({ REDIS_URL: 'http://user:hunter2@redis:6379' }).message).not.toContain(
      'hunter2',
    );
  });

  it('reports every invalid variable in one error, one per line', () => {
    const error = errorOf({ PORT: 'x', MEMQ_LOG_LEVEL: 'loud', MEMQ_BACKPRESSURE_POLICY: 'drop' });
    expect(error.message.split('\n')).toEqual([
      'PORT: expected an integer port in 0-65535, got "x"',
      'MEMQ_BACKPRESSURE_POLICY: expected one of reject, wait, got "drop"',
      'MEMQ_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    ]);
  });

  it('documents every variable it reads, with the defaults it applies', () => {
    expect(ENV_VARS.map((v) => v.name)).toEqual([
      'REDIS_URL',
      'REDIS_CLUSTER_NODES',
      'REDIS_SENTINELS',
      'REDIS_SENTINEL_NAME',
      'MEMQ_KEY_PREFIX',
      'MEMQ_QUEUE_PREFIX',
      'PORT',
      'HOST',
      'MEMQ_MAX_BODY_BYTES',
      'MEMQ_MAX_MESSAGE_BYTES',
      'MEMQ_PROJECT',
      'MEMQ_API_KEYS',
      'MEMQ_API_KEYS_FILE',
      'MEMQ_BOARD_USER',
      'MEMQ_BOARD_PASSWORD',
      'MEMQ_BOARD_READ_ONLY',
      'MEMQ_APPEND_BATCH_MAX',
      'MEMQ_APPEND_BATCH_MAX_BYTES',
      'MEMQ_WAIT_REPLICAS',
      'MEMQ_WAIT_REPLICAS_TIMEOUT_MS',
      'MEMQ_BACKPRESSURE_HIGH_WATER',
      'MEMQ_BACKPRESSURE_LOW_WATER',
      'MEMQ_BACKPRESSURE_POLICY',
      'MEMQ_BACKPRESSURE_PROJECT_HIGH_WATER',
      'MEMQ_BACKPRESSURE_MAX_BYTES',
      'MEMQ_BACKPRESSURE_PROJECT_MAX_BYTES',
      'MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND',
      'MEMQ_RATE_LIMIT_REQUESTS_BURST',
      'MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND',
      'MEMQ_RATE_LIMIT_MESSAGES_BURST',
      'MEMQ_MAX_CONCURRENT_WAITS',
      'MEMQ_MAX_CONCURRENT_DRY_RUNS',
      'MEMQ_APPEND_CONCURRENCY',
      'MEMQ_TOKEN_COUNT_CONCURRENCY',
      'MEMQ_TOKEN_CACHE_BYTES',
      'MEMQ_JOB_LOCK_MS',
      'MEMQ_MAINTENANCE_INTERVAL_MS',
      'MEMQ_IDEMPOTENCY_WINDOW_MS',
      'MEMQ_MEMORIES_DIR',
      'MEMQ_SHUTDOWN_GRACE_MS',
      'MEMQ_LOG_LEVEL',
    ]);
    // Setting every variable to its documented default changes nothing.
    const documentedDefaults = Object.fromEntries(ENV_VARS.map((v) => [v.name, v.default]));
    expect(loadEnvConfig(documentedDefaults)).toEqual(loadEnvConfig({}));
  });

  it('fills one property per variable: present by default exactly when the variable has a default', () => {
    const properties = ENV_VARS.map((v) => v.property);
    expect(new Set(properties).size).toBe(properties.length);
    expect(new Set(ENV_VARS.map((v) => v.name)).size).toBe(ENV_VARS.length);
    expect(Object.keys(loadEnvConfig({})).sort()).toEqual(
      ENV_VARS.filter((v) => v.default !== undefined)
        .map((v) => v.property)
        .sort(),
    );
  });

  it('lists each group together, in the order of ENV_GROUPS', () => {
    const runs = ENV_VARS.map((v) => v.group).filter(
      (group, index, groups) => group !== groups[index - 1],
    );
    expect(runs).toEqual(Object.keys(ENV_GROUPS));
  });

  it('says in each error what the table says is allowed', () => {
    for (const [name, value] of [
      ['PORT', 'x'],
      ['MEMQ_JOB_LOCK_MS', '4999'],
      ['MEMQ_BOARD_READ_ONLY', 'yes'],
    ] as const) {
      const entry = ENV_VARS.find((v) => v.name === name)!;
      expect(errorOf({ [name]: value }).message).toBe(
        `${name}: expected ${entry.allowed}, got ${JSON.stringify(value)}`,
      );
    }
  });

  it('never echoes a secret variable, whatever its schema says', () => {
    expect(ENV_VARS.filter((v) => v.secret).map((v) => v.name)).toEqual([
      'REDIS_URL',
      'MEMQ_API_KEYS',
      'MEMQ_BOARD_PASSWORD',
    ]);
    const error = errorOf({ MEMQ_BOARD_PASSWORD: 'hunter2' });
    expect(error.message).toBe(
      'MEMQ_BOARD_PASSWORD: expected at least 8 characters, got an invalid value (not shown)',
    );
  });

  it('checks rules over several variables only once each variable is valid', () => {
    expect(
      errorOf({ PORT: 'x', MEMQ_BACKPRESSURE_LOW_WATER: '20000' }).message.split('\n'),
    ).toEqual(['PORT: expected an integer port in 0-65535, got "x"']);
    const error = errorOf({
      MEMQ_BACKPRESSURE_HIGH_WATER: '100',
      MEMQ_BACKPRESSURE_LOW_WATER: '100',
      MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND: '5',
      MEMQ_RATE_LIMIT_MESSAGES_BURST: '5',
    });
    expect(error.details).toEqual({
      variables: ['MEMQ_RATE_LIMIT_MESSAGES_BURST', 'MEMQ_BACKPRESSURE_LOW_WATER'],
    });
  });
});

describe('retiredEnvVariables', () => {
  it('names a retired variable that is set, with what replaced it, and loadEnvConfig still starts', () => {
    const env = { MEMQ_TOKEN_COUNT_DELAY_MS: '0' };
    expect(retiredEnvVariables(env)).toEqual([
      expect.stringMatching(
        /^MEMQ_TOKEN_COUNT_DELAY_MS: ignored: token-count jobs always wait 250 ms/,
      ),
    ]);
    expect(() => loadEnvConfig(env)).not.toThrow();
  });

  it('says nothing when no retired variable is set (an empty value counts as unset)', () => {
    expect(retiredEnvVariables({ MEMQ_TOKEN_COUNT_DELAY_MS: '', PORT: '3000' })).toEqual([]);
  });
});
