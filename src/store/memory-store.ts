import type { Redis } from 'ioredis';
import type { Message } from '../core/message.js';
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
}

/** A stored message with its exact token count, if counted yet. */
export interface StoredMessage {
  readonly message: Message;
  /** Exact tokens (see `TokenCounter.countMessage`); undefined until the token-count job ran. */
  readonly tokens: number | undefined;
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
  /** Messages ever accepted into this instance. */
  readonly acceptedCount: number;
}

/** Outcome of {@link MemoryStore.commitTokens}. */
export interface CommitTokensResult {
  /** Exact counts written. */
  readonly committed: number;
  /** `token_count` after the commit. */
  readonly tokenCount: number;
  /** `estimated_tokens` after the commit. */
  readonly estimatedTokens: number;
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
   * `estimated_tokens`, slides the TTL of every key family (0 = never expires).
   */
  append(ref: MemoryRef, messages: readonly Message[], ttlSeconds: number): Promise<AppendResult>;
  /**
   * A consistent snapshot of `limit` messages from `offset` (defaults 0 and 100; limit is capped
   * at {@link MAX_PAGE_SIZE}) with the instance's counters. A missing instance reads as empty.
   */
  read(ref: MemoryRef, page?: { offset?: number; limit?: number }): Promise<MemoryWindow>;
  /** Up to `max` messages still waiting for an exact token count (smallest estimates first). */
  uncounted(ref: MemoryRef, max: number): Promise<Message[]>;
  /** Commits exact counts for ids still uncounted and still in the log. */
  commitTokens(
    ref: MemoryRef,
    counts: ReadonlyArray<{ id: string; tokens: number }>,
    ttlSeconds: number,
  ): Promise<CommitTokensResult>;
  /** Marks the token-count burst as taken so the next append opens a new one. */
  clearTokenCountPending(ref: MemoryRef): Promise<void>;
  /** Records activity in the maintenance index (outside the script: it is another slot). */
  touchIndex(ref: MemoryRef, atMs: number): Promise<void>;
}

/** Dependencies of {@link createMemoryStore}. */
export interface MemoryStoreDeps {
  /** Connection used for all commands. */
  readonly redis: Redis;
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
    async append(ref, messages, ttlSeconds) {
      const k = keysOf(ref);
      const args: (string | number)[] = [ttlSeconds, now(), pendingWindowMs];
      for (const message of messages) {
        args.push(message.id, JSON.stringify(message), estimateTokens(message));
      }
      const [added, duplicates, needsTokenCount, messageCount] = (await redis.memqAppend(
        k.ord,
        k.msg,
        k.unc,
        k.meta,
        k.seen,
        k.tok,
        ...args,
      )) as [number, number, number, number];
      return { added, duplicates, needsTokenCount: needsTokenCount === 1, messageCount };
    },

    async read(ref, page = {}) {
      const offset = Math.max(0, Math.trunc(page.offset ?? 0));
      const limit = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.trunc(page.limit ?? 100)));
      const k = keysOf(ref);
      const [total, ids, bodies, counts, metaFlat] = (await redis.memqRead(
        k.ord,
        k.msg,
        k.tok,
        k.meta,
        offset,
        limit,
      )) as [number, string[], (string | null)[], (string | null)[], string[]];
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
      };
    },

    async uncounted(ref, max) {
      const k = keysOf(ref);
      const ids = await redis.zrange(k.unc, '0', String(max - 1));
      if (ids.length === 0) return [];
      const bodies = await redis.hmget(k.msg, ...ids);
      return bodies.flatMap((body) => (body == null ? [] : [JSON.parse(body) as Message]));
    },

    async commitTokens(ref, counts, ttlSeconds) {
      const k = keysOf(ref);
      const args: (string | number)[] = [ttlSeconds];
      for (const { id, tokens } of counts) args.push(id, tokens);
      const [committed, tokenCount, estimatedTokens] = (await redis.memqCommitTokens(
        k.ord,
        k.tok,
        k.unc,
        k.meta,
        ...args,
      )) as [number, number, number];
      return { committed, tokenCount, estimatedTokens };
    },

    async clearTokenCountPending(ref) {
      await redis.hdel(keysOf(ref).meta, 'token_count_pending_at');
    },

    async touchIndex(ref, atMs) {
      await redis.zadd(indexKey(deps.keyPrefix, ref), String(atMs), memoryId(ref));
    },
  };
}

function toRecord(flat: readonly string[]): Record<string, string> {
  const record: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) record[flat[i]!] = flat[i + 1]!;
  return record;
}
