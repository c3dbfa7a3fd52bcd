/**
 * The programs of examples/ run as a newcomer runs them: the package is built once (`npm run
 * build`), then each example runs as a child process importing memq by its package name (Node
 * resolves `memq`, `memq/langchain` through the package's `exports` map to dist/), on this test's
 * Redis namespace (the examples read memq's own variables: REDIS_URL, MEMQ_KEY_PREFIX,
 * MEMQ_QUEUE_PREFIX, ...). curl.sh and http-client.mjs run against `memq start` in a fresh
 * directory, as the README's curl session does (test/integration/readme-curl.test.ts).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memqEnv, startMemqProcess, type MemqProcess } from '../helpers/cli.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

/** What a finished child process printed and how it exited. */
interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `command args` to completion (killed after 90 s) without blocking the event loop. */
function run(
  command: string,
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; cwd?: string },
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Runs `node examples/<file>` on `ns` as project `acme`. */
const runExample = (ns: RedisNamespace, file: string): Promise<Run> =>
  run(process.execPath, [path.resolve('examples', file)], {
    env: memqEnv(ns, { MEMQ_PROJECT: 'acme', MEMQ_MEMORIES_DIR: path.resolve('memories') }),
  });

/**
 * The memory keys an example left (instance families `<prefix>m:{<mid>}:*` and index shards
 * `<prefix>idx:*`, docs/storage.md): only the erasure tombstone (`:erased`) may stay once it
 * deleted its memory. (Rate-limit counters of the HTTP API expire by themselves.)
 */
async function leftoverMemoryKeys(ns: RedisNamespace): Promise<string[]> {
  return (await ns.keys()).filter(
    (key) =>
      (key.startsWith(`${ns.keyPrefix}m:`) && !key.endsWith(':erased')) ||
      key.startsWith(`${ns.keyPrefix}idx:`),
  );
}

/** Runs `fn` on a fresh namespace and cleans the namespace up afterwards. */
async function withNamespace(fn: (ns: RedisNamespace) => Promise<void>): Promise<void> {
  const ns = createRedisNamespace();
  try {
    await fn(ns);
  } finally {
    await ns.cleanup();
  }
}

beforeAll(() => {
  const build = spawnSync('npm', ['run', '-s', 'build'], { encoding: 'utf8' });
  expect(build.status, `npm run build failed:\n${build.stdout}${build.stderr}`).toBe(0);
}, 600_000);

describe('examples/', () => {
  it('service.mjs appends, waits, reads the window, plans a flush and deletes, over connect()', async () => {
    await withNamespace(async (ns) => {
      const { status, stdout, stderr } = await runExample(ns, 'service.mjs');
      expect(status, stderr).toBe(0);
      const lines = stdout.trim().split('\n');
      expect(lines).toEqual([
        'appended 3 messages to support:service-example (project acme), 2 redacted before enqueueing',
        'committed: 3 added, 0 duplicates',
        expect.stringMatching(/^window: 3 messages, \d+ tokens$/),
        expect.stringMatching(
          /^ {2}user: Hi, I am \[REDACTED\] and my order #4411 is late \(\d+ tokens\)$/,
        ),
        expect.stringMatching(
          /^ {2}assistant: Sorry about that, let me check order #4411\. \(\d+ tokens\)$/,
        ),
        expect.stringMatching(
          /^ {2}user: Thanks\. You can also call me on \[REDACTED\]\. \(\d+ tokens\)$/,
        ),
        expect.stringMatching(
          /^flush plan \(hybrid_summary, dry run\): would fold \d+ into the summary and evict 0; applied: false$/,
        ),
        'stats: 3 messages, consistent: true',
        'deleted support:service-example',
      ]);
      // The window's total is the sum of the exact counts it printed.
      const counts = lines.slice(3, 6).map((line) => Number(/\((\d+) tokens\)$/.exec(line)![1]));
      expect(lines[2]).toBe(`window: 3 messages, ${counts.reduce((a, b) => a + b, 0)} tokens`);
      expect(await leftoverMemoryKeys(ns)).toEqual([]);
      const stored = await ns.allText();
      expect(stored).not.toContain('jane@example.com');
      expect(stored).not.toContain('Sorry about that'); // the delete scrubbed the job data too
    });
  });

  it('agent-loop.mjs keeps a RunnableWithMessageHistory conversation in memq', async () => {
    await withNamespace(async (ns) => {
      const { status, stdout, stderr } = await runExample(ns, 'agent-loop.mjs');
      expect(status, stderr).toBe(0);
      expect(stdout.trim().split('\n')).toEqual([
        'turn 1: the model saw 2 messages',
        '  user:  My order is late, mail me at jane.doe@example.com',
        '  agent: Sorry to hear that. What is the order number?',
        'turn 2: the model saw 4 messages',
        '  user:  It is order 1042',
        '  agent: Order 1042 ships tomorrow.',
        'turn 3: the model saw 6 messages',
        '  user:  Thanks!',
        '  agent: You are welcome.',
        'history of support:agent-example (6 messages):',
        '  human: My order is late, mail me at [REDACTED]',
        '  ai: Sorry to hear that. What is the order number?',
        '  human: It is order 1042',
        '  ai: Order 1042 ships tomorrow.',
        '  human: Thanks!',
        '  ai: You are welcome.',
        'deleted support:agent-example',
      ]);
      expect(await leftoverMemoryKeys(ns)).toEqual([]);
      expect(await ns.allText()).not.toContain('jane.doe@example.com');
    });
  });

  describe('against memq start in a fresh directory', () => {
    let ns: RedisNamespace;
    let cwd: string;
    let memq: MemqProcess | undefined;
    /** The environment of an example run in `cwd` against the server. */
    const clientEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
      ...process.env,
      MEMQ_URL: memq!.base,
      ...extra,
    });

    beforeAll(async () => {
      ns = createRedisNamespace();
      cwd = mkdtempSync(path.join(tmpdir(), 'memq-examples-'));
      const env = memqEnv(ns, { PORT: '0', MEMQ_MEMORIES_DIR: path.resolve('memories') });
      delete env.MEMQ_API_KEYS; // as on a fresh machine: memq creates .memq/api-key in cwd
      delete env.MEMQ_API_KEYS_FILE;
      delete env.MEMQ_BOARD_PASSWORD;
      memq = await startMemqProcess('start', env, cwd);
      expect(memq.base, memq.stderr()).toBeDefined();
    });
    afterAll(async () => {
      await memq?.stop();
      rmSync(cwd, { recursive: true, force: true });
      await ns.cleanup();
    });

    it('curl.sh walks the HTTP API, and stops at the first failing call', async () => {
      const script = path.resolve('examples/curl.sh');
      const walk = await run('bash', [script], { cwd, env: clientEnv() });
      expect(walk.status, walk.stderr).toBe(0);

      // "==> what it does" lines, each followed by memq's JSON answer.
      const lines = walk.stdout.trim().split('\n');
      const steps = lines.filter((_, i) => i % 2 === 0);
      expect(steps.every((line) => line.startsWith('==> '))).toBe(true);
      const [append, read, stats, flush, clear, remove, readAgain] = lines
        .filter((_, i) => i % 2 === 1)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(steps).toHaveLength(7);
      expect(append).toMatchObject({ redactions: 1, result: { added: 2, duplicates: 0 } });
      expect(read).toMatchObject({ key: 'curl-example', total: 2 });
      expect(JSON.stringify(read)).toContain('Hi, I am [REDACTED] and my order #4411 is late');
      expect(stats).toMatchObject({ message_count: 2, roles: { user: 1, assistant: 1 } });
      expect(flush).toMatchObject({ result: { applied: false } });
      expect(clear).toMatchObject({ result: { removed: 2 } });
      expect(remove).toMatchObject({ job: { queue: 'memory-cleanup' } });
      expect(readAgain).toMatchObject({ total: 0, messages: [] });
      expect(walk.stdout).not.toContain('jane@example.com');
      expect(await leftoverMemoryKeys(ns)).toEqual([]);

      // A wrong key: the first call answers 401, the script prints memq's error and exits non-zero.
      const refused = await run('bash', [script], {
        cwd,
        env: clientEnv({ MEMQ_API_KEY: 'not-a-key-of-this-server' }),
      });
      expect(refused.status).not.toBe(0);
      expect(refused.stdout).toContain('"code":"UNAUTHENTICATED"');
      expect(refused.stdout).not.toContain('==> read the window');
    });

    it('http-client.mjs calls the same API through MemqHttpClient', async () => {
      const { status, stdout, stderr } = await run(
        process.execPath,
        [path.resolve('examples/http-client.mjs')],
        { cwd, env: clientEnv() },
      );
      expect(status, stderr).toBe(0);
      expect(stdout.trim().split('\n')).toEqual([
        expect.stringMatching(/^appended: 2 added, 1 redacted \(job [0-9A-Z]{26}-[0-9a-f]{8}\)$/),
        expect.stringMatching(/^read: 2 messages, \d+ tokens in the window$/),
        '  user: Hi, I am [REDACTED] and my order #4411 is late',
        '  assistant: Sorry about that, let me check order #4411.',
        'flush dry run: applied false',
        'deleted http-example',
        'unknown resource: 404 MEMORY_NOT_FOUND',
      ]);
      expect(await leftoverMemoryKeys(ns)).toEqual([]);
    });
  });
});
