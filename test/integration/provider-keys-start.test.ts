import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { memqEnv, startMemqProcess } from '../helpers/cli.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

/** A resource counting through Anthropic's API, its key in TEST_START_ANTHROPIC_KEY. */
const CLAUDE_YAML = `resource: memory
id: claude-memory
type: message_count_based
max_messages: 10
flushing:
  type: fifo
persistence:
  type: redis
  ttl: 1h
token_provider:
  provider: anthropic
  model: claude-sonnet-4-5
  api_key_env: TEST_START_ANTHROPIC_KEY
`;

const MISSING =
  'memory "claude-memory": token_provider.api_key_env: environment variable TEST_START_ANTHROPIC_KEY is not set (provider anthropic needs its API key)';

describe('provider API keys at start-up', () => {
  let ns: RedisNamespace;
  let dir: string;
  beforeEach(async () => {
    ns = createRedisNamespace();
    dir = await mkdtemp(path.join(tmpdir(), 'memq-keys-'));
    await writeFile(path.join(dir, 'claude-memory.yaml'), CLAUDE_YAML);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
    await ns.cleanup();
  });

  it('memq work without a needed key exits 1 naming the variable, before connecting to Redis', () => {
    // Nothing listens on port 1: a start that connected first would report Redis, or wait for it
    // (killed after 20 s: status null).
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'work'], {
      encoding: 'utf8',
      timeout: 20_000,
      env: memqEnv(ns, {
        MEMQ_MEMORIES_DIR: dir,
        REDIS_URL: 'redis://127.0.0.1:1',
        REDIS_CLUSTER_NODES: '',
      }),
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`memq: CONFIG_INVALID: ${MISSING}`);
    expect(run.stderr).not.toMatch(/ECONNREFUSED|Redis/);
  }, 30_000);

  it('memq serve (a producer, no workers) starts without the key', async () => {
    const memq = await startMemqProcess(
      'serve',
      memqEnv(ns, {
        MEMQ_MEMORIES_DIR: dir,
        PORT: '0',
        MEMQ_API_KEYS: 'keys-test-key-0123456789:keys',
        MEMQ_BOARD_PASSWORD: 'keys-board-password',
      }),
    );
    try {
      expect(memq.stderr()).not.toContain('TEST_START_ANTHROPIC_KEY');
      expect((await fetch(`${memq.base!}/healthz`)).status).toBe(200);
    } finally {
      expect(await memq.stop()).toBe(0);
    }
  }, 60_000);
});
