import type { RedisConnection } from '../redis/connection.js';
import { PayloadError } from '../core/errors.js';
import {
  INDEX_SHARDS,
  indexKey,
  indexShardKey,
  memoryId,
  memoryKeys,
  parseMemoryId,
  resourceIndexKey,
  type MemoryRef,
} from '../redis/keys.js';
import { withScripts } from '../redis/scripts.js';

/** One entry of an index shard ({@link MaintenanceStore.scanIndex}). */
export interface IndexEntry {
  /** The instance the entry names. */
  readonly ref: MemoryRef;
  /** Last activity recorded by `touchIndex`, ms since epoch (the entry's score). */
  readonly lastActivityMs: number;
}

/** One page of {@link MaintenanceStore.scanIndex}. */
export interface IndexPage {
  /** Entries in ascending (last activity, mid) order. */
  readonly refs: IndexEntry[];
  /**
   * Index members in this page that are not a canonical mid (not produced by `memoryId`): skipped
   * and reported here so an operator can see and remove them; they never reach `refs`.
   */
  readonly malformed: string[];
  /** Pass back to continue; {@link SCAN_DONE} (`'0'`) when the shard has no more entries. */
  readonly cursor: string;
}

/** Options of {@link MaintenanceStore.scanIndex}. */
export interface ScanIndexOptions {
  /**
   * Only entries whose last activity is strictly before this, ms since epoch (e.g.
   * `now - idleMs`). Default: every entry.
   */
  readonly olderThanMs?: number;
  /** Page size: entries read per call, integer in 1..{@link MAX_SCAN_COUNT}. */
  readonly count: number;
  /** The cursor of the previous page; omit (or pass {@link SCAN_DONE}) to start. */
  readonly cursor?: string;
}

/** Counters of one instance before and after {@link MaintenanceStore.reconcile}. */
export interface CounterDrift {
  /** Value of the `meta` field before (an absent field reads as 0). */
  readonly before: number;
  /** Value after: recomputed from the log. */
  readonly after: number;
}

/** Outcome of {@link MaintenanceStore.reconcile}. */
export interface ReconcileResult {
  /** False when the instance has no `meta` key (expired or deleted): nothing was read or written. */
  readonly exists: boolean;
  /** True when anything was written (a counter differed or an orphan was removed). */
  readonly changed: boolean;
  /** `message_count` vs `ZCARD ord`. */
  readonly messageCount: CounterDrift;
  /** `token_count` vs exact tokens of messages in the log + `summary_tokens`. */
  readonly tokenCount: CounterDrift;
  /** `estimated_tokens` vs the estimates (`unc` scores) of messages in the log. */
  readonly estimatedTokens: CounterDrift;
  /**
   * Messages with an approximate count: the sum of `meta.approximated_by` vs the approximation
   * marks in `tok` of counted messages in the log.
   */
  readonly approximateMessages: CounterDrift;
  /** `approximate_tokens` vs the counts of the marked messages in the log. */
  readonly approximateTokens: CounterDrift;
  /**
   * Entries removed because their id is not in the log, per family (`tok`: counts, and
   * approximation marks without a count).
   */
  readonly orphansRemoved: { readonly tok: number; readonly unc: number; readonly msg: number };
  /**
   * Ids in the log without a stored body: reported only (the content is gone; a read skips
   * them). Not counted in {@link ReconcileResult.changed}.
   */
  readonly missingBodies: number;
}

/**
 * The BullMQ keys of one queue that {@link MaintenanceStore.scrubJobs} reads. All of them share
 * the queue prefix's hash tag (e.g. `{memq}`), so one MULTI reads them at one instant.
 */
export interface QueueJobKeys {
  /**
   * Prefix of the queue's job hashes: a job's hash is this plus its id (BullMQ
   * `queue.toKey('')`, e.g. `{memq}:memory-append:`).
   */
  readonly jobPrefix: string;
  /** LISTs of job ids (BullMQ's `wait`, `paused`, `active`). */
  readonly lists: readonly string[];
  /** ZSETs of job ids (BullMQ's `prioritized`, `delayed`, `completed`, `failed`, ...). */
  readonly sortedSets: readonly string[];
}

/** Job hashes {@link MaintenanceStore.scrubJobs} checks per script call. */
export const SCRUB_BATCH = 200;

/**
 * The maintenance side of the Redis store, used by the scheduled `maintenance` job (docs/architecture.md,
 * "Jobs"): scan the activity index, drop entries of expired instances, repair counters,
 * prune the idempotency window. Flush candidates are chosen by the caller from
 * `MemoryStore.stats`.
 */
export interface MaintenanceStore {
  /**
   * One page of index shard `shard`, oldest activity first, read with
   * `ZRANGE <idx> <min> <max> BYSCORE LIMIT` (keyset pagination on (score, mid), not ZSCAN), so
   * with `olderThanMs` only the idle entries are read, O(log n + page). The cursor is the last
   * (score, mid) returned: entries removed between calls shift nothing, every entry present with
   * an unchanged score for the whole scan is returned exactly once, and an entry touched during
   * the scan moves past the cursor (returned again later, or excluded by `olderThanMs`).
   * Members that do not parse back into a ref are reported in `malformed`.
   * @throws PayloadError for a shard outside 0..15, a count outside 1..{@link MAX_SCAN_COUNT},
   *   a non-integer `olderThanMs` or a cursor this function did not return.
   */
  scanIndex(shard: number, options: ScanIndexOptions): Promise<IndexPage>;
  /**
   * Removes `ref`'s index entries, in its global shard and in its per-resource index
   * (`resourceIndexKey`), if the instance expired (none of `meta`, `ord` and `data` exists).
   * Returns true when it removed the global entry, false when the instance is alive or had no
   * global entry.
   *
   * The indexes are in other cluster slots than the instance, so this cannot be one script.
   * Race: an append or a session-data put may recreate the instance between the existence check
   * and the ZREMs, and its `touchIndex` may land before them (which would then remove live
   * entries). Handling: after removing (per-resource entry first, so a crash leaves the global
   * entry, which the next sweep sees), existence is checked again; if the instance is back both
   * entries are restored with `ZADD GT` at max(old score, `meta.updated_at`), so a newer
   * `touchIndex` score wins. An append after the second check re-adds the entries through its
   * own `touchIndex`. The worst case, a crash between ZREM and the restore, leaves a live
   * instance unindexed until its next append; its keys still expire by TTL.
   */
  dropStaleIndexEntry(ref: MemoryRef): Promise<boolean>;
  /**
   * Adds `entry` to its per-resource index (`resourceIndexKey`) with `ZADD GT`: added when
   * missing, raised to `lastActivityMs` when older, never lowered; only while `entry` is still
   * in the global index. The sweep calls it for every live entry of the global index, so
   * instances indexed before the per-resource index existed (or whose per-resource touch was
   * lost to a crash) are listed after one sweep; idempotent.
   * Race: a delete removes both entries (per-resource first) between the sweep's page read and
   * this call, or between this call's check of the global entry and its ZADD. Handling: nothing
   * is added when the global entry is gone; an entry added is checked again and removed if the
   * global entry went meanwhile, so a deleted instance is never listed again. (A `touchIndex`
   * writes the global entry first, so one that raced with the removal restores both.)
   * Returns true when the entry was missing and is now added.
   */
  indexInResource(entry: IndexEntry): Promise<boolean>;
  /**
   * Recomputes `message_count`, `token_count`, `estimated_tokens`, `approximate_tokens` and
   * `approximated_by` from the log and removes `tok`/`unc`/`msg` entries whose id is not in the
   * log (and approximation marks without a count), in one script (`reconcile.lua`), and
   * reports before/after values. A consistent instance is not written to; a missing one is not
   * touched (`exists: false`, no key created). Needs no lock: it is atomic, leaves the epoch
   * alone, and sets absolute values that later delta updates (`apply-flush`) stay correct on.
   * O(messages) inside Redis.
   */
  reconcile(ref: MemoryRef): Promise<ReconcileResult>;
  /**
   * Removes `seen` (idempotency) entries accepted before `acceptedBeforeMs`, except ids still in
   * the log, and raises `meta.seen_floor_ms` to `acceptedBeforeMs` (never lowers it), in one
   * script (`prune-seen.lua`). Past the floor, `append.lua` rejects ids at/below the watermark
   * whose ULID time is older than the floor. Returns the number of entries removed; a missing
   * instance returns 0 and no key is created.
   * @param acceptedBeforeMs ms since epoch, integer, not after the store's clock (a floor in the
   *   future would turn late first-time messages at/below the watermark into duplicates).
   * @throws PayloadError when `acceptedBeforeMs` is not an integer in 0..now.
   */
  pruneSeen(ref: MemoryRef, acceptedBeforeMs: number): Promise<number>;
  /**
   * Removes `ref`'s messages from the job hashes of `queues` (the copies BullMQ keeps in waiting,
   * delayed, active, completed and failed jobs): in every job enqueued at or before `erasedAtMs`
   * (its `timestamp`), each entry of `ref` with a `messages` array (an append job's
   * `entries[i]`, or the whole data of a write job) becomes `{ ref, erased_ids }`
   * (`ErasedJobSchema`), which its processor reports erased without touching the store; the
   * job's other entries stay as they are (see {@link scrubJobKeys}). Per queue, the ids of every job in every state are read in one MULTI (one instant,
   * so a job moving between states is not missed), then checked {@link SCRUB_BATCH} hashes per
   * `scrub-jobs.lua` call. A job added after that instant with an older enqueue time (a slow
   * producer) is refused by the erasure tombstone when it runs, and its processor scrubs it then.
   * Cost: O(jobs kept in the queues), bounded by their retention (`queues/job-options.ts`) and
   * the backlog. Returns the number of job hashes rewritten.
   * @throws PayloadError when `erasedAtMs` is not an integer >= 0.
   */
  scrubJobs(ref: MemoryRef, erasedAtMs: number, queues: readonly QueueJobKeys[]): Promise<number>;
  /**
   * {@link scrubJobs} for the listed job hashes only (e.g. the append processor's own job, when
   * the erasure tombstone refused one of its entries). Only `ref`'s entries change: each hash's
   * data is decoded in Node (`eraseInstance`) and written back with a compare-and-set
   * (`replace-job-data.lua`), retried when a worker or another scrub changed it in between.
   * Returns the number of job hashes rewritten.
   * @throws PayloadError when `erasedAtMs` is not an integer >= 0.
   * @throws Error when a hash's data changed {@link SCRUB_CAS_ATTEMPTS} times during its scrub.
   */
  scrubJobKeys(ref: MemoryRef, erasedAtMs: number, jobKeys: readonly string[]): Promise<number>;
}

/** Dependencies of {@link createMaintenanceStore}. */
export interface MaintenanceStoreDeps {
  /** Connection used for all commands (RESP2, as `src/redis/connection.ts` creates them). */
  readonly redis: RedisConnection;
  /** Key prefix, e.g. `memq:`; the same as the memory store's. */
  readonly keyPrefix: string;
  /** Clock, ms since epoch; default `Date.now`. Bounds `pruneSeen`'s floor. */
  readonly now?: () => number;
}

/** The cursor that starts a scan and that marks its end ({@link IndexPage.cursor}). */
export const SCAN_DONE = '0';

/** The largest page {@link MaintenanceStore.scanIndex} reads in one call. */
export const MAX_SCAN_COUNT = 1000;

/** Creates the Redis-backed {@link MaintenanceStore}. */
export function createMaintenanceStore(deps: MaintenanceStoreDeps): MaintenanceStore {
  const redis = withScripts(deps.redis);
  const now = deps.now ?? Date.now;
  const keysOf = (ref: MemoryRef) => memoryKeys(deps.keyPrefix, ref);

  return {
    async scanIndex(shard, options) {
      if (!Number.isInteger(shard) || shard < 0 || shard >= INDEX_SHARDS) {
        throw new PayloadError(
          `scanIndex: shard: expected an integer in 0..${INDEX_SHARDS - 1}, got ${shard}`,
        );
      }
      const { count, olderThanMs } = options;
      if (!Number.isInteger(count) || count < 1 || count > MAX_SCAN_COUNT) {
        throw new PayloadError(
          `scanIndex: count: expected an integer in 1..${MAX_SCAN_COUNT}, got ${count}`,
        );
      }
      if (olderThanMs !== undefined && !Number.isSafeInteger(olderThanMs)) {
        throw new PayloadError(
          `scanIndex: olderThanMs: expected an integer (ms since epoch), got ${olderThanMs}`,
        );
      }
      const after = parseCursor(options.cursor);
      const key = indexShardKey(deps.keyPrefix, shard);
      const min = after === undefined ? '-inf' : String(after.score);
      const max = olderThanMs === undefined ? '+inf' : `(${olderThanMs}`;

      // Entries that share the cursor's score are re-read and skipped up to its mid; widen the
      // read until one entry past the page is found or the range is exhausted. Equal scores
      // (same millisecond) are rare, so this is normally one round trip.
      let limit = count + 1 + (after === undefined ? 0 : 16);
      for (;;) {
        const flat = await redis.zrange(key, min, max, 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES');
        const entries: Array<{ mid: string; score: number }> = [];
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const mid = flat[i]!;
          const score = Number(flat[i + 1]);
          // Redis orders equal scores by member bytes, so compare bytes, not UTF-16 units.
          if (after && score === after.score && Buffer.compare(Buffer.from(mid), after.mid) <= 0)
            continue;
          entries.push({ mid, score });
        }
        const exhausted = flat.length / 2 < limit;
        if (entries.length <= count && !exhausted) {
          limit *= 2;
          continue;
        }
        const page = entries.slice(0, count);
        const refs: IndexEntry[] = [];
        const malformed: string[] = [];
        for (const { mid, score } of page) {
          const ref = refOf(mid);
          if (ref) refs.push({ ref, lastActivityMs: score });
          else malformed.push(mid);
        }
        const last = page.at(-1);
        const cursor = entries.length > count && last ? `${last.score}:${last.mid}` : SCAN_DONE;
        return { refs, malformed, cursor };
      }
    },

    async dropStaleIndexEntry(ref) {
      const k = keysOf(ref);
      const idx = indexKey(deps.keyPrefix, ref);
      const ridx = resourceIndexKey(deps.keyPrefix, ref.project, ref.resource);
      const mid = memoryId(ref);
      const score = await redis.zscore(idx, mid);
      if (score === null) return false;
      if ((await redis.exists(k.meta, k.ord, k.data)) > 0) return false;
      const resourceScore = await redis.zscore(ridx, ref.key);
      await redis.zrem(ridx, ref.key);
      if ((await redis.zrem(idx, mid)) === 0) return false;
      // Second check: see the race in the interface's TSDoc.
      if ((await redis.exists(k.meta, k.ord, k.data)) === 0) return true;
      const updatedAt = Number((await redis.hget(k.meta, 'updated_at')) ?? 0);
      await redis.zadd(idx, 'GT', Math.max(Number(score), updatedAt), mid);
      const restored = Math.max(Number(score), Number(resourceScore ?? 0), updatedAt);
      await redis.zadd(ridx, 'GT', restored, ref.key);
      return false;
    },

    async indexInResource({ ref, lastActivityMs }) {
      const idx = indexKey(deps.keyPrefix, ref);
      const ridx = resourceIndexKey(deps.keyPrefix, ref.project, ref.resource);
      const mid = memoryId(ref);
      if ((await redis.zscore(idx, mid)) === null) return false;
      if ((await redis.zadd(ridx, 'GT', lastActivityMs, ref.key)) === 0) return false;
      // Second check: see the race in the interface's TSDoc.
      if ((await redis.zscore(idx, mid)) !== null) return true;
      await redis.zrem(ridx, ref.key);
      return false;
    },

    async reconcile(ref) {
      const k = keysOf(ref);
      const reply = (await redis.memqReconcile(k.ord, k.msg, k.tok, k.unc, k.meta)) as [
        string,
        ...number[],
      ];
      const [status, ...values] = reply;
      if (status === 'MISSING') {
        const zero = { before: 0, after: 0 };
        return {
          exists: false,
          changed: false,
          messageCount: zero,
          tokenCount: zero,
          estimatedTokens: zero,
          approximateMessages: zero,
          approximateTokens: zero,
          orphansRemoved: { tok: 0, unc: 0, msg: 0 },
          missingBodies: 0,
        };
      }
      const [
        mcBefore,
        mcAfter,
        tcBefore,
        tcAfter,
        etBefore,
        etAfter,
        tok,
        unc,
        msg,
        missing,
        amBefore,
        amAfter,
        atBefore,
        atAfter,
        approximatedByRewritten,
      ] = values.map(Number) as [
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
      ];
      return {
        exists: true,
        changed:
          mcBefore !== mcAfter ||
          tcBefore !== tcAfter ||
          etBefore !== etAfter ||
          atBefore !== atAfter ||
          approximatedByRewritten === 1 ||
          tok + unc + msg > 0,
        messageCount: { before: mcBefore, after: mcAfter },
        tokenCount: { before: tcBefore, after: tcAfter },
        estimatedTokens: { before: etBefore, after: etAfter },
        approximateMessages: { before: amBefore, after: amAfter },
        approximateTokens: { before: atBefore, after: atAfter },
        orphansRemoved: { tok, unc, msg },
        missingBodies: missing,
      };
    },

    async pruneSeen(ref, acceptedBeforeMs) {
      const clock = now();
      if (!Number.isSafeInteger(acceptedBeforeMs) || acceptedBeforeMs < 0) {
        throw new PayloadError(
          `pruneSeen: acceptedBeforeMs: expected an integer ms since epoch, got ${acceptedBeforeMs}`,
        );
      }
      if (acceptedBeforeMs > clock) {
        throw new PayloadError(
          `pruneSeen: acceptedBeforeMs: expected a time not after now (${clock}), got ${acceptedBeforeMs}`,
        );
      }
      const k = keysOf(ref);
      return Number(await redis.memqPruneSeen(k.seen, k.ord, k.meta, acceptedBeforeMs));
    },

    async scrubJobs(ref, erasedAtMs, queues) {
      checkErasedAt('scrubJobs', erasedAtMs);
      let scrubbed = 0;
      for (const queue of queues) {
        const snapshot = redis.multi();
        for (const list of queue.lists) snapshot.lrange(list, 0, -1);
        for (const set of queue.sortedSets) snapshot.zrange(set, '0', '-1');
        const replies = await snapshot.exec();
        if (!replies) throw new Error(`scrubJobs ${memoryId(ref)}: the MULTI was aborted`);
        const ids = new Set<string>();
        for (const [error, value] of replies) {
          if (error) throw error;
          for (const id of value as string[]) ids.add(id);
        }
        scrubbed += await scrubKeys(
          ref,
          erasedAtMs,
          [...ids].map((id) => queue.jobPrefix + id),
        );
      }
      return scrubbed;
    },

    scrubJobKeys(ref, erasedAtMs, jobKeys) {
      checkErasedAt('scrubJobKeys', erasedAtMs);
      return scrubKeys(ref, erasedAtMs, jobKeys);
    },
  };

  /** `scrubJobKeys` without the argument check. */
  async function scrubKeys(
    ref: MemoryRef,
    erasedAtMs: number,
    jobKeys: readonly string[],
  ): Promise<number> {
    // The ref's key field as JSON.stringify writes it (`"key":"<key, escaped>"`), for the text
    // search: a bare short key (`42`) would match ids and content of almost every job.
    const keyText = `"key":${JSON.stringify(ref.key)}`;
    let scrubbed = 0;
    for (let i = 0; i < jobKeys.length; i += SCRUB_BATCH) {
      const batch = jobKeys.slice(i, i + SCRUB_BATCH);
      const found = (await redis.memqScrubJobs(
        batch.length,
        ...batch,
        erasedAtMs,
        keyText,
      )) as string[];
      for (let j = 0; j < found.length; j += 2) {
        if (await scrubOne(ref, found[j]!, found[j + 1]!)) scrubbed += 1;
      }
    }
    return scrubbed;
  }

  /**
   * Rewrites `ref`'s entries in one job hash whose data was `data`, with a compare-and-set
   * (`replace-job-data.lua`); when a worker or another scrub changed the data in between, reads
   * it again and retries, up to {@link SCRUB_CAS_ATTEMPTS} times. True when the hash was rewritten.
   * @throws Error when the data kept changing.
   */
  async function scrubOne(ref: MemoryRef, jobKey: string, data: string): Promise<boolean> {
    let current: string | null = data;
    for (let attempt = 0; attempt < SCRUB_CAS_ATTEMPTS; attempt++) {
      if (current === null) return false;
      let decoded: unknown;
      try {
        decoded = JSON.parse(current);
      } catch {
        return false; // not a job of memq's: nothing of ours to remove
      }
      const erased = eraseInstance(decoded, ref);
      if (erased === undefined) return false;
      if (Number(await redis.memqReplaceJobData(jobKey, current, JSON.stringify(erased))) === 1) {
        return true;
      }
      current = await redis.hget(jobKey, 'data');
    }
    throw new Error(
      `scrubJobs ${memoryId(ref)}: the data of ${jobKey} changed ${SCRUB_CAS_ATTEMPTS} times while it was being scrubbed`,
    );
  }
}

/** Times {@link MaintenanceStore.scrubJobKeys} retries a job hash whose data changed under it. */
export const SCRUB_CAS_ATTEMPTS = 10;

/** @throws PayloadError when `erasedAtMs` is not an integer >= 0. */
function checkErasedAt(operation: string, erasedAtMs: number): void {
  if (!Number.isSafeInteger(erasedAtMs) || erasedAtMs < 0) {
    throw new PayloadError(
      `${operation}: erasedAtMs: expected an integer >= 0 (ms since epoch), got ${erasedAtMs}`,
    );
  }
}

/**
 * Job data with `ref`'s messages replaced by their ids (`ErasedJobSchema`): an append job's
 * entries of `ref` (`{ entries: [{ ref, messages }, ...] }`), or a one-instance job of `ref`
 * (`{ ref, messages }`: a write job, or an append job of before group commit). Every other part
 * of the data is kept as it was. Undefined when there is nothing of `ref`'s to replace.
 */
export function eraseInstance(data: unknown, ref: MemoryRef): unknown {
  const canonical = { project: ref.project, resource: ref.resource, key: ref.key };
  const erase = (value: unknown): unknown => {
    if (typeof value !== 'object' || value === null) return undefined;
    const job = value as { ref?: Partial<MemoryRef>; messages?: unknown };
    if (
      job.ref?.project !== ref.project ||
      job.ref.resource !== ref.resource ||
      job.ref.key !== ref.key ||
      !Array.isArray(job.messages)
    ) {
      return undefined;
    }
    const ids = (job.messages as unknown[]).flatMap((m) =>
      typeof m === 'object' && m !== null && typeof (m as { id?: unknown }).id === 'string'
        ? [(m as { id: string }).id]
        : [],
    );
    return { ref: canonical, erased_ids: ids };
  };
  const entries = (data as { entries?: unknown } | null)?.entries;
  if (Array.isArray(entries)) {
    let changed = false;
    const next = entries.map((entry: unknown) => {
      const erased = erase(entry);
      if (erased === undefined) return entry;
      changed = true;
      return erased;
    });
    return changed ? { ...(data as object), entries: next } : undefined;
  }
  return erase(data);
}

/** A mid back to its ref, only if the mid is exactly what `memoryId` makes of that ref. */
function refOf(mid: string): MemoryRef | undefined {
  let ref: MemoryRef | undefined;
  try {
    ref = parseMemoryId(mid);
  } catch {
    return undefined; // a bad percent-escape
  }
  if (!ref || !ref.project || !ref.resource || !ref.key) return undefined;
  return memoryId(ref) === mid ? ref : undefined;
}

function parseCursor(cursor: string | undefined): { score: number; mid: Buffer } | undefined {
  if (cursor === undefined || cursor === SCAN_DONE) return undefined;
  const colon = cursor.indexOf(':');
  const score = Number(cursor.slice(0, colon));
  if (colon <= 0 || !Number.isFinite(score)) {
    throw new PayloadError(
      `scanIndex: cursor: expected '0' or a cursor returned by scanIndex, got ${JSON.stringify(cursor)}`,
    );
  }
  return { score, mid: Buffer.from(cursor.slice(colon + 1)) };
}
