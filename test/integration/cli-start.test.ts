import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createRedisNamespace } from '../helpers/redis-namespace.js';

describe('memq start', () => {
  it('runs workers against REDIS_URL and drains on SIGTERM, exiting 0', async () => {
    const ns = createRedisNamespace();
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'start'], {
        env: {
          ...process.env,
          REDIS_URL: ns.url,
          MEMQ_KEY_PREFIX: ns.keyPrefix,
          MEMQ_QUEUE_PREFIX: ns.queuePrefix,
          MEMQ_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) =>
        child.once('exit', (code) => resolve(code)),
      );
      const deadline = Date.now() + 30_000;
      while (
        !stderr.includes('workers running') &&
        Date.now() < deadline &&
        child.exitCode === null
      )
        await new Promise((r) => setTimeout(r, 50));
      expect(stderr).toContain('memq start: workers running');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toContain('SIGTERM: draining active jobs');
    } finally {
      await ns.cleanup();
    }
  });
});
