import { defineConfig } from 'vitest/config';

/**
 * The chaos suite (`npm run test:chaos`): worker SIGKILLs, Redis crashes and an outage during
 * replays. Each scenario spawns its own `redis-server`s and `memq work` processes, so files run
 * one at a time and nothing touches the shared Redis.
 */
export default defineConfig({
  test: {
    // In CI a JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: process.env.CI
      ? ['default', ['json', { outputFile: '.memq/vitest-report.json' }]]
      : ['default'],
    include: ['test/chaos/**/*.test.ts'],
    environment: 'node',
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 60_000,
  },
});
