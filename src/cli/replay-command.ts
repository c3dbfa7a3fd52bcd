import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import type { EnvConfig } from '../config/env.js';
import { corpusSlice, positiveIntOption, SOURCE_HELP } from './corpus-slice.js';
import { configuredRedis, type RedisTarget } from './redis-target.js';
import { loadMemoryResources } from '../config/load-memories.js';
import { resolveProviderApiKeys } from '../providers/api-keys.js';
import { resolveDefaultRedis } from '../runtime/embedded-redis.js';
import { createLogger } from '../runtime/logger.js';
import { startRuntime } from '../runtime/runtime.js';
import { formatReplayReport, runReplay } from '../replay/replay.js';
import { DEFAULT_CORPUS_GROUPS } from '../replay/corpus.js';
import { loadConversationFile } from '../replay/conversation-file.js';

/**
 * Help text of `memq replay`'s options (src/main.ts prints it under `usage: memq replay
 * [options]`, followed by the exit codes).
 */
export const REPLAY_HELP = `Replays e-mail threads through memq: the SpamAssassin ham corpus by default, or your own mail
(--mbox, --eml), with threading by References/In-Reply-To/subject, quotes stripped, the memory's
privacy policy, and message ids derived from the Message-IDs. No single e-mail stops a replay: it
is replayed with a fallback (no Message-ID, no usable Date) or skipped, and the report counts
both by reason (skipped: over the size cap, unparseable MIME, undecodable, repeated Message-ID,
empty after quote stripping, invalid as a message). Exit 0 means every message that was not
skipped was committed (and at least one was replayed).

With --conversations FILE it replays scripted agent conversations instead: one memory per
conversation (its "key"), messages appended in file order, each after the previous one of its
conversation committed (as an agent loop does), ids from the file or derived from the messages.
A file with any invalid conversation or message stops the replay before anything is enqueued
(exit 2, naming the file, the conversation index and the field).

  --limit N          replay at most N messages (whole threads first; default: all)
  --groups a,b       corpus groups (default: ${DEFAULT_CORPUS_GROUPS.join(',')})
${SOURCE_HELP}
  --rate N           enqueue at most N messages per second (default: flat out)
  --memory ID        memory resource to replay into (default: customer-support)
  --no-workers       do not run workers here; rely on separate \`memq work\` processes
  --json FILE        also write the report as JSON to FILE`;

/**
 * `memq replay`: streams the SpamAssassin ham threads (or `--mbox FILE`, `--eml DIR`,
 * `--conversations FILE`) through memq (workers in this process unless `--no-workers`), shows
 * progress on stderr, prints the report on stdout.
 * @returns exit code: 0 when at least one message was replayed and every message not skipped
 *   was enqueued and committed with no failed job, else 1.
 * @throws PayloadError for bad options (before anything is started), an unreadable `--mbox` file
 *   or `--eml` folder, a file that is not an mbox, or an invalid conversations file (before
 *   anything is enqueued).
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
      mbox: { type: 'string' },
      eml: { type: 'string' },
      conversations: { type: 'string' },
      rate: { type: 'string' },
      memory: { type: 'string', default: 'customer-support' },
      workers: { type: 'boolean', default: true },
      json: { type: 'string' },
    },
  });
  const slice = corpusSlice(values);
  // before Redis: a bad conversations file stops the replay without starting anything (the
  // replay checks it again, with the producer's own checks, before its first append)
  if (slice.conversations !== undefined) loadConversationFile(slice.conversations, slice);
  const rate = positiveIntOption('rate', values.rate);
  const log = createLogger(env.logLevel === 'info' ? 'warn' : env.logLevel);
  const registry = await loadMemoryResources(env.memoriesDir, process.env);
  registry.get(values.memory);
  // before Redis: a missing provider key stops the replay without touching anything
  const providerKeys = values.workers ? resolveProviderApiKeys(registry, process.env) : undefined;
  const redis: RedisTarget = configuredRedis(env) ?? (await resolveDefaultRedis(err));
  const runtime = await startRuntime({
    env,
    redisUrl: redis.url,
    ...(redis.clusterNodes ? { clusterNodes: redis.clusterNodes } : {}),
    ...(redis.sentinel ? { sentinel: redis.sentinel } : {}),
    registry,
    log,
    workers: values.workers,
    ...(providerKeys ? { providerKeys } : {}),
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
        ...slice,
        ...(rate !== undefined ? { ratePerSecond: rate } : {}),
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
    if (report.messagesEnqueued === 0)
      err(
        report.source === 'e-mail'
          ? 'memq replay: nothing was replayed (no e-mail left after skipping)'
          : 'memq replay: nothing was replayed',
      );
    return report.failedJobs === 0 && report.enqueueErrors === 0 && report.messagesEnqueued > 0
      ? 0
      : 1;
  } finally {
    bar?.stop();
    await runtime.close();
    await redis.embedded?.stop();
  }
}
