/**
 * `memq inspect <resource> <key>`: one memory instance as an operator needs to see it -- the
 * newest messages (redacted, as stored), the summary and its watermark, counters and whether they
 * agree, TTL, and the lock holder if any.
 */
import { contentText } from '../core/message.js';
import { parseArgs } from 'node:util';
import type { EnvConfig } from '../config/env.js';
import { loadMemoryResources } from '../config/load-memories.js';
import { PayloadError } from '../core/errors.js';
import { effectiveLimits } from '../flush/plan.js';
import { closeRedis } from '../redis/connection.js';
import { operatorConnection } from './redis-target.js';
import { memoryKeys } from '../redis/keys.js';
import { createMemoryStore } from '../store/memory-store.js';

/** Help text of `memq inspect`. */
export const INSPECT_HELP = `usage: memq inspect <resource> <key> [--project P] [--last N] [--json]

Shows one memory instance: counters (and whether they agree), TTL, lock holder, summary and the
newest N messages as stored (already redacted). Tokens are exact, approximate (another
model's tokenizer stood in; named) or estimated (not counted yet); in the message list \`~\`
marks a message not counted yet and \`≈\` an approximate count.

  --project P   project (tenant) of the instance (default: $MEMQ_PROJECT or "default")
  --last N      how many of the newest messages to show (default 10, 0 = none)
  --json        print one JSON object instead of text

Redis: $REDIS_URL, else redis://127.0.0.1:6379.
exit codes: 0 shown (also when the instance does not exist), 1 error, 2 usage`;

const clip = (text: string, max = 160) =>
  text.length > max ? `${text.slice(0, max - 1)}…` : text.replace(/\n/g, ' ');

/**
 * Runs `memq inspect`.
 * @returns exit code (see {@link INSPECT_HELP}).
 */
export async function inspectCommand(
  args: string[],
  env: EnvConfig,
  out: (line: string) => void,
): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      project: { type: 'string', default: env.project },
      last: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    out(INSPECT_HELP);
    return 0;
  }
  const [resourceId, key] = positionals;
  const last = Number(values.last);
  if (resourceId === undefined || key === undefined || positionals.length > 2) {
    throw new PayloadError(`inspect: expected <resource> <key>\n\n${INSPECT_HELP}`);
  }
  if (!Number.isInteger(last) || last < 0 || last > 1000) {
    throw new PayloadError(
      `--last: expected an integer in 0-1000, got ${JSON.stringify(values.last)}`,
    );
  }
  const resource = (await loadMemoryResources(env.memoriesDir, process.env)).get(resourceId);
  const redis = operatorConnection(env);
  try {
    const store = createMemoryStore({ redis, keyPrefix: env.keyPrefix });
    const ref = { project: values.project, resource: resourceId, key };
    const stats = await store.stats(ref, { deep: true });
    const total = stats.messageCount;
    const window = await store.read(ref, {
      offset: Math.max(0, total - Math.max(1, last)),
      limit: Math.max(1, last),
    });
    const lockKey = memoryKeys(env.keyPrefix, ref).lock;
    const [lockToken, lockTtlMs] = await Promise.all([redis.get(lockKey), redis.pttl(lockKey)]);
    const maxTokens = effectiveLimits(resource).maxTokens;
    const report = {
      memory: { project: ref.project, resource: resourceId, key },
      exists: stats.exists,
      counters: {
        messages: stats.messageCount,
        token_count: stats.tokenCount,
        estimated_tokens: stats.estimatedTokens,
        uncounted_messages: stats.uncountedMessages,
        exact: stats.exact,
        counted_by: stats.countedBy,
        approximate_tokens: stats.approximateTokens,
        approximated_by: stats.approximatedBy,
        summary_approximated_by: stats.summaryApproximatedBy ?? null,
        max_tokens: maxTokens ?? null,
        accepted: stats.acceptedCount,
        folded: stats.foldedCount,
        evicted: stats.evictedCount,
        consistent: stats.consistent,
        roles: stats.roles ?? {},
      },
      ttl_seconds: stats.ttlSeconds ?? null,
      lock: lockToken ? { holder_token_prefix: lockToken.slice(0, 8), ttl_ms: lockTtlMs } : null,
      summary: window.summary ?? null,
      messages:
        last === 0
          ? []
          : window.messages.map((m) => ({
              ...m.message,
              tokens: m.tokens ?? null,
              ...(m.approximatedBy !== undefined ? { approximated_by: m.approximatedBy } : {}),
            })),
    };
    if (values.json) {
      out(JSON.stringify(report, null, 2));
      return 0;
    }
    out(`memory ${ref.project}/${resourceId}/${key}${stats.exists ? '' : ' (does not exist)'}`);
    const approximate =
      stats.approximatedBy.length > 0
        ? ` + ${stats.approximateTokens} approximate (${stats.approximatedBy.join('; ')})`
        : '';
    out(
      `  messages ${stats.messageCount}, tokens ${stats.tokenCount - stats.approximateTokens} exact${approximate} + ${stats.estimatedTokens} estimated${maxTokens ? ` of ${maxTokens}` : ''}, uncounted ${stats.uncountedMessages}`,
    );
    out(
      `  accepted ${stats.acceptedCount} = present ${stats.messageCount} + folded ${stats.foldedCount} + evicted ${stats.evictedCount}; counters ${stats.consistent ? 'consistent' : 'INCONSISTENT'}`,
    );
    out(`  roles ${JSON.stringify(stats.roles ?? {})}`);
    out(
      `  ttl ${stats.ttlSeconds === undefined ? '-' : stats.ttlSeconds === -1 ? 'never expires' : `${stats.ttlSeconds} s`}`,
    );
    out(
      `  lock ${lockToken ? `held (token ${lockToken.slice(0, 8)}..., ${lockTtlMs} ms left)` : 'free'}`,
    );
    if (window.summary) {
      out(
        `  summary ${window.summary.tokens} tokens${window.summaryApproximatedBy ? ` (approximate: ${window.summaryApproximatedBy})` : ''}, covers ${window.summary.message_count_covered} messages through ${window.summary.covers_through_id}:`,
      );
      out(`    ${clip(window.summary.content, 400)}`);
    } else {
      out('  summary none');
    }
    if (last > 0 && window.messages.length > 0) {
      out(`  newest ${window.messages.length} of ${total}:`);
      // `~`: not counted yet; `≈`: an approximate count.
      for (const { message, tokens, approximatedBy } of window.messages) {
        const shown = tokens === undefined ? '~' : `${approximatedBy ? '≈' : ''}${tokens}`;
        out(
          `    ${message.id} ${message.role.padEnd(9)} ${shown.padStart(5)} ${clip(contentText(message.content))}`,
        );
      }
    }
    return 0;
  } finally {
    await closeRedis(redis);
  }
}
