import type { RedisConnection } from '../redis/connection.js';
import { LockLostError, PayloadError } from '../core/errors.js';
import { SummarySchema, type Message, type Summary } from '../core/message.js';
import { estimateTokens } from '../core/token-counter.js';
import { indexKey, memoryId, memoryKeys, type MemoryRef } from '../redis/keys.js';
import { withScripts } from '../redis/scripts.js';

/** Outcome of {@link MemoryStore.append}. */
export interface AppendResult {
  /** Messages newly stored. */
  readonly added: number;
  /** Messages skipped because their id was already accepted or is at/below the watermark. */
  readonly duplicates: number;
  /** True when this append opened a burst: the caller should enqueue one token-count job. */
  readonly needsTokenCount: boolean;
  /** `message_count` after the append. */
  readonly messageCount: number;
  /**
   * Messages refused because the append was enqueued at or before the instance's erasure
   * tombstone (a delete or clear requested after it has committed): the whole batch, with
   * `added` and `duplicates` 0; nothing was written. 0 otherwise.
   */
  readonly erased: number;
}

/** Outcome of {@link MemoryStore.write}. */
export interface WriteResult {
  /** Messages in the log after the call (unchanged when the write was refused). */
  readonly messageCount: number;
  /** The epoch after the call (unchanged when the write was refused). */
  readonly epoch: number;
  /**
   * True when the write was enqueued at or before the instance's erasure tombstone (a delete or
   * clear requested after it has committed): then nothing changed.
   */
  readonly refused: boolean;
}

/** When the job behind a write was enqueued ({@link MemoryStore.append}, {@link MemoryStore.write}). */
export interface EnqueuedAt {
  /**
   * The job's enqueue time, ms since epoch (BullMQ `job.timestamp`: the producer's clock, kept
   * across retries). The call is refused when it is at or before the instance's erasure
   * tombstone. Absent: the call is not a queued job, its order is its own execution order, and
   * no tombstone applies.
   */
  readonly enqueuedAtMs?: number;
}

/** When the delete or clear was requested ({@link MemoryStore.clear}, {@link MemoryStore.delete}). */
export interface ErasureRequest {
  /**
   * The delete or clear job's enqueue time, ms since epoch (BullMQ `job.timestamp`); default the
   * store's clock. The erasure tombstone is raised to it (never lowered).
   */
  readonly requestedAtMs?: number;
}

/**
 * TTL of the erasure tombstone (`MemoryKeys.erased`), seconds: 8 days, the failed-job retention
 * of `queues/job-options.ts` (7 days, the longest any job can wait to be retried from the
 * dashboard) plus one day for the maintenance sweep that enforces it and for a job that failed
 * some time after the erasure. Every write of the tombstone restarts it.
 */
export const ERASURE_TOMBSTONE_TTL_SECONDS = 8 * 24 * 3600;

/** A stored message with its exact token count, if counted yet. */
export interface StoredMessage {
  /** The message as stored (already redacted). */
  readonly message: Message;
  /** Exact tokens (see `TokenCounter.countMessage`); undefined until the token-count job ran. */
  readonly tokens: number | undefined;
}

/** Which page {@link MemoryStore.read} returns, and whether it records or returns access. */
export interface ReadPage {
  /** First message, by position in id order; default 0. */
  readonly offset?: number;
  /** Messages, 1..{@link MAX_PAGE_SIZE}; default 100. */
  readonly limit?: number;
  /** Count this read for every returned message (lru/lfu access stats). Default false. */
  readonly recordAccess?: boolean;
  /** Return the page's access stats in {@link MemoryWindow.access}. Default false. */
  readonly withAccess?: boolean;
}

/** One page of an instance's log plus its counters. */
export interface MemoryWindow {
  /** Messages in id (= time) order. */
  readonly messages: readonly StoredMessage[];
  /** Messages in the log (`ZCARD ord`). */
  readonly total: number;
  /** Page start (0-based). */
  readonly offset: number;
  /** Page size asked for. */
  readonly limit: number;
  /** True when messages exist after this page. */
  readonly hasMore: boolean;
  /** `message_count` counter (equals `total` when consistent). */
  readonly messageCount: number;
  /** Exact tokens of counted messages plus the summary's tokens. */
  readonly tokenCount: number;
  /** Append-time estimate of the messages not counted yet. */
  readonly estimatedTokens: number;
  /** True when every message has an exact count (`estimatedTokens == 0`). */
  readonly exact: boolean;
  /** Messages ever accepted into this instance (since its last write or clear). */
  readonly acceptedCount: number;
  /** The rolling summary, if a flush has folded messages into one. */
  readonly summary: Summary | undefined;
  /** Flush/write/clear generation; a flush plan commits only against the epoch it read. */
  readonly epoch: number;
  /** Reads of the page's messages (only with `withAccess`; absent id = never read). */
  readonly access?: ReadonlyMap<string, { readonly count: number; readonly lastMs: number }>;
}

/** Outcome of {@link MemoryStore.commitTokens}. */
export interface CommitTokensResult {
  /** Exact counts written. */
  readonly committed: number;
  /** `token_count` after the commit. */
  readonly tokenCount: number;
  /** `estimated_tokens` after the commit. */
  readonly estimatedTokens: number;
  /** Messages in the log after the commit (ZCARD of `ord`, as {@link MemoryWindow.total}). */
  readonly messageCount: number;
}

/** A flush plan to commit with {@link MemoryStore.applyFlush}. */
export interface FlushCommit {
  /** Token of the instance lock the caller holds (fencing). */
  readonly lockToken: string;
  /** The epoch the plan was computed from ({@link MemoryWindow.epoch}). */
  readonly epoch: number;
  /** Ids folded into `summary`; all must be at or below `summary.covers_through_id`. */
  readonly foldedIds: readonly string[];
  /** Ids evicted without a summary (a strategy's explicit decision). */
  readonly evictedIds: readonly string[];
  /** The new summary (replaces the old one); required when `foldedIds` is not empty. */
  readonly summary?: Summary;
}

/** Outcome of {@link MemoryStore.applyFlush}. */
export interface FlushCommitResult {
  /** Folded ids that were still in the log and are now removed. */
  readonly folded: number;
  /** Evicted ids that were still in the log and are now removed. */
  readonly evicted: number;
  /** `message_count` after the commit. */
  readonly messageCount: number;
  /** `token_count` after the commit (exact messages + summary). */
  readonly tokenCount: number;
  /** The new epoch. */
  readonly epoch: number;
}

/** Counters and health of one instance ({@link MemoryStore.stats}). */
export interface MemoryStats {
  /** False when no key of the instance exists. */
  readonly exists: boolean;
  /** Messages in the log (`ZCARD ord`). */
  readonly messageCount: number;
  /** `message_count` counter; equals `messageCount` when consistent. */
  readonly countedMessages: number;
  /** Exact tokens (messages + summary). */
  readonly tokenCount: number;
  /** Estimated tokens of messages not counted yet. */
  readonly estimatedTokens: number;
  /** Messages waiting for an exact count. */
  readonly uncountedMessages: number;
  /** Tokens of the summary (0 without one). */
  readonly summaryTokens: number;
  /** Accounting since the last write/clear: accepted == present + folded + evicted. */
  readonly acceptedCount: number;
  /** Messages folded into the summary since the last write/clear. */
  readonly foldedCount: number;
  /** Messages evicted by a strategy since the last write/clear. */
  readonly evictedCount: number;
  /** Flush/write/clear generation. */
  readonly epoch: number;
  /** Newest folded id, if any. */
  readonly watermark: string | undefined;
  /** ms since epoch of the last flush, if any. */
  readonly lastFlushAt: number | undefined;
  /** ms since epoch of creation. */
  readonly createdAt: number | undefined;
  /** ms since epoch of the last change. */
  readonly updatedAt: number | undefined;
  /** Seconds until the instance expires; -1 = never; undefined when it does not exist. */
  readonly ttlSeconds: number | undefined;
  /** Whether some operation holds the instance lock right now. */
  readonly locked: boolean;
  /** Messages per role (deep stats only: it reads every message). */
  readonly roles: Readonly<Record<string, number>> | undefined;
  /** Sum of the exact per-message counts (deep stats only). */
  readonly exactMessageTokens: number | undefined;
  /**
   * DESIGN.md invariant 3 and the no-loss accounting: `countedMessages == messageCount`,
   * `acceptedCount == messageCount + foldedCount + evictedCount`, and (deep stats only)
   * `tokenCount == exactMessageTokens + summaryTokens`.
   */
  readonly consistent: boolean;
}

/** The largest page {@link MemoryStore.read} returns (Lua `unpack` limits and reply size). */
export const MAX_PAGE_SIZE = 1000;

/**
 * Redis-backed memory store. Every write is one Lua script on keys sharing the instance's hash
 * tag (DESIGN.md section 4), so it is atomic and cluster-safe.
 */
export interface MemoryStore {
  /**
   * Appends `messages` (already validated and, where a policy applies, redacted) in one script:
   * skips ids already accepted, stores the rest in id order, adds their estimates to
   * `estimated_tokens`, slides the TTL of every key family (0 = never expires). With
   * `enqueuedAtMs` at or before the erasure tombstone it writes nothing and reports the batch
   * as `erased`.
   * @throws PayloadError when `ttlSeconds` or `enqueuedAtMs` is not an integer >= 0.
   */
  append(
    ref: MemoryRef,
    messages: readonly Message[],
    ttlSeconds: number,
    options?: EnqueuedAt,
  ): Promise<AppendResult>;
  /**
   * A consistent snapshot of `limit` messages from `offset` (defaults 0 and 100; limit is capped
   * at {@link MAX_PAGE_SIZE}) with the instance's counters. A missing instance reads as empty.
   * `recordAccess` counts the read of every returned message in the `acc` family (for lru/lfu);
   * `withAccess` returns the page's access stats (read before this read is recorded).
   */
  read(ref: MemoryRef, page?: ReadPage): Promise<MemoryWindow>;
  /**
   * Up to `max` messages still waiting for an exact token count (smallest estimates first), how
   * many ids were scanned, and the ids whose body is gone (`missing`: removed by a flush or clear
   * between the append and now). Pass `missing` to {@link MemoryStore.commitTokens} (any count) so
   * they leave the uncounted set and a later scan does not meet them again. One script call
   * (`uncounted.lua`).
   * @param max Ids to scan, >= 1 (the token-count job uses `TOKEN_COUNT_BATCH`, 256).
   * @param options.takeBurst First mark the token-count burst as taken (clear
   *   `token_count_pending_at`), in the same script, so an append after this call is either read
   *   by it or opens a new burst. Default false.
   * @throws PayloadError when `max` is not an integer >= 1.
   */
  uncounted(
    ref: MemoryRef,
    max: number,
    options?: { takeBurst?: boolean },
  ): Promise<{ messages: Message[]; scanned: number; missing: string[] }>;
  /** Commits exact counts for ids still uncounted and still in the log. */
  commitTokens(
    ref: MemoryRef,
    counts: ReadonlyArray<{ id: string; tokens: number }>,
    ttlSeconds: number,
  ): Promise<CommitTokensResult>;
  /**
   * Commits a flush plan in one script, only while `lockToken` is the instance lock's value and
   * the epoch is unchanged (DESIGN.md invariant 5). Removes exactly the planned ids still in the
   * log, so messages appended after planning survive.
   * @throws LockLostError when the lock is no longer the caller's, or the epoch moved (a write,
   *   clear or other flush committed since planning): nothing changed, re-plan.
   * @throws Error (`INVALID_PLAN`) for a folded id above the summary's watermark.
   */
  applyFlush(ref: MemoryRef, commit: FlushCommit, ttlSeconds: number): Promise<FlushCommitResult>;
  /**
   * Atomically replaces the log with `messages` (sorted by id): summary and watermark removed,
   * accounting restarted, epoch + 1, TTL set. The messages are uncounted afterwards. With
   * `enqueuedAtMs` at or before the erasure tombstone nothing changes (`refused`).
   * @throws PayloadError for repeated ids, or a `ttlSeconds` / `enqueuedAtMs` that is not an
   *   integer >= 0.
   */
  write(
    ref: MemoryRef,
    messages: readonly Message[],
    ttlSeconds: number,
    options?: EnqueuedAt,
  ): Promise<WriteResult>;
  /**
   * Removes every message and the summary; keeps the idempotency window. Epoch + 1. Raises the
   * erasure tombstone to `requestedAtMs` (TTL {@link ERASURE_TOMBSTONE_TTL_SECONDS}), also when
   * the instance does not exist. Returns the messages removed, the new epoch and the tombstone.
   * @throws PayloadError when `requestedAtMs` is not an integer >= 0.
   */
  clear(
    ref: MemoryRef,
    options?: ErasureRequest,
  ): Promise<{ removed: number; epoch: number; erasedAtMs: number }>;
  /**
   * Removes every key family and the index entry, and raises the erasure tombstone as
   * {@link MemoryStore.clear} does. Returns the messages removed and the tombstone.
   * @throws PayloadError when `requestedAtMs` is not an integer >= 0.
   */
  delete(
    ref: MemoryRef,
    options?: ErasureRequest,
  ): Promise<{ removed: number; erasedAtMs: number }>;
  /**
   * Counters, accounting and health of an instance in one consistent read.
   * @param options.deep Also count messages per role and recount exact tokens (reads every
   *   message: O(n)). Default false.
   */
  stats(ref: MemoryRef, options?: { deep?: boolean }): Promise<MemoryStats>;
  /**
   * Health of an instance: {@link MemoryStats} without role counts, plus `healthy` (exists or
   * empty, and consistent counters).
   */
  health(ref: MemoryRef): Promise<MemoryStats & { healthy: boolean }>;
  /** Records activity in the maintenance index (outside the script: it is another slot). */
  touchIndex(ref: MemoryRef, atMs: number): Promise<void>;
}

/** Dependencies of {@link createMemoryStore}. */
export interface MemoryStoreDeps {
  /** Connection used for all commands. */
  readonly redis: RedisConnection;
  /** Key prefix, e.g. `memq:`. */
  readonly keyPrefix: string;
  /**
   * How long an opened token-count burst suppresses further enqueues, ms; after it, the next
   * append enqueues again (recovers from a token-count job lost between script and enqueue).
   * Default 60 000.
   */
  readonly tokenCountPendingWindowMs?: number;
  /** Clock, ms since epoch; default `Date.now`. */
  readonly now?: () => number;
}

/** Creates the Redis-backed {@link MemoryStore}. */
export function createMemoryStore(deps: MemoryStoreDeps): MemoryStore {
  const redis = withScripts(deps.redis);
  const now = deps.now ?? Date.now;
  const pendingWindowMs = deps.tokenCountPendingWindowMs ?? 60_000;
  const keysOf = (ref: MemoryRef) => memoryKeys(deps.keyPrefix, ref);

  return {
    async append(ref, messages, ttlSeconds, options = {}) {
      requireTtl(ttlSeconds);
      const enqueuedAt = optionalTime('append: enqueuedAtMs', options.enqueuedAtMs);
      const k = keysOf(ref);
      const args: (string | number)[] = [ttlSeconds, now(), pendingWindowMs, enqueuedAt];
      for (const message of messages) {
        args.push(message.id, JSON.stringify(message), estimateTokens(message));
      }
      const [added, duplicates, needsTokenCount, messageCount, erased] = (await redis.memqAppend(
        k.ord,
        k.msg,
        k.unc,
        k.meta,
        k.seen,
        k.tok,
        k.acc,
        k.erased,
        ...args,
      )) as [number, number, number, number, number];
      return { added, duplicates, needsTokenCount: needsTokenCount === 1, messageCount, erased };
    },

    async read(ref, page = {}) {
      const offset = Math.max(0, Math.trunc(page.offset ?? 0));
      const limit = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.trunc(page.limit ?? 100)));
      const k = keysOf(ref);
      const [total, ids, bodies, counts, metaFlat, accessValues] = (await redis.memqRead(
        k.ord,
        k.msg,
        k.tok,
        k.meta,
        k.acc,
        offset,
        limit,
        page.recordAccess ? 1 : 0,
        now(),
        page.withAccess ? 1 : 0,
      )) as [number, string[], (string | null)[], (string | null)[], string[], (string | null)[]];
      const meta = toRecord(metaFlat);
      const messages: StoredMessage[] = [];
      ids.forEach((_, i) => {
        const body = bodies[i];
        if (body == null) return;
        const count = counts[i];
        messages.push({
          message: JSON.parse(body) as Message,
          tokens: count == null ? undefined : Number(count),
        });
      });
      const estimatedTokens = Number(meta.estimated_tokens ?? 0);
      return {
        messages,
        total,
        offset,
        limit,
        hasMore: offset + ids.length < total,
        messageCount: Number(meta.message_count ?? 0),
        tokenCount: Number(meta.token_count ?? 0),
        estimatedTokens,
        exact: estimatedTokens === 0,
        acceptedCount: Number(meta.accepted_count ?? 0),
        summary: meta.summary ? (JSON.parse(meta.summary) as Summary) : undefined,
        epoch: Number(meta.epoch ?? 0),
        ...(page.withAccess
          ? {
              access: new Map(
                ids.flatMap((id, i) => {
                  const value = accessValues[i];
                  if (!value) return [];
                  const [count, lastMs] = value.split(':').map(Number);
                  return [[id, { count: count!, lastMs: lastMs! }] as const];
                }),
              ),
            }
          : {}),
      };
    },

    async uncounted(ref, max, options = {}) {
      if (!Number.isSafeInteger(max) || max < 1) {
        throw new PayloadError(`uncounted: max: expected an integer >= 1, got ${max}`);
      }
      const k = keysOf(ref);
      const [ids, bodies] = (await redis.memqUncounted(
        k.unc,
        k.msg,
        k.meta,
        max,
        options.takeBurst ? '1' : '0',
      )) as [string[], Array<string | null>];
      if (ids.length === 0) return { messages: [], scanned: 0, missing: [] };
      const messages = bodies.flatMap((body) =>
        body == null ? [] : [JSON.parse(body) as Message],
      );
      const missing = ids.filter((_, i) => bodies[i] == null);
      return { messages, scanned: ids.length, missing };
    },

    async commitTokens(ref, counts, ttlSeconds) {
      requireTtl(ttlSeconds);
      for (const { id, tokens } of counts) {
        if (!Number.isSafeInteger(tokens) || tokens < 0) {
          throw new PayloadError(
            `commitTokens: tokens of ${id}: expected an integer >= 0, got ${tokens}`,
          );
        }
      }
      const k = keysOf(ref);
      const args: (string | number)[] = [ttlSeconds];
      for (const { id, tokens } of counts) args.push(id, tokens);
      const [committed, tokenCount, estimatedTokens, messageCount] = (await redis.memqCommitTokens(
        k.ord,
        k.tok,
        k.unc,
        k.meta,
        ...args,
      )) as [number, number, number, number];
      return { committed, tokenCount, estimatedTokens, messageCount };
    },

    async applyFlush(ref, commit, ttlSeconds) {
      requireTtl(ttlSeconds);
      // Redis does not roll back a script that fails half-way: check every argument first.
      const summary =
        commit.summary === undefined ? undefined : SummarySchema.parse(commit.summary);
      if (!Number.isSafeInteger(commit.epoch) || commit.epoch < 0) {
        throw new PayloadError(`applyFlush: epoch: expected an integer >= 0, got ${commit.epoch}`);
      }
      if (commit.foldedIds.length > 0 && !summary) {
        throw new PayloadError(
          'applyFlush: folded messages need the summary they were folded into',
        );
      }
      const k = keysOf(ref);
      const reply = (await redis.memqApplyFlush(
        k.ord,
        k.msg,
        k.tok,
        k.unc,
        k.meta,
        k.lock,
        k.acc,
        commit.lockToken,
        commit.epoch,
        ttlSeconds,
        now(),
        summary ? JSON.stringify(summary) : '',
        summary?.tokens ?? 0,
        summary?.covers_through_id ?? '',
        commit.foldedIds.length,
        ...commit.foldedIds,
        ...commit.evictedIds,
      )) as [string, ...(number | string)[]];
      const [status, ...rest] = reply;
      if (status === 'LOCK_LOST') {
        throw new LockLostError(
          `applyFlush ${memoryId(ref)}: the instance lock is no longer held by this flush; nothing changed`,
        );
      }
      if (status === 'EPOCH_CHANGED') {
        throw new LockLostError(
          `applyFlush ${memoryId(ref)}: epoch changed from ${commit.epoch} to ${String(rest[0])} since planning (a write, clear or flush committed); nothing changed`,
          { details: { expected: commit.epoch, current: Number(rest[0]) } },
        );
      }
      if (status !== 'OK')
        throw new Error(`applyFlush ${memoryId(ref)}: ${status}: ${String(rest[0])}`);
      const [folded, evicted, messageCount, tokenCount, epoch] = rest.map(Number) as [
        number,
        number,
        number,
        number,
        number,
      ];
      return { folded, evicted, messageCount, tokenCount, epoch };
    },

    async write(ref, messages, ttlSeconds, options = {}) {
      requireTtl(ttlSeconds);
      const enqueuedAt = optionalTime('write: enqueuedAtMs', options.enqueuedAtMs);
      const k = keysOf(ref);
      const sorted = [...messages].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const repeated = sorted
        .filter((m, i) => i > 0 && sorted[i - 1]!.id === m.id)
        .map((m) => m.id);
      if (repeated.length > 0) {
        throw new PayloadError(
          `write: message ids must be unique; repeated: ${[...new Set(repeated)].join(', ')}`,
        );
      }
      const args: (string | number)[] = [ttlSeconds, now(), enqueuedAt];
      for (const message of sorted)
        args.push(message.id, JSON.stringify(message), estimateTokens(message));
      const [messageCount, epoch, refused] = (await redis.memqWrite(
        k.ord,
        k.msg,
        k.tok,
        k.unc,
        k.meta,
        k.seen,
        k.acc,
        k.erased,
        ...args,
      )) as [number, number, number];
      return { messageCount, epoch, refused: refused === 1 };
    },

    async clear(ref, options = {}) {
      const clock = now();
      const requested = optionalTime('clear: requestedAtMs', options.requestedAtMs);
      const requestedAt = requested === '' ? clock : requested;
      const k = keysOf(ref);
      const [removed, epoch, erasedAtMs] = (await redis.memqClear(
        k.ord,
        k.msg,
        k.tok,
        k.unc,
        k.meta,
        k.acc,
        k.erased,
        clock,
        requestedAt,
        ERASURE_TOMBSTONE_TTL_SECONDS,
      )) as [number, number, number];
      return { removed, epoch, erasedAtMs };
    },

    async delete(ref, options = {}) {
      const requested = optionalTime('delete: requestedAtMs', options.requestedAtMs);
      const requestedAt = requested === '' ? now() : requested;
      const k = keysOf(ref);
      const [removed, erasedAtMs] = (await redis.memqDelete(
        k.ord,
        k.msg,
        k.tok,
        k.unc,
        k.meta,
        k.seen,
        k.acc,
        k.erased,
        requestedAt,
        ERASURE_TOMBSTONE_TTL_SECONDS,
      )) as [number, number];
      await redis.zrem(indexKey(deps.keyPrefix, ref), memoryId(ref));
      return { removed, erasedAtMs };
    },

    async stats(ref, options = {}) {
      const k = keysOf(ref);
      const [ordCount, metaFlat, ttl, locked, uncounted, roleFlat, tokSum] =
        (await redis.memqInspect(
          k.ord,
          k.msg,
          k.meta,
          k.lock,
          k.unc,
          k.tok,
          options.deep ? '1' : '0',
        )) as [number, string[], number, number, number, (string | number)[], number];
      const meta = toRecord(metaFlat);
      const num = (field: string) => Number(meta[field] ?? 0);
      const optionalNum = (field: string) =>
        meta[field] === undefined ? undefined : Number(meta[field]);
      const roles: Record<string, number> = {};
      for (let i = 0; i + 1 < roleFlat.length; i += 2)
        roles[String(roleFlat[i])] = Number(roleFlat[i + 1]);
      const exists = ttl !== -2 || ordCount > 0;
      return {
        exists,
        messageCount: ordCount,
        countedMessages: num('message_count'),
        tokenCount: num('token_count'),
        estimatedTokens: num('estimated_tokens'),
        uncountedMessages: uncounted,
        summaryTokens: num('summary_tokens'),
        acceptedCount: num('accepted_count'),
        foldedCount: num('folded_count'),
        evictedCount: num('evicted_count'),
        epoch: num('epoch'),
        watermark: meta.watermark,
        lastFlushAt: optionalNum('last_flush_at'),
        createdAt: optionalNum('created_at'),
        updatedAt: optionalNum('updated_at'),
        ttlSeconds: exists ? ttl : undefined,
        locked: locked === 1,
        roles: options.deep ? roles : undefined,
        exactMessageTokens: options.deep ? tokSum : undefined,
        consistent:
          num('message_count') === ordCount &&
          num('accepted_count') === ordCount + num('folded_count') + num('evicted_count') &&
          (!options.deep || num('token_count') === tokSum + num('summary_tokens')),
      };
    },

    async health(ref) {
      const stats = await this.stats(ref);
      return { ...stats, healthy: stats.consistent };
    },

    async touchIndex(ref, atMs) {
      await redis.zadd(indexKey(deps.keyPrefix, ref), String(atMs), memoryId(ref));
    },
  };
}

function requireTtl(ttlSeconds: number): void {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0) {
    throw new PayloadError(
      `ttlSeconds: expected an integer >= 0 (0 = never expires), got ${ttlSeconds}`,
    );
  }
}

/**
 * `value` as a script argument: '' when absent (no time given).
 * @throws PayloadError when `value` is present but not an integer >= 0 (ms since epoch).
 */
function optionalTime(what: string, value: number | undefined): number | '' {
  if (value === undefined) return '';
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new PayloadError(`${what}: expected an integer >= 0 (ms since epoch), got ${value}`);
  }
  return value;
}

function toRecord(flat: readonly string[]): Record<string, string> {
  const record: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) record[flat[i]!] = flat[i + 1]!;
  return record;
}
