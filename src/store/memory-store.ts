import type { RedisConnection } from '../redis/connection.js';
import { LockLostError, PayloadError } from '../core/errors.js';
import {
  MESSAGE_ID_PATTERN,
  PINNED_ROLES,
  SummarySchema,
  type Message,
  type Summary,
} from '../core/message.js';
import { estimateTokens } from '../tokens/counter.js';
import { indexKey, memoryId, memoryKeys, resourceIndexKey, type MemoryRef } from '../redis/keys.js';
import { withScripts } from '../redis/scripts.js';
import { listInstances, type InstanceList, type ListInstancesOptions } from './instance-list.js';
import { MAX_STORED_DATA_VALUE_BYTES, sessionDataEntries } from './session-data.js';

export type { InstanceList, InstanceSummary, ListInstancesOptions } from './instance-list.js';
export { MAX_LIST_LIMIT } from './instance-list.js';
export {
  MAX_DATA_ENTRIES,
  MAX_DATA_KEY_CHARS,
  MAX_DATA_VALUE_BYTES,
  MAX_STORED_DATA_VALUE_BYTES,
} from './session-data.js';

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

/**
 * The instance's absolute lifetime ({@link MemoryStore.append}, {@link MemoryStore.write},
 * {@link MemoryStore.putData}).
 */
export interface Lifetime {
  /**
   * The resource's `expiration`, seconds, an integer >= 0, counted from the instance's creation
   * (`meta.created_at`): the call stores the end of the lifetime, created_at + expiration, as
   * `meta.expires_at`, and every script that sets a TTL (append, write, flush, token-count
   * commit, recorded read, session-data put) caps it there, so the sliding TTL never extends the
   * instance past it. An instance already past it is removed first and the call starts a new
   * one. 0 = none (a stored end is removed). Absent: the instance keeps the end it has, if any.
   * A session-data put stores an end only when it starts the instance (no `meta` yet).
   */
  readonly expirationSeconds?: number;
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

/** A stored message with its token count, if counted yet. */
export interface StoredMessage {
  /** The message as stored (already redacted). */
  readonly message: Message;
  /**
   * Tokens committed by the token-count job (see `TokenCounter.countMessage`), exact unless
   * {@link StoredMessage.approximatedBy} is set; undefined until the job ran.
   */
  readonly tokens: number | undefined;
  /**
   * Set when {@link StoredMessage.tokens} is an approximation: how it was approximated, e.g.
   * `o200k_base (approximation for claude-sonnet-4-5)` (`approximationOf` in
   * `src/tokens/remote-providers.ts`). Absent for an exact or not yet counted message.
   */
  readonly approximatedBy?: string;
}

/**
 * Messages of an instance's log by how their tokens were counted. Exact: the model's published
 * tiktoken encoding (provider `openai`) or the provider's own counting API (`anthropic`,
 * `google`). Approximate: another model's encoding stands in (a model with no published
 * tokenizer counted locally, e.g. after a provider failure, or an unknown provider).
 */
export interface CountedBy {
  /** Messages with an exact count. */
  readonly exact: number;
  /** Messages with an approximate count (their approximations: `approximatedBy`). */
  readonly approximate: number;
  /** Messages not counted yet: only their append-time estimate is in `estimatedTokens`. */
  readonly estimated: number;
}

/**
 * Longest approximation name {@link MemoryStore.commitTokens} and {@link MemoryStore.applyFlush}
 * accept, characters: 512 (memq's own are at most 232: `approximationOf`).
 */
export const MAX_APPROXIMATION_CHARS = 512;

/**
 * Prefix of an approximation mark in the `tok` family: `tok['~' + id]` = how `tok[id]` was
 * approximated (absent = exact). Message ids are ULIDs, which never start with it.
 */
export const APPROXIMATION_MARK_PREFIX = '~';

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
  /**
   * Committed tokens of counted messages plus the summary's tokens; of these,
   * {@link MemoryWindow.approximateTokens} are approximate.
   */
  readonly tokenCount: number;
  /** Append-time estimate of the messages not counted yet. */
  readonly estimatedTokens: number;
  /**
   * True when every message is counted (`estimatedTokens == 0`) and every count, the summary's
   * included, is exact (`countedBy.approximate == 0`, no `summaryApproximatedBy`).
   */
  readonly exact: boolean;
  /**
   * The log's messages by kind of count. `exact` and `estimated` come from the `tok` family's
   * size and `approximate` from `meta.approximated_by`, so they add up to `total` while the
   * instance is consistent (`MemoryStats.consistent`).
   */
  readonly countedBy: CountedBy;
  /** Of {@link MemoryWindow.tokenCount}, the tokens counted by an approximation (messages and summary). */
  readonly approximateTokens: number;
  /**
   * The distinct approximations behind the approximate counts of the log's messages and of the
   * summary, sorted (e.g. `['o200k_base (approximation for claude-sonnet-4-5)']`); empty when
   * every count is exact.
   */
  readonly approximatedBy: readonly string[];
  /** Set when the summary's `tokens` is an approximation: how it was approximated. */
  readonly summaryApproximatedBy?: string;
  /** Messages ever accepted into this instance (since its last write or clear). */
  readonly acceptedCount: number;
  /** The rolling summary, if a flush has folded messages into one. */
  readonly summary: Summary | undefined;
  /** Flush/write/clear generation; a flush plan commits only against the epoch it read. */
  readonly epoch: number;
  /** Reads of the page's messages (only with `withAccess`; absent id = never read). */
  readonly access?: ReadonlyMap<string, { readonly count: number; readonly lastMs: number }>;
}

/** One message's count for {@link MemoryStore.commitTokens}. */
export interface TokenCommit {
  /** The message id. */
  readonly id: string;
  /** Its tokens, integer >= 0. */
  readonly tokens: number;
  /**
   * How the count was approximated (1..{@link MAX_APPROXIMATION_CHARS} characters); absent when
   * it is exact.
   */
  readonly approximatedBy?: string;
}

/** Outcome of {@link MemoryStore.commitTokens}. */
export interface CommitTokensResult {
  /** Counts written (exact or approximate). */
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
  /**
   * How `summary.tokens` was approximated (1..{@link MAX_APPROXIMATION_CHARS} characters, e.g.
   * `localApproximation` of the resource's provider and model); absent when it is exact.
   * Ignored without `summary`.
   */
  readonly summaryApproximatedBy?: string | undefined;
}

/** Outcome of {@link MemoryStore.applyFlush}. */
export interface FlushCommitResult {
  /** Folded ids that were still in the log and are now removed. */
  readonly folded: number;
  /** Evicted ids that were still in the log and are now removed. */
  readonly evicted: number;
  /** `message_count` after the commit. */
  readonly messageCount: number;
  /** `token_count` after the commit (counted messages + summary). */
  readonly tokenCount: number;
  /** The new epoch. */
  readonly epoch: number;
}

/** Counters and health of one instance ({@link MemoryStore.stats}). */
export interface MemoryStats {
  /**
   * False when no key of the instance exists: no log, no `meta` and no session data (an instance
   * holding only session data exists, with 0 messages).
   */
  readonly exists: boolean;
  /** Messages in the log (`ZCARD ord`). */
  readonly messageCount: number;
  /** `message_count` counter; equals `messageCount` when consistent. */
  readonly countedMessages: number;
  /** Committed tokens (messages + summary), approximate ones included. */
  readonly tokenCount: number;
  /** Estimated tokens of messages not counted yet. */
  readonly estimatedTokens: number;
  /** Messages waiting for a count. */
  readonly uncountedMessages: number;
  /** As {@link MemoryWindow.exact}: no estimate pending and no approximate count. */
  readonly exact: boolean;
  /**
   * The log's messages by kind of count (`approximate` from `meta.approximated_by`, `estimated`
   * = {@link MemoryStats.uncountedMessages}, `exact` the rest of `messageCount`).
   */
  readonly countedBy: CountedBy;
  /** Of {@link MemoryStats.tokenCount}, the tokens counted by an approximation (messages and summary). */
  readonly approximateTokens: number;
  /** As {@link MemoryWindow.approximatedBy}: the approximations of the messages and the summary, sorted. */
  readonly approximatedBy: readonly string[];
  /**
   * Messages with an approximate count per approximation (`meta.approximated_by`), e.g.
   * `{ 'o200k_base (approximation for claude-sonnet-4-5)': 12 }`; the summary's is in
   * {@link MemoryStats.summaryApproximatedBy}.
   */
  readonly approximateMessagesBy: Readonly<Record<string, number>>;
  /** Set when the summary's tokens are an approximation: how it was approximated. */
  readonly summaryApproximatedBy: string | undefined;
  /** Entries of the instance's session data ({@link MemoryStore.putData}); 0 without any. */
  readonly dataEntries: number;
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
  /** Sum of the committed per-message counts, approximate ones included (deep stats only). */
  readonly exactMessageTokens: number | undefined;
  /**
   * Recount of the approximate per-message counts (deep stats only): their tokens and their
   * number per approximation, from the `tok` family's marks.
   */
  readonly approximateRecount:
    { readonly tokens: number; readonly by: Readonly<Record<string, number>> } | undefined;
  /**
   * docs/architecture.md, invariant 3 and the no-loss accounting: `countedMessages == messageCount`,
   * `acceptedCount == messageCount + foldedCount + evictedCount`, approximate messages and
   * uncounted ones fit in the log and approximate tokens in `tokenCount`, and (deep stats only)
   * `tokenCount == exactMessageTokens + summaryTokens` and the approximate counters equal
   * {@link MemoryStats.approximateRecount}.
   */
  readonly consistent: boolean;
}

/** The largest page {@link MemoryStore.read} returns (Lua `unpack` limits and reply size). */
export const MAX_PAGE_SIZE = 1000;

/** Which page {@link MemoryStore.readNewest} returns. */
export interface NewestPageRequest {
  /**
   * Only messages with an id below this one (a ULID): the oldest id of the previous page.
   * Absent: from the newest message.
   */
  readonly beforeId?: string;
  /** Messages, 1..{@link MAX_PAGE_SIZE}. */
  readonly limit: number;
  /**
   * Also return every pinned message and the summary and counters ({@link NewestPage.first}),
   * for the first page of a read. Default false.
   */
  readonly withPinned?: boolean;
}

/** What the first page of a newest-first read adds ({@link NewestPageRequest.withPinned}). */
export interface NewestPageFirst {
  /**
   * Every pinned message of the log (`PINNED_ROLES`: system, developer), in id order, with its
   * count; those in this page's range are also in {@link NewestPage.messages}.
   */
  readonly pinned: readonly StoredMessage[];
  /** The rolling summary, if a flush has folded messages into one. */
  readonly summary: Summary | undefined;
  /** Set when the summary's `tokens` is an approximation: how it was approximated. */
  readonly summaryApproximatedBy: string | undefined;
  /** `token_count`: committed tokens of counted messages plus the summary's. */
  readonly tokenCount: number;
  /** `estimated_tokens`: the append-time estimates of the messages not counted yet. */
  readonly estimatedTokens: number;
  /** `summary_tokens`: tokens of the summary (0 without one). */
  readonly summaryTokens: number;
}

/** One page of {@link MemoryStore.readNewest}, a consistent snapshot. */
export interface NewestPage {
  /** Up to `limit` messages, the newest below `beforeId`, in id (= log) order. */
  readonly messages: readonly StoredMessage[];
  /** True when the log holds messages older than this page. */
  readonly hasOlder: boolean;
  /**
   * The oldest id of the page's range (pass it as the next page's `beforeId`), also when its
   * body is gone; undefined for an empty page.
   */
  readonly oldestId: string | undefined;
  /** The newest id of the page's range; undefined for an empty page. */
  readonly newestId: string | undefined;
  /** Messages in the log (`ZCARD ord`). */
  readonly total: number;
  /** The instance's epoch (+1 on every flush, write and clear); undefined without `meta`. */
  readonly epoch: number | undefined;
  /** `meta.created_at`, ms since epoch; undefined without `meta`. */
  readonly createdAt: number | undefined;
  /** Only with {@link NewestPageRequest.withPinned}. */
  readonly first?: NewestPageFirst;
}

/**
 * Redis-backed memory store. Every write is one Lua script on keys sharing the instance's hash
 * tag (docs/architecture.md, "Redis layout"), so it is atomic and cluster-safe.
 */
export interface MemoryStore {
  /**
   * Appends `messages` (already validated and, where a policy applies, redacted) in one script:
   * skips ids already accepted, stores the rest in id order, adds their estimates to
   * `estimated_tokens`, slides the TTL of every key family (0 = never expires), capped at the
   * end of the instance's lifetime ({@link Lifetime}). With `enqueuedAtMs` at or before the
   * erasure tombstone it writes nothing and reports the batch as `erased`.
   * @throws PayloadError when `ttlSeconds`, `enqueuedAtMs` or `expirationSeconds` is not an
   *   integer >= 0.
   */
  append(
    ref: MemoryRef,
    messages: readonly Message[],
    ttlSeconds: number,
    options?: EnqueuedAt & Lifetime,
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
  /**
   * Commits counts for ids still uncounted and still in the log, in one script: each count
   * replaces its estimate in `token_count`; an approximate one (`approximatedBy`) is marked as
   * such per message and adds to `approximate_tokens` and `approximated_by`.
   * @throws PayloadError when a count is not an integer >= 0, an `approximatedBy` is empty or
   *   longer than {@link MAX_APPROXIMATION_CHARS}, or `ttlSeconds` is not an integer >= 0.
   */
  commitTokens(
    ref: MemoryRef,
    counts: readonly TokenCommit[],
    ttlSeconds: number,
  ): Promise<CommitTokensResult>;
  /**
   * Commits a flush plan in one script, only while `lockToken` is the instance lock's value and
   * the epoch is unchanged (docs/architecture.md, invariant 5). Removes exactly the planned ids still in the
   * log, so messages appended after planning survive.
   * @throws LockLostError when the lock is no longer the caller's, or the epoch moved (a write,
   *   clear or other flush committed since planning): nothing changed, re-plan.
   * @throws Error (`INVALID_PLAN`) for a folded id above the summary's watermark.
   * @throws PayloadError for a `summaryApproximatedBy` that is empty or longer than
   *   {@link MAX_APPROXIMATION_CHARS}.
   */
  applyFlush(ref: MemoryRef, commit: FlushCommit, ttlSeconds: number): Promise<FlushCommitResult>;
  /**
   * Atomically replaces the log with `messages` (sorted by id): summary and watermark removed,
   * accounting restarted, epoch + 1, TTL set (capped at the end of the instance's lifetime,
   * {@link Lifetime}; `created_at` stays). The messages are uncounted afterwards. With
   * `enqueuedAtMs` at or before the erasure tombstone nothing changes (`refused`).
   * @throws PayloadError for repeated ids, or a `ttlSeconds` / `enqueuedAtMs` /
   *   `expirationSeconds` that is not an integer >= 0.
   */
  write(
    ref: MemoryRef,
    messages: readonly Message[],
    ttlSeconds: number,
    options?: EnqueuedAt & Lifetime,
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
   * Removes every key family but session data put after `requestedAtMs` (a put that landed
   * while the delete waited in the queue: see {@link MemoryStore.putData}), and both index
   * entries unless that data is kept (per-resource entry first); raises the erasure tombstone
   * as {@link MemoryStore.clear} does. Returns the messages removed and the tombstone.
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
  /**
   * Records activity in the maintenance index and in the per-resource index that
   * {@link MemoryStore.listInstances} reads (outside the scripts: each is another slot), global
   * shard first, so a crash between the two leaves nothing the sweep cannot see.
   */
  touchIndex(ref: MemoryRef, atMs: number): Promise<void>;
  /**
   * One page of the instances of `project`'s `resource`, newest activity first, with each one's
   * messages and tokens (src/store/instance-list.ts, `listInstances`, for the order, the cursor
   * and the skipping of expired instances).
   * @throws PayloadError naming `project`, `resource`, `limit` (an integer in 1..100) or
   *   `cursor` (not a `nextCursor` of this listing).
   */
  listInstances(
    project: string,
    resource: string,
    options: ListInstancesOptions,
  ): Promise<InstanceList>;
  /**
   * The instance's session data, entry key -> value; `{}` when there is none. One HGETALL.
   */
  getData(ref: MemoryRef): Promise<Record<string, string>>;
  /**
   * Replaces the instance's session data with `entries` (values already redacted by the caller);
   * an empty map deletes it, with the `meta` of an instance that never had a log (the instance is
   * then gone). A put is activity: every key family of the instance takes
   * `ttlSeconds` (0 = never expires), capped at the end of the instance's lifetime
   * (`meta.expires_at`), and the map slides with the log on every append, write and flush. A put
   * that finds no `meta` (a new instance, or one holding only session data) starts the lifetime
   * as an append does ({@link Lifetime}: `created_at` = the put time, `expires_at` = created_at +
   * `expirationSeconds`), so session data never outlives the resource's `expiration`; an instance
   * past its end is removed first and the put starts a new one. The put time (the store's clock)
   * is kept with the map: a delete requested at or after it removes the map, an older delete
   * still queued keeps it. A clear keeps it (it is not conversation). A non-empty put records
   * activity in both indexes ({@link MemoryStore.touchIndex}) before the script, so a crash
   * between the two leaves index entries without data (which the sweep and the listing remove),
   * never data in no index, and again after it, so a delete that ran in between (and removed
   * the entries) does not leave the new map unindexed. One script (`put-data.lua`).
   * @param options.expirationSeconds The resource's `expiration` ({@link Lifetime}); absent or
   *   0: the instance has no end (an existing instance keeps the end it has).
   * @throws PayloadError, before any write, for more than 64 entries, a key outside 1..128
   *   characters, a value that is not a string or is over {@link MAX_STORED_DATA_VALUE_BYTES}
   *   UTF-8 bytes (src/store/session-data.ts; each named by its position, never by its key), or
   *   a `ttlSeconds` / `expirationSeconds` that is not an integer >= 0.
   */
  putData(
    ref: MemoryRef,
    entries: Readonly<Record<string, string>>,
    ttlSeconds: number,
    options?: Lifetime,
  ): Promise<void>;
  /**
   * One page of the log from its newest end (keyset on the id: stable while appends and flushes
   * commit between pages), with, on the first page, every pinned message, the summary and the
   * counters. The first page of an instance stored before pinned messages were indexed indexes
   * them, once (`context.lua`). A missing instance reads as empty. For src/store/context-read.ts.
   * @throws PayloadError for a `beforeId` that is not a ULID or a `limit` outside
   *   1..{@link MAX_PAGE_SIZE}.
   */
  readNewest(ref: MemoryRef, page: NewestPageRequest): Promise<NewestPage>;
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
      const expiration = optionalExpiration('append', options.expirationSeconds);
      const k = keysOf(ref);
      const args: (string | number)[] = [
        ttlSeconds,
        now(),
        pendingWindowMs,
        enqueuedAt,
        expiration,
      ];
      for (const message of messages) {
        args.push(message.id, JSON.stringify(message), estimateTokens(message), pinnedArg(message));
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
        k.pin,
        k.data,
        ...args,
      )) as [number, number, number, number, number];
      return { added, duplicates, needsTokenCount: needsTokenCount === 1, messageCount, erased };
    },

    async read(ref, page = {}) {
      const offset = Math.max(0, Math.trunc(page.offset ?? 0));
      const limit = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.trunc(page.limit ?? 100)));
      const k = keysOf(ref);
      const [total, ids, bodies, counts, metaFlat, accessValues, marks, tokFields] =
        (await redis.memqRead(
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
        )) as [
          number,
          string[],
          (string | null)[],
          (string | null)[],
          string[],
          (string | null)[],
          (string | null)[],
          number,
        ];
      const meta = toRecord(metaFlat);
      const messages = storedMessages(ids, bodies, counts, marks);
      const estimatedTokens = Number(meta.estimated_tokens ?? 0);
      const approximation = approximationOfMeta(meta);
      // `tok` holds a count per counted message plus a mark per approximate one.
      const counted = Math.max(0, tokFields - approximation.messages);
      const countedBy = {
        exact: Math.max(0, counted - approximation.messages),
        approximate: approximation.messages,
        estimated: Math.max(0, total - counted),
      };
      return {
        messages,
        total,
        offset,
        limit,
        hasMore: offset + ids.length < total,
        messageCount: Number(meta.message_count ?? 0),
        tokenCount: Number(meta.token_count ?? 0),
        estimatedTokens,
        exact: estimatedTokens === 0 && approximation.exact,
        countedBy,
        approximateTokens: approximation.tokens,
        approximatedBy: approximation.names,
        ...(meta.summary_approximated_by !== undefined
          ? { summaryApproximatedBy: meta.summary_approximated_by }
          : {}),
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
      for (const { id, tokens, approximatedBy } of counts) {
        if (!Number.isSafeInteger(tokens) || tokens < 0) {
          throw new PayloadError(
            `commitTokens: tokens of ${id}: expected an integer >= 0, got ${tokens}`,
          );
        }
        if (approximatedBy !== undefined) {
          requireApproximation(`commitTokens: approximatedBy of ${id}`, approximatedBy);
        }
      }
      const k = keysOf(ref);
      const args: (string | number)[] = [ttlSeconds];
      for (const { id, tokens, approximatedBy } of counts) {
        args.push(id, tokens, approximatedBy ?? '');
      }
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
      if (commit.summaryApproximatedBy !== undefined) {
        requireApproximation('applyFlush: summaryApproximatedBy', commit.summaryApproximatedBy);
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
        k.pin,
        k.data,
        commit.lockToken,
        commit.epoch,
        ttlSeconds,
        now(),
        summary ? JSON.stringify(summary) : '',
        summary?.tokens ?? 0,
        summary?.covers_through_id ?? '',
        commit.foldedIds.length,
        (summary && commit.summaryApproximatedBy) ?? '',
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
      const expiration = optionalExpiration('write', options.expirationSeconds);
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
      const args: (string | number)[] = [ttlSeconds, now(), enqueuedAt, expiration];
      for (const message of sorted)
        args.push(message.id, JSON.stringify(message), estimateTokens(message), pinnedArg(message));
      const [messageCount, epoch, refused] = (await redis.memqWrite(
        k.ord,
        k.msg,
        k.tok,
        k.unc,
        k.meta,
        k.seen,
        k.acc,
        k.erased,
        k.pin,
        k.data,
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
        k.pin,
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
      const [removed, erasedAtMs, dataKept] = (await redis.memqDelete(
        k.ord,
        k.msg,
        k.tok,
        k.unc,
        k.meta,
        k.seen,
        k.acc,
        k.erased,
        k.pin,
        k.data,
        requestedAt,
        ERASURE_TOMBSTONE_TTL_SECONDS,
      )) as [number, number, number];
      if (dataKept === 0) {
        // Per-resource entry first: a crash between the two leaves the global entry, which the
        // sweep drops, never a per-resource entry the sweep cannot see.
        await redis.zrem(resourceIndexKey(deps.keyPrefix, ref.project, ref.resource), ref.key);
        await redis.zrem(indexKey(deps.keyPrefix, ref), memoryId(ref));
      }
      return { removed, erasedAtMs };
    },

    async stats(ref, options = {}) {
      const k = keysOf(ref);
      const [
        ordCount,
        metaFlat,
        ttl,
        locked,
        uncounted,
        roleFlat,
        tokSum,
        approximateSum,
        approximatedFlat,
        dataFields,
      ] = (await redis.memqInspect(
        k.ord,
        k.msg,
        k.meta,
        k.lock,
        k.unc,
        k.tok,
        k.data,
        options.deep ? '1' : '0',
      )) as [
        number,
        string[],
        number,
        number,
        number,
        (string | number)[],
        number,
        number,
        (string | number)[],
        number,
      ];
      const meta = toRecord(metaFlat);
      const num = (field: string) => Number(meta[field] ?? 0);
      const optionalNum = (field: string) =>
        meta[field] === undefined ? undefined : Number(meta[field]);
      const roles: Record<string, number> = {};
      for (let i = 0; i + 1 < roleFlat.length; i += 2)
        roles[String(roleFlat[i])] = Number(roleFlat[i + 1]);
      // The session data holds its entries plus the put-time field ''.
      const dataEntries = Math.max(0, dataFields - 1);
      const exists = ttl !== -2 || ordCount > 0 || dataFields > 0;
      const approximation = approximationOfMeta(meta);
      const recount: Record<string, number> = {};
      for (let i = 0; i + 1 < approximatedFlat.length; i += 2)
        recount[String(approximatedFlat[i])] = Number(approximatedFlat[i + 1]);
      const countedBy = {
        exact: Math.max(0, ordCount - uncounted - approximation.messages),
        approximate: approximation.messages,
        estimated: uncounted,
      };
      return {
        exists,
        messageCount: ordCount,
        countedMessages: num('message_count'),
        tokenCount: num('token_count'),
        estimatedTokens: num('estimated_tokens'),
        uncountedMessages: uncounted,
        exact: num('estimated_tokens') === 0 && approximation.exact,
        countedBy,
        approximateTokens: approximation.tokens,
        approximatedBy: approximation.names,
        approximateMessagesBy: approximation.by,
        summaryApproximatedBy: meta.summary_approximated_by,
        dataEntries,
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
        approximateRecount: options.deep ? { tokens: approximateSum, by: recount } : undefined,
        consistent:
          num('message_count') === ordCount &&
          num('accepted_count') === ordCount + num('folded_count') + num('evicted_count') &&
          approximation.valid &&
          approximation.messages + uncounted <= ordCount &&
          approximation.tokens <= num('token_count') &&
          (!options.deep ||
            (num('token_count') === tokSum + num('summary_tokens') &&
              num('approximate_tokens') === approximateSum &&
              sameCounts(approximation.by, recount))),
      };
    },

    async health(ref) {
      const stats = await this.stats(ref);
      return { ...stats, healthy: stats.consistent };
    },

    async touchIndex(ref, atMs) {
      await redis.zadd(indexKey(deps.keyPrefix, ref), String(atMs), memoryId(ref));
      await redis.zadd(
        resourceIndexKey(deps.keyPrefix, ref.project, ref.resource),
        String(atMs),
        ref.key,
      );
    },

    listInstances(project, resource, options) {
      return listInstances(
        { redis, keyPrefix: deps.keyPrefix, stats: (ref) => this.stats(ref) },
        project,
        resource,
        options,
      );
    },

    async getData(ref) {
      const flat = await redis.hgetall(keysOf(ref).data);
      // fromEntries defines own properties: a `__proto__` entry stays an entry.
      return Object.fromEntries(Object.entries(flat).filter(([key]) => key !== ''));
    },

    async putData(ref, entries, ttlSeconds, options = {}) {
      const pairs = sessionDataEntries(entries, 'data', MAX_STORED_DATA_VALUE_BYTES);
      requireTtl(ttlSeconds);
      const expiration = optionalExpiration('putData', options.expirationSeconds);
      const k = keysOf(ref);
      const putAt = now();
      if (pairs.length > 0) await this.touchIndex(ref, putAt);
      await redis.memqPutData(
        k.data,
        k.meta,
        k.ord,
        k.msg,
        k.unc,
        k.seen,
        k.tok,
        k.acc,
        k.pin,
        ttlSeconds,
        putAt,
        expiration,
        ...pairs.flat(),
      );
      if (pairs.length > 0) await this.touchIndex(ref, putAt);
    },

    async readNewest(ref, page) {
      const { beforeId, limit } = page;
      if (beforeId !== undefined && !MESSAGE_ID_PATTERN.test(beforeId)) {
        throw new PayloadError(
          `readNewest: beforeId: expected a ULID (26 Crockford base32 characters), got ${JSON.stringify(beforeId)}`,
        );
      }
      if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
        throw new PayloadError(
          `readNewest: limit: expected an integer in 1..${MAX_PAGE_SIZE}, got ${limit}`,
        );
      }
      const k = keysOf(ref);
      const [
        total,
        ids,
        bodies,
        counts,
        marks,
        older,
        epoch,
        createdAt,
        metaFlat,
        pinIds,
        pinBodies,
        pinCounts,
        pinMarks,
      ] = (await redis.memqContext(
        k.ord,
        k.msg,
        k.tok,
        k.meta,
        k.pin,
        beforeId ?? '',
        limit,
        page.withPinned ? '1' : '0',
      )) as [
        number,
        string[],
        (string | null)[],
        (string | null)[],
        (string | null)[],
        number,
        string | null,
        string | null,
        string[],
        string[],
        (string | null)[],
        (string | null)[],
        (string | null)[],
      ];
      const result = {
        messages: storedMessages(ids, bodies, counts, marks),
        hasOlder: older === 1,
        oldestId: ids[0],
        newestId: ids.at(-1),
        total,
        epoch: epoch == null ? undefined : Number(epoch),
        createdAt: createdAt == null ? undefined : Number(createdAt),
      };
      if (!page.withPinned) return result;
      const meta = toRecord(metaFlat);
      return {
        ...result,
        first: {
          pinned: storedMessages(pinIds, pinBodies, pinCounts, pinMarks),
          summary: meta.summary ? (JSON.parse(meta.summary) as Summary) : undefined,
          summaryApproximatedBy: meta.summary_approximated_by,
          tokenCount: Number(meta.token_count ?? 0),
          estimatedTokens: Number(meta.estimated_tokens ?? 0),
          summaryTokens: Number(meta.summary_tokens ?? 0),
        },
      };
    },
  };
}

/** The pinned flag of a message as the append and write scripts take it. */
function pinnedArg(message: Message): '1' | '0' {
  return PINNED_ROLES.has(message.role) ? '1' : '0';
}

/**
 * Messages of a script reply: parallel lists of ids, bodies (null = gone: skipped), counts
 * (null = uncounted) and approximation marks (null = none; the list may be empty).
 */
function storedMessages(
  ids: readonly string[],
  bodies: readonly (string | null)[],
  counts: readonly (string | null)[],
  marks: readonly (string | null)[],
): StoredMessage[] {
  const messages: StoredMessage[] = [];
  ids.forEach((_, i) => {
    const body = bodies[i];
    if (body == null) return;
    const count = counts[i];
    const mark = count == null ? undefined : marks[i];
    messages.push({
      message: JSON.parse(body) as Message,
      tokens: count == null ? undefined : Number(count),
      ...(mark ? { approximatedBy: mark } : {}),
    });
  });
  return messages;
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

/**
 * `expirationSeconds` as a script argument: '' when absent (keep the stored end of the lifetime).
 * @throws PayloadError when it is present but not an integer >= 0.
 */
function optionalExpiration(what: string, value: number | undefined): number | '' {
  if (value === undefined) return '';
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new PayloadError(
      `${what}: expirationSeconds: expected an integer >= 0 (0 = none), got ${value}`,
    );
  }
  return value;
}

/**
 * @throws PayloadError naming `what` when `value` is not a string of 1..
 *   {@link MAX_APPROXIMATION_CHARS} characters.
 */
function requireApproximation(what: string, value: string): void {
  if (typeof value !== 'string' || value.length < 1 || value.length > MAX_APPROXIMATION_CHARS) {
    throw new PayloadError(
      `${what}: expected 1-${MAX_APPROXIMATION_CHARS} characters naming how the count was approximated, got ${JSON.stringify(value)}`,
    );
  }
}

/**
 * The approximate counts an instance's `meta` records: `approximated_by` (JSON approximation ->
 * messages), `approximate_tokens` and `summary_approximated_by`. `tokens` includes the summary's
 * when it is approximate; `names` are the approximations of the messages and the summary,
 * sorted; `exact` is true when nothing is approximate; `valid` is false when `approximated_by`
 * is not such a JSON object (then it counts as no message, and as not exact).
 */
function approximationOfMeta(meta: Record<string, string>) {
  let by: Record<string, number> = {};
  let valid = true;
  if (meta.approximated_by !== undefined) {
    try {
      const parsed = JSON.parse(meta.approximated_by) as unknown;
      if (
        typeof parsed !== 'object' ||
        parsed === null ||
        Array.isArray(parsed) ||
        !Object.values(parsed).every((n) => Number.isSafeInteger(n) && (n as number) > 0)
      ) {
        throw new TypeError('not an object of positive integers');
      }
      by = parsed as Record<string, number>;
    } catch {
      valid = false;
    }
  }
  const messages = Object.values(by).reduce((sum, n) => sum + n, 0);
  const summaryApproximatedBy = meta.summary_approximated_by;
  const names = new Set(Object.keys(by));
  if (summaryApproximatedBy !== undefined) names.add(summaryApproximatedBy);
  return {
    by,
    valid,
    messages,
    tokens:
      Number(meta.approximate_tokens ?? 0) +
      (summaryApproximatedBy !== undefined ? Number(meta.summary_tokens ?? 0) : 0),
    names: [...names].sort(),
    exact: valid && messages === 0 && summaryApproximatedBy === undefined,
  };
}

/** True when `a` and `b` hold the same keys with the same values. */
function sameCounts(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>) {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

function toRecord(flat: readonly string[]): Record<string, string> {
  const record: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) record[flat[i]!] = flat[i + 1]!;
  return record;
}
