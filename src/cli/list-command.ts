/**
 * `memq list <resource>`: the instances of one memory resource in one project, most recently
 * active first, with their message and token counts -- what an operator looks at before
 * `memq inspect`.
 */
import { parseArgs } from 'node:util';
import type { EnvConfig } from '../config/env.js';
import { loadMemoryResources } from '../config/load-memories.js';
import { PayloadError } from '../core/errors.js';
import { NAME_PATTERN } from '../core/memory-key.js';
import { closeRedis } from '../redis/connection.js';
import { createMemoryStore } from '../store/memory-store.js';
import { operatorConnection } from './redis-target.js';

/** Most instances one `memq list` shows (`--limit`). */
export const MAX_LIST_SHOWN = 10_000;

/** Instances read per store call (the store's and the API's largest page). */
const PAGE_SIZE = 100;

/** Help text of `memq list`. */
export const LIST_HELP = `usage: memq list <resource> [--project P] [--limit N] [--cursor C] [--json]

Lists the instances of a memory resource in one project, most recently active first: key,
messages, tokens (\`≈\`: some counts approximate or not counted yet) and last activity (UTC).

  --project P   project (tenant) (default: $MEMQ_PROJECT or "default")
  --limit N     how many instances to show, 1-${MAX_LIST_SHOWN} (default 20)
  --cursor C    go on from where a previous list stopped (the cursor it printed)
  --json        print one JSON object ({ items, next_cursor }) instead of text

Redis: $REDIS_URL, else redis://127.0.0.1:6379.
exit codes: 0 shown (also when there are none), 1 error, 2 usage`;

/**
 * Runs `memq list`.
 * @returns exit code (see {@link LIST_HELP}).
 * @throws PayloadError (exit 2) for a missing resource argument, a bad `--project`, `--limit`
 *   or `--cursor`; MemoryNotFoundError for an undeclared resource.
 */
export async function listCommand(
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
      limit: { type: 'string', default: '20' },
      cursor: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    out(LIST_HELP);
    return 0;
  }
  const [resourceId] = positionals;
  if (resourceId === undefined || positionals.length > 1) {
    throw new PayloadError(`list: expected <resource>\n\n${LIST_HELP}`);
  }
  if (!NAME_PATTERN.test(values.project)) {
    throw new PayloadError(
      `--project: expected 1-100 of letters, digits, _ or -, got ${JSON.stringify(values.project.slice(0, 64))}`,
    );
  }
  const limit = /^\d{1,6}$/.test(values.limit) ? Number(values.limit) : Number.NaN;
  if (!(limit >= 1 && limit <= MAX_LIST_SHOWN)) {
    throw new PayloadError(
      `--limit: expected an integer in 1-${MAX_LIST_SHOWN}, got ${JSON.stringify(values.limit.slice(0, 64))}`,
    );
  }
  if (values.cursor !== undefined && (values.cursor === '' || values.cursor.length > 1024)) {
    throw new PayloadError('--cursor: expected the cursor a previous list printed');
  }
  (await loadMemoryResources(env.memoriesDir, process.env)).get(resourceId);
  const redis = operatorConnection(env);
  try {
    const store = createMemoryStore({ redis, keyPrefix: env.keyPrefix });
    const items: Array<{
      key: string;
      message_count: number;
      tokens: number;
      exact: boolean;
      last_activity: string;
    }> = [];
    let cursor = values.cursor;
    do {
      const page = await store.listInstances(values.project, resourceId, {
        ...(cursor !== undefined ? { cursor } : {}),
        limit: Math.min(PAGE_SIZE, limit - items.length),
      });
      for (const item of page.items) {
        items.push({
          key: item.key,
          message_count: item.messageCount,
          tokens: item.tokens,
          exact: item.exact,
          last_activity: new Date(item.lastActivityMs).toISOString(),
        });
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined && items.length < limit);
    if (values.json) {
      out(JSON.stringify({ items, next_cursor: cursor ?? null }, null, 2));
      return 0;
    }
    out(
      `${items.length} instance${items.length === 1 ? '' : 's'} of ${values.project}/${resourceId}${cursor !== undefined ? ' (more)' : ''}`,
    );
    if (items.length > 0) {
      const width = Math.max(3, ...items.map((i) => i.key.length));
      out(`  ${'key'.padEnd(width)}  messages   tokens  last activity`);
      for (const item of items) {
        const tokens = `${item.exact ? '' : '≈'}${item.tokens}`;
        out(
          `  ${item.key.padEnd(width)}  ${String(item.message_count).padStart(8)}  ${tokens.padStart(7)}  ${item.last_activity}`,
        );
      }
    }
    if (cursor !== undefined) {
      out(`more: memq list ${resourceId} --project ${values.project} --cursor ${cursor}`);
    }
    return 0;
  } finally {
    await closeRedis(redis);
  }
}
