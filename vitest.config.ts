import { defineConfig } from 'vitest/config';

/**
 * Three projects: `unit` needs nothing running; `integration` and `security` need a real Redis, provided by
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
          // A hang guard, not a speed check (speed is measured by `npm run bench`): vitest's 5 s
          // default failed a 2,000-pseudonym redaction test on this 2-core VM on a slow day.
          testTimeout: 30_000,
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
      {
        test: {
          // Reproductions of broken promises (privacy in every field, final erasure, validation
          // before side effects, the board's write guard, tenant fairness): real Redis, as above.
          name: 'security',
          include: ['test/security/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/setup/redis-global-setup.ts'],
          setupFiles: ['test/setup/leak-guard.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          fileParallelism: true,
        },
      },
    ],
  },
});
