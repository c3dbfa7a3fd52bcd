/**
 * Listing the instances of one (project, resource), newest activity first, from the
 * per-resource activity index (`resourceIndexKey`, docs/architecture.md, "Redis layout").
 *
 * The index holds instance key -> last activity ms. It is written beside the global activity
 * index (`MemoryStore.touchIndex`, `putData`, the maintenance sweep, which also adds every entry
 * of the global index it visits, so instances indexed before this index existed appear after
 * one sweep) and removed with it (`MemoryStore.delete`, `MaintenanceStore.dropStaleIndexEntry`).
 * An entry whose instance has expired is skipped, and removed here with the same re-check as
 * the sweep's, so a listing also clears what a race or a crash between the two indexes left.
 */
import { PayloadError } from '../core/errors.js';
import { MEMORY_KEY_PATTERN, NAME_PATTERN } from '../core/memory-key.js';
import type { RedisConnection } from '../redis/connection.js';
import { memoryKeys, resourceIndexKey, type MemoryRef } from '../redis/keys.js';

/** Most instances one {@link listInstances} call returns. */
export const MAX_LIST_LIMIT = 100;

/**
 * Most index entries one {@link listInstances} call examines. When expired entries fill the
 * way, the call returns fewer than `limit` items with a `nextCursor` to go on from.
 */
export const MAX_LIST_SCAN = 1000;

/** One instance of a listing. */
export interface InstanceSummary {
  /** The instance key (the `key` of its `MemoryRef`). */
  readonly key: string;
  /** Messages in the log (`MemoryStats.messageCount`); 0 for an instance holding only session data. */
  readonly messageCount: number;
  /**
   * The instance's tokens: committed counts (messages and summary) plus the estimates of the
   * messages not counted yet (`MemoryStats.tokenCount + estimatedTokens`, the usage the flush
   * trigger compares).
   */
  readonly tokens: number;
  /** Last activity, ms since epoch: the index entry's score. */
  readonly lastActivityMs: number;
  /** As `MemoryStats.exact`: no estimate pending and no approximate count in {@link tokens}. */
  readonly exact: boolean;
}

/** Options of {@link listInstances}. */
export interface ListInstancesOptions {
  /** The `nextCursor` of the previous page; absent for the first page. */
  readonly cursor?: string;
  /** Instances per page, an integer in 1..{@link MAX_LIST_LIMIT}. */
  readonly limit: number;
}

/** One page of {@link listInstances}. */
export interface InstanceList {
  /** Instances by last activity, newest first; ties by key, descending (bytes). */
  readonly items: InstanceSummary[];
  /** Pass back as `cursor` for the next page; undefined when the listing is complete. */
  readonly nextCursor: string | undefined;
}

/** The fields of `MemoryStats` a listing reads. */
export interface ListedStats {
  /** False when no key of the instance exists (log, meta or session data). */
  readonly exists: boolean;
  /** Messages in the log. */
  readonly messageCount: number;
  /** Committed tokens, messages and summary. */
  readonly tokenCount: number;
  /** Estimates of the messages not counted yet. */
  readonly estimatedTokens: number;
  /** No estimate pending and no approximate count. */
  readonly exact: boolean;
}

/** Dependencies of {@link listInstances}. */
export interface InstanceListDeps {
  /** Connection for the index commands. */
  readonly redis: RedisConnection;
  /** Key prefix, e.g. `memq:`. */
  readonly keyPrefix: string;
  /** One instance's counters (`MemoryStore.stats`). */
  readonly stats: (ref: MemoryRef) => Promise<ListedStats>;
}

/** A position in the listing: the last (score, key) returned. */
interface ListPosition {
  readonly score: number;
  readonly key: string;
}

/** The opaque cursor of a position: base64url of `<score>:<key>`. */
export function encodeListCursor(score: number, key: string): string {
  return Buffer.from(`${score}:${key}`, 'utf8').toString('base64url');
}

/**
 * The position a cursor of {@link encodeListCursor} names.
 * @throws PayloadError naming `cursor` for anything {@link encodeListCursor} does not produce
 *   for some key and a score that is an integer >= 0.
 */
export function decodeListCursor(cursor: string): ListPosition {
  const invalid = () =>
    new PayloadError('cursor: expected the nextCursor of a previous page of this listing', {
      details: { field: 'cursor' },
    });
  if (typeof cursor !== 'string' || !/^[A-Za-z0-9_-]{1,1024}$/.test(cursor)) throw invalid();
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = /^(0|[1-9][0-9]{0,15}):(.+)$/s.exec(text);
  if (!match) throw invalid();
  const score = Number(match[1]);
  const key = match[2]!;
  if (!Number.isSafeInteger(score)) throw invalid();
  if (encodeListCursor(score, key) !== cursor) throw invalid();
  return { score, key };
}

/**
 * One page of the instances of `project`'s `resource`, newest activity first (keyset
 * pagination on (last activity desc, key desc), so entries added or removed between pages shift
 * nothing; an instance active during the listing moves to the front and may be missed or
 * returned twice). Expired instances are skipped and their entries removed, as are members that
 * are not instance keys. Reads only
 * `project`'s index: another project's instances cannot appear.
 * Cost: O(log n + examined) index reads plus one `stats` per examined entry.
 * @throws PayloadError naming `project`, `resource`, `limit` or `cursor` when invalid, before
 *   any read.
 */
export async function listInstances(
  deps: InstanceListDeps,
  project: string,
  resource: string,
  options: ListInstancesOptions,
): Promise<InstanceList> {
  for (const [field, value] of [
    ['project', project],
    ['resource', resource],
  ] as const) {
    if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
      throw new PayloadError(
        `${field}: expected 1-100 characters of letters, digits, _ or -, starting with a letter or digit`,
        { details: { field } },
      );
    }
  }
  const { limit } = options;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new PayloadError(`limit: expected an integer in 1..${MAX_LIST_LIMIT}, got ${limit}`, {
      details: { field: 'limit' },
    });
  }
  let after = options.cursor === undefined ? undefined : decodeListCursor(options.cursor);
  const index = resourceIndexKey(deps.keyPrefix, project, resource);
  const items: InstanceSummary[] = [];
  let examined = 0;
  for (;;) {
    const want = Math.min(limit - items.length, MAX_LIST_SCAN - examined);
    const batch = await entriesAfter(deps.redis, index, after, want + 1);
    const check = batch.slice(0, want);
    const stats = await Promise.all(
      check.map((entry) =>
        MEMORY_KEY_PATTERN.test(entry.key)
          ? deps.stats({ project, resource, key: entry.key })
          : Promise.resolve(undefined),
      ),
    );
    for (const [i, entry] of check.entries()) {
      const found = stats[i];
      if (found?.exists) {
        items.push({
          key: entry.key,
          messageCount: found.messageCount,
          tokens: found.tokenCount + found.estimatedTokens,
          lastActivityMs: entry.score,
          exact: found.exact,
        });
      } else if (found) {
        await dropExpired(deps, index, { project, resource, key: entry.key }, entry.score);
      } else {
        await deps.redis.zrem(index, entry.key); // not an instance key: names nothing
      }
    }
    examined += check.length;
    const last = check.at(-1);
    if (batch.length <= want || !last) return { items, nextCursor: undefined };
    after = last;
    if (items.length >= limit || examined >= MAX_LIST_SCAN) {
      return { items, nextCursor: encodeListCursor(last.score, last.key) };
    }
  }
}

/**
 * Up to `count` entries of `index` after `after` in (score desc, key desc) order, read with
 * `ZRANGE ... BYSCORE REV LIMIT` from the cursor's score down. Entries sharing the cursor's score
 * are re-read and skipped up to its key; the read widens until enough entries past the cursor
 * are found or the index is exhausted (equal scores, one millisecond, are rare).
 */
async function entriesAfter(
  redis: RedisConnection,
  index: string,
  after: ListPosition | undefined,
  count: number,
): Promise<ListPosition[]> {
  const max = after === undefined ? '+inf' : String(after.score);
  let limit = count + (after === undefined ? 0 : 16);
  for (;;) {
    const flat = await redis.zrange(
      index,
      max,
      '-inf',
      'BYSCORE',
      'REV',
      'LIMIT',
      0,
      limit,
      'WITHSCORES',
    );
    const entries: ListPosition[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const key = flat[i]!;
      const score = Number(flat[i + 1]);
      // Redis orders equal scores by member bytes; valid keys are ASCII, so bytes = code units.
      if (after && score === after.score && key >= after.key) continue;
      entries.push({ key, score });
    }
    if (entries.length >= count || flat.length / 2 < limit) return entries.slice(0, count);
    limit *= 2;
  }
}

/**
 * Removes the index entry of an instance that no longer exists. The index is another slot than
 * the instance, so this is not atomic: an append or put may recreate the instance between the
 * check and the ZREM, so existence is checked again after it and the entry restored with
 * `ZADD GT` at max(its score, `meta.updated_at`) when the instance is back (as
 * `MaintenanceStore.dropStaleIndexEntry` does for the global index).
 */
async function dropExpired(
  deps: InstanceListDeps,
  index: string,
  ref: MemoryRef,
  score: number,
): Promise<void> {
  if ((await deps.redis.zrem(index, ref.key)) === 0) return;
  const k = memoryKeys(deps.keyPrefix, ref);
  if ((await deps.redis.exists(k.meta, k.ord, k.data)) === 0) return;
  const updatedAt = Number((await deps.redis.hget(k.meta, 'updated_at')) ?? 0);
  await deps.redis.zadd(index, 'GT', Math.max(score, updatedAt), ref.key);
}
