/**
 * Reading a memory's log in pages for a flush (docs/architecture.md, "Flush"): the whole log, or
 * only its oldest pages. Each page is one consistent `read` script call, but pages are separate
 * calls and appends are not blocked by the flush lock, so a message can come twice across pages
 * (kept once here) or be missed (it then waits for the next flush). What a flush removes is
 * fenced at commit by the epoch of the first page (`MemoryStore.applyFlush`).
 */
import type { Summary } from '../core/message.js';
import type { MemoryUsage, WindowMessage } from '../flush/plan.js';
import type { AccessStats } from '../flush/strategies.js';
import type { MemoryRef } from '../redis/keys.js';
import { MAX_PAGE_SIZE, type MemoryStore, type StoredMessage } from './memory-store.js';

/** What was read of a memory's log, oldest first. */
export interface LogRead {
  /** The messages read, in id order, each id once. */
  readonly messages: readonly WindowMessage[];
  /** The instance's epoch as of the first page (fences the flush commit). */
  readonly epoch: number;
  /** The rolling summary as of the first page; undefined when there is none. */
  readonly summary: Summary | undefined;
  /** Tokens of {@link summary}; 0 without one. */
  readonly summaryTokens: number;
}

/** The whole log with its access stats (lru, lfu, token_aware_lru plan from them). */
export interface WholeLog extends LogRead {
  /** Last read and read count per message id, as of each message's page. */
  readonly access: AccessStats;
}

/** The oldest pages of the log and the instance's totals. */
export interface LogPrefix extends LogRead {
  /**
   * The whole instance's usage from its counters (first page): exact tokens plus the estimates
   * of messages not counted yet, and every message, read or not.
   */
  readonly usage: MemoryUsage;
  /** False while the log has pages not read yet. */
  readonly complete: boolean;
}

/**
 * Page size of {@link readOldestPages}: a flush that removes fewer messages than this reads one
 * page.
 */
export const PREFIX_PAGE_SIZE = 200;

/** Appends the messages of `page` whose ids are not in `seen` (a late id below the page edge shifts offsets). */
function pushNew(into: WindowMessage[], seen: Set<string>, page: readonly StoredMessage[]): void {
  for (const m of page) {
    if (seen.has(m.message.id)) continue;
    seen.add(m.message.id);
    into.push(m);
  }
}

/**
 * Reads an instance's whole log, {@link MAX_PAGE_SIZE} messages per page, with the access stats
 * of every message and the epoch and summary of the first page. A missing instance reads as
 * empty (epoch 0).
 */
export async function readWholeLog(store: MemoryStore, ref: MemoryRef): Promise<WholeLog> {
  const messages: WindowMessage[] = [];
  const seen = new Set<string>();
  let epoch = 0;
  let summary: Summary | undefined;
  const lastAccessMs = new Map<string, number>();
  const count = new Map<string, number>();
  for (let offset = 0; ; offset += MAX_PAGE_SIZE) {
    const page = await store.read(ref, { offset, limit: MAX_PAGE_SIZE, withAccess: true });
    if (offset === 0) {
      epoch = page.epoch;
      summary = page.summary;
    }
    pushNew(messages, seen, page.messages);
    for (const [id, stats] of page.access ?? []) {
      lastAccessMs.set(id, stats.lastMs);
      count.set(id, stats.count);
    }
    if (!page.hasMore) break;
  }
  return {
    messages,
    epoch,
    summary,
    summaryTokens: summary?.tokens ?? 0,
    access: { lastAccessMs, count },
  };
}

/**
 * Reads the oldest pages of an instance's log: the first page, then the next one for as long as
 * `readMore` asks for it and the log has more. `readMore` is called once after every page
 * (the last one too, so a caller can decide on everything read), with all that was read so far;
 * it decides, the reader only pages. So a flush that plans from the oldest messages reads what
 * it removes, not the whole memory.
 * @param pageSize Messages per page, 1-{@link MAX_PAGE_SIZE}; default {@link PREFIX_PAGE_SIZE}.
 */
export async function readOldestPages(
  store: MemoryStore,
  ref: MemoryRef,
  readMore: (prefix: LogPrefix) => boolean,
  pageSize = PREFIX_PAGE_SIZE,
): Promise<LogPrefix> {
  const messages: WindowMessage[] = [];
  const seen = new Set<string>();
  const first = await store.read(ref, { offset: 0, limit: pageSize });
  pushNew(messages, seen, first.messages);
  const prefix = {
    messages,
    epoch: first.epoch,
    summary: first.summary,
    summaryTokens: first.summary?.tokens ?? 0,
    usage: { tokens: first.tokenCount + first.estimatedTokens, messages: first.total },
  };
  let offset = first.messages.length;
  let hasMore = first.hasMore;
  while (readMore({ ...prefix, complete: !hasMore }) && hasMore) {
    const page = await store.read(ref, { offset, limit: pageSize });
    pushNew(messages, seen, page.messages);
    offset += page.messages.length;
    hasMore = page.hasMore && page.messages.length > 0;
  }
  return { ...prefix, complete: !hasMore };
}
