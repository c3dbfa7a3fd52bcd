import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import type { EnvConfig } from '../config/env.js';
import { corpusSlice, positiveIntOption } from './corpus-slice.js';
import { configuredRedis, type RedisTarget } from './redis-target.js';
import { loadMemoryResources } from '../config/load-memories.js';
import { resolveDefaultRedis } from '../runtime/embedded-redis.js';
import { createLogger } from '../runtime/logger.js';
import { startRuntime } from '../runtime/runtime.js';
import { formatReplayReport, runReplay } from '../replay/replay.js';
import { DEFAULT_CORPUS_GROUPS } from '../replay/corpus.js';

/** Help text of `memq replay`'s options. */
export const REPLAY_HELP = `  --limit N          replay at most N messages (whole threads first; default: all)
  --groups a,b       corpus groups (default: ${DEFAULT_CORPUS_GROUPS.join(',')})
  --rate N           enqueue at most N messages per second (default: flat out)
  --memory ID        memory resource to replay into (default: customer-support)
  --no-workers       do not run workers here; rely on separate \`memq work\` processes
  --json FILE        also write the report as JSON to FILE`;

/**
 * `memq replay`: streams the SpamAssassin ham threads through memq (workers in this process
 * unless `--no-workers`), shows progress on stderr, prints the report on stdout.
 * @returns exit code: 0 when every message was enqueued and committed and no job failed, else 1.
 */
export async function replayCommand(
  args: string[],
  env: EnvConfig,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowNegative: true,
    options: {
      limit: { type: 'string' },
      groups: { type: 'string' },
      rate: { type: 'string' },
      memory: { type: 'string', default: 'customer-support' },
      workers: { type: 'boolean', default: true },
      json: { type: 'string' },
    },
  });
  const { limit, groups } = corpusSlice(values);
  const rate = positiveIntOption('rate', values.rate);
  const log = createLogger(env.logLevel === 'info' ? 'warn' : env.logLevel);
  const registry = await loadMemoryResources(env.memoriesDir, process.env);
  registry.get(values.memory);
  const redis: RedisTarget = configuredRedis(env) ?? (await resolveDefaultRedis(err));
  const runtime = await startRuntime({
    env,
    redisUrl: redis.url,
    ...(redis.clusterNodes ? { clusterNodes: redis.clusterNodes } : {}),
    registry,
    log,
    workers: values.workers,
  });
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        {
          format:
            'replay {phase} |{bar}| {committed}/{total} committed, {enqueued} enqueued, {rate} msg/s, backlog {backlog}',
          stream: process.stderr,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let lastLine = 0;
  try {
    bar?.start(1, 0, { phase: 'parsing', committed: 0, enqueued: 0, rate: '0', backlog: 0 });
    const report = await runReplay(
      {
        client: runtime.client,
        store: runtime.store,
        connection: runtime.producerConnection,
        queuePrefix: env.queuePrefix,
        project: env.project,
        log,
        ...(values.workers ? { metrics: runtime.metrics } : {}),
      },
      {
        memory: values.memory,
        sampleRss: values.workers,
        ...(limit !== undefined ? { limit } : {}),
        ...(rate !== undefined ? { ratePerSecond: rate } : {}),
        ...(groups ? { groups } : {}),
        onProgress: (p) => {
          const payload = {
            phase: p.phase,
            committed: p.committed,
            enqueued: p.enqueued,
            rate: p.ratePerSecond.toFixed(0),
            backlog: p.backlog,
          };
          if (bar) {
            bar.setTotal(p.total);
            bar.update(p.committed, payload);
          } else if (Date.now() - lastLine > 5000) {
            lastLine = Date.now();
            err(
              `replay ${p.phase}: ${p.committed}/${p.total} committed, ${p.enqueued} enqueued, ${payload.rate} msg/s, backlog ${p.backlog}`,
            );
          }
        },
      },
    );
    bar?.stop();
    out(formatReplayReport(report));
    if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2) + '\n');
    return report.failedJobs === 0 && report.enqueueErrors === 0 && report.messagesEnqueued > 0
      ? 0
      : 1;
  } finally {
    bar?.stop();
    await runtime.close();
    await redis.embedded?.stop();
  }
}
