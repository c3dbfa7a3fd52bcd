/**
 * `memq jobs`: the queues as an operator sees them from a terminal -- counts per state, the
 * newest failed jobs with their reasons, and retrying failed jobs.
 */
import { parseArgs } from 'node:util';
import type { EnvConfig } from '../config/env.js';
import { PayloadError } from '../core/errors.js';
import { closeRedis } from '../redis/connection.js';
import { operatorConnection } from './redis-target.js';
import { createMemoryQueues } from '../../queues/memory-queues.js';
import { QUEUES, type QueueName } from '../../queues/names.js';

/** Help text of `memq jobs`. */
export const JOBS_HELP = `usage: memq jobs [--queue NAME] [--failed N] [--retry] [--json]

Counts jobs per state in every queue (or one), lists the newest failed jobs with their reasons,
and with --retry moves every failed job of the selected queues back to waiting.

  --queue NAME  one of ${Object.values(QUEUES).join(', ')} (default: all)
  --failed N    how many of the newest failed jobs to list per queue (default 10)
  --retry       retry every failed job of the selected queues
  --json        print one JSON object instead of text

Redis: $REDIS_URL, else redis://127.0.0.1:6379; BullMQ prefix $MEMQ_QUEUE_PREFIX.
exit codes: 0 shown, 1 error, 2 usage`;

const STATES = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'] as const;

/**
 * Runs `memq jobs`.
 * @returns exit code (see {@link JOBS_HELP}).
 */
export async function jobsCommand(
  args: string[],
  env: EnvConfig,
  out: (line: string) => void,
): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      queue: { type: 'string' },
      failed: { type: 'string', default: '10' },
      retry: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    out(JOBS_HELP);
    return 0;
  }
  const names = Object.values(QUEUES) as QueueName[];
  if (values.queue !== undefined && !names.includes(values.queue as QueueName)) {
    throw new PayloadError(
      `--queue: expected one of ${names.join(', ')}, got ${JSON.stringify(values.queue)}`,
    );
  }
  const failedN = Number(values.failed);
  if (!Number.isInteger(failedN) || failedN < 0 || failedN > 1000) {
    throw new PayloadError(
      `--failed: expected an integer in 0-1000, got ${JSON.stringify(values.failed)}`,
    );
  }
  const selected = values.queue === undefined ? names : [values.queue as QueueName];
  const redis = operatorConnection(env);
  const queues = createMemoryQueues(redis, env.queuePrefix);
  try {
    const report = [];
    for (const name of selected) {
      const queue = queues.byName(name);
      const counts = await queue.getJobCounts(...STATES);
      const failed = failedN === 0 ? [] : await queue.getFailed(0, failedN - 1);
      let retried = 0;
      if (values.retry && (counts.failed ?? 0) > 0) {
        await queue.retryJobs({ state: 'failed' });
        retried = counts.failed ?? 0;
      }
      report.push({
        queue: name,
        counts: Object.fromEntries(STATES.map((s) => [s, counts[s] ?? 0])),
        failed: failed.map((job) => ({
          id: job.id,
          name: job.name,
          attempts: job.attemptsMade,
          finished_at: job.finishedOn ?? null,
          reason: job.failedReason,
        })),
        retried,
      });
    }
    if (values.json) {
      out(JSON.stringify({ queues: report }, null, 2));
      return 0;
    }
    out(`${'queue'.padEnd(20)}${STATES.map((s) => s.padStart(12)).join('')}`);
    for (const row of report) {
      out(
        `${row.queue.padEnd(20)}${STATES.map((s) => String(row.counts[s]).padStart(12)).join('')}`,
      );
    }
    for (const row of report) {
      if (row.failed.length === 0) continue;
      out(`\nfailed in ${row.queue} (newest ${row.failed.length}):`);
      for (const job of row.failed) {
        out(
          `  ${job.id} ${job.name} after ${job.attempts} attempt(s): ${job.reason.split('\n')[0]}`,
        );
      }
    }
    for (const row of report) {
      if (row.retried > 0) out(`retried ${row.retried} failed job(s) in ${row.queue}`);
    }
    return 0;
  } finally {
    await queues.close();
    await closeRedis(redis);
  }
}
