import { defineConfig } from 'vitest/config';

/**
 * Two projects: `unit` needs nothing running; `integration` needs a real Redis, provided by
 * `test/setup/redis-global-setup.ts` (REDIS_URL, else Testcontainers, else a spawned redis-server).
 */
export default defineConfig({
  test: {
    // In CI a JSON report beside the console one lets .ci/run print a plain "N passed, N failed".
    reporters: process.env.CI
      ? ['default', ['json', { outputFile: '.memq/vitest-report.json' }]]
      : ['default'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/setup/redis-global-setup.ts'],
          setupFiles: ['test/setup/leak-guard.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Files share one Redis but each test uses its own key and BullMQ prefixes.
          fileParallelism: true,
        },
      },
    ],
  },
});
