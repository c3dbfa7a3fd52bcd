/**
 * The context read: what to send to the model now, within a token budget (docs/architecture.md,
 * "Domain"). The rolling summary, every pinned message (instructions: `PINNED_ROLES`) and the
 * newest tool units (`toolUnits`) that fit, read page by page from the newest end of the log, so
 * a small budget reads a small part of a large log.
 */
import { ConflictError, PayloadError } from '../core/errors.js';
import type { MemoryRef } from '../core/memory-key.js';
import {
  PINNED_ROLES,
  matchToolResults,
  toolUnits,
  type Message,
  type ToolUnit,
} from '../core/message.js';
import { asChatMessages, SUMMARY_HEADING, type ChatMessage } from '../flush/summary.js';
import { estimateTokens } from '../tokens/counter.js';
import {
  MAX_PAGE_SIZE,
  type MemoryStore,
  type NewestPage,
  type StoredMessage,
} from './memory-store.js';

/**
 * Tokens that prime the model's reply, once per request: `<|start|>assistant<|message|>` in
 * OpenAI's cookbook "How to count tokens with tiktoken" (`num_tokens_from_messages`: "every
 * reply is primed with <|start|>assistant<|message|>", 3 tokens). The stored per-message counts
 * leave them out (`TOKENS_PER_MESSAGE`); a context read adds them to what it sends, so
 * `tokens` is the prompt the request costs.
 */
export const REPLY_PRIMING_TOKENS = 3;

/**
 * Tokens of the summary's heading line (`SUMMARY_HEADING` and its newline) when the summary's
 * count is the stored one: the stored `summary.tokens` counts the text without it. 6 is the
 * most any local encoding spends on it (5 in o200k_base and cl100k_base, 6 in p50k_base,
 * p50k_edit, r50k_base and gpt2; test/unit/store/context-read-heading.test.ts), so the total is
 * an upper bound and not exact; pass `summaryRecount` for an exact count.
 */
export const SUMMARY_HEADING_TOKENS = 6;

/** Messages of the first page a context read asks for; each next page doubles, up to {@link MAX_PAGE_SIZE}. */
export const FIRST_CONTEXT_PAGE = 64;

/**
 * Reads a context read starts over when a flush, write or clear commits between its pages (the
 * epoch moved) before it gives up with a ConflictError. A flush commits at most once per
 * trigger crossing, so more than one restart is already rare.
 */
export const MAX_CONTEXT_ATTEMPTS = 4;

/** Messages given to `recount` per call (at least one whole unit). */
export const RECOUNT_BATCH = 64;

/** Tokens of one message or text by another counter. */
export interface Recounted {
  /** Tokens, an integer >= 0. */
  readonly tokens: number;
  /** Set when the count is an approximation: how it was approximated. */
  readonly approximatedBy?: string;
}

/** Options of {@link readContext}. */
export interface ContextReadOptions {
  /**
   * The budget, tokens, an integer >= 1: summary + pinned messages + sent units +
   * {@link REPLY_PRIMING_TOKENS}.
   */
  maxTokens: number;
  /**
   * Counts messages for another model than the stored counts' (one result per message, in
   * order), used instead of every stored count. Called for the pinned messages and for the
   * messages of the units examined, at most {@link RECOUNT_BATCH} messages (or one unit) a call;
   * a tool result at the edge of what was read has every message read before it counted.
   * Absent: the stored count, or the append-time estimate of a message not counted yet.
   */
  recount?: (messages: readonly Message[]) => Promise<Recounted[]>;
  /**
   * Counts the summary as sent: called with the whole content of the summary's system message
   * (`SUMMARY_HEADING`, a newline, the summary text), to be counted as a system message. Absent:
   * the stored `summary.tokens` + {@link SUMMARY_HEADING_TOKENS}, not exact.
   */
  summaryRecount?: (text: string) => Promise<Recounted>;
}

/** What {@link readContext} returns. */
export interface ContextResult {
  /**
   * The messages to send, as a chat request takes them: the summary (when sent) as the leading
   * system message (`asChatMessages`), then the pinned messages and the sent units merged in
   * log (id) order and put in chat order (`chatOrder`: each tool result right after its call).
   */
  messages: ChatMessage[];
  /**
   * Tokens of {@link messages}: each message's count (stored, estimated or recounted), the
   * summary's, plus {@link REPLY_PRIMING_TOKENS} when anything is sent; 0 for nothing. Above
   * `maxTokens` only when the pinned messages alone exceed it.
   */
  tokens: number;
  /** True when every count in {@link tokens} is exact (no estimate, approximation or heading bound). */
  exact: boolean;
  /**
   * The log's non-pinned messages not sent (older than the sent units, or tool results whose
   * call is not sent) and their tokens by the
   * stored counts and estimates (`token_count - summary_tokens + estimated_tokens` less the sent
   * messages' stored counts, never recounted: that would read the whole log).
   */
  omitted: { messages: number; tokens: number };
  /** True when the summary was sent (there is one, and it fits beside the pinned messages). */
  summary: boolean;
  /**
   * Opaque: changes with every flush, write and clear, and when the instance is deleted and
   * created again (`<epoch>:<created_at>`); compare two reads' values for equality only.
   * Undefined for an instance without messages or counters.
   */
  epoch: string | undefined;
  /**
   * The newest message id in the log at the read: every message up to it is sent, counted in
   * {@link omitted}, or folded into the summary. Undefined for an empty log.
   */
  throughId: string | undefined;
}

/** One message's cost in a context read. */
interface Cost {
  readonly tokens: number;
  readonly exact: boolean;
}

/**
 * The context to send for `ref` within `options.maxTokens`:
 * 1. the summary, when there is one, as the leading system message;
 * 2. every pinned message (system, developer), always, in log order;
 * 3. the newest units (`toolUnits` over the non-pinned messages: a tool call with its results
 *    and what lies between is never split), taken newest first while summary + pinned + units +
 *    {@link REPLY_PRIMING_TOKENS} stay within the budget, stopping at the first unit that does
 *    not fit, so what is sent is a contiguous recent suffix, never a hole.
 * Pinned messages and units are output merged in log order, then put in the order the chat APIs
 * take (each tool result right after its call; a result whose call is not sent is left out and
 * counted in `omitted`: see `chatOrder`). When summary + pinned messages
 * already exceed the budget, the summary is left out (`summary: false`); when the pinned
 * messages alone do, they are returned anyway and `tokens` exceeds `maxTokens`.
 *
 * Reads pages of {@link FIRST_CONTEXT_PAGE} messages doubling up to {@link MAX_PAGE_SIZE} from
 * the newest end (`MemoryStore.readNewest`), only as far as the budget reaches: a tool result
 * whose call is older than what was read makes the read go on only while everything read so far
 * still fits (its unit holds at least that much). Pages are keyed by id; when a flush, write or
 * clear commits between two pages the read starts over.
 * @throws PayloadError naming `maxTokens` when it is not an integer >= 1, before any read.
 * @throws ConflictError when the epoch moved between pages in {@link MAX_CONTEXT_ATTEMPTS}
 *   attempts.
 * @throws Error when `recount` does not return one count (an integer >= 0) per message.
 */
export async function readContext(
  store: MemoryStore,
  ref: MemoryRef,
  options: ContextReadOptions,
): Promise<ContextResult> {
  const { maxTokens } = options;
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) {
    throw new PayloadError(`maxTokens: expected an integer >= 1, got ${maxTokens}`, {
      details: { field: 'maxTokens' },
    });
  }
  for (let attempt = 1; attempt <= MAX_CONTEXT_ATTEMPTS; attempt++) {
    const result = await attemptRead(store, ref, options);
    if (result) return result;
  }
  throw new ConflictError(
    `context read: the instance changed (a flush, write or clear committed) while it was read, ${MAX_CONTEXT_ATTEMPTS} times; read again`,
  );
}

/** One pass of {@link readContext}; undefined when the epoch moved between pages. */
async function attemptRead(
  store: MemoryStore,
  ref: MemoryRef,
  options: ContextReadOptions,
): Promise<ContextResult | undefined> {
  const { maxTokens, recount } = options;
  const first = await store.readNewest(ref, { limit: FIRST_CONTEXT_PAGE, withPinned: true });
  const head = first.first!;
  const costs = new Map<string, Cost>();

  /** Fills `costs` for `messages` (stored counts, or `recount` in one call). */
  const count = async (messages: readonly StoredMessage[]): Promise<void> => {
    const todo = messages.filter((m) => !costs.has(m.message.id));
    if (todo.length === 0) return;
    if (!recount) {
      for (const m of todo) costs.set(m.message.id, storedCost(m));
      return;
    }
    const results = await recount(todo.map((m) => m.message));
    if (!Array.isArray(results) || results.length !== todo.length) {
      throw new Error(
        `context read: recount returned ${Array.isArray(results) ? results.length : typeof results} counts for ${todo.length} messages`,
      );
    }
    todo.forEach((m, i) => costs.set(m.message.id, checkedCount(results[i], 'recount')));
  };

  const pinned = new Map<string, StoredMessage>();
  for (const m of head.pinned) pinned.set(m.message.id, m);
  let suffix: StoredMessage[] = [];
  const take = (page: NewestPage) => {
    const older: StoredMessage[] = [];
    for (const m of page.messages) {
      if (PINNED_ROLES.has(m.message.role)) {
        if (!pinned.has(m.message.id)) pinned.set(m.message.id, m);
      } else older.push(m);
    }
    suffix = [...older, ...suffix];
  };
  take(first);
  let hasOlder = first.hasOlder;
  let oldestId = first.oldestId;
  let pageSize = FIRST_CONTEXT_PAGE;

  let summaryCost: Cost | undefined;
  if (head.summary && head.summary.content !== '') {
    summaryCost = options.summaryRecount
      ? checkedCount(
          await options.summaryRecount(`${SUMMARY_HEADING}\n${head.summary.content}`),
          'summaryRecount',
        )
      : { tokens: head.summaryTokens + SUMMARY_HEADING_TOKENS, exact: false };
  }

  for (;;) {
    const pinnedList = [...pinned.values()].sort((a, b) => compareIds(a, b));
    await count(pinnedList);
    const pinnedTokens = sum(pinnedList.map((m) => costs.get(m.message.id)!.tokens));
    const withSummary =
      summaryCost !== undefined &&
      REPLY_PRIMING_TOKENS + pinnedTokens + summaryCost.tokens <= maxTokens;
    let used = REPLY_PRIMING_TOKENS + pinnedTokens + (withSummary ? summaryCost!.tokens : 0);

    const units = toolUnits(suffix, (m) => m.message);
    /** Messages of `suffix` that are tool results with their call in `suffix`. */
    const paired = new Set(
      [...matchToolResults(suffix, (m) => m.message).keys()].map((i) => suffix[i]!),
    );
    const sent: ToolUnit<StoredMessage>[] = [];
    let needMore = hasOlder;
    for (let i = units.length - 1; i >= 0; i--) {
      const unit = units[i]!;
      const open = unit.items.some(
        (m) => m.message.role === 'tool' && m.message.tool_call_id !== undefined && !paired.has(m),
      );
      if (open && hasOlder) {
        // A tool result whose call is not read yet: its unit reaches back to that call, so it
        // holds at least everything read before it. Read on only if that much still fits.
        const reach = units.slice(0, i + 1).flatMap((u) => u.items);
        await count(reach);
        if (used + sum(reach.map((m) => costs.get(m.message.id)!.tokens)) > maxTokens)
          needMore = false;
        break;
      }
      await count(batchFrom(units, i));
      const cost = sum(unit.items.map((m) => costs.get(m.message.id)!.tokens));
      if (used + cost > maxTokens) {
        needMore = false;
        break;
      }
      sent.unshift(unit);
      used += cost;
    }

    if (!needMore || oldestId === undefined) {
      return result(first, head, pinnedList, sent, withSummary ? summaryCost : undefined, costs);
    }
    pageSize = Math.min(MAX_PAGE_SIZE, pageSize * 2);
    const page = await store.readNewest(ref, { beforeId: oldestId, limit: pageSize });
    if (page.epoch !== first.epoch || page.createdAt !== first.createdAt) return undefined;
    take(page);
    hasOlder = page.hasOlder;
    oldestId = page.oldestId ?? oldestId;
    if (page.oldestId === undefined) hasOlder = false;
  }
}

/** The answer of a finished pass. */
function result(
  first: NewestPage,
  head: NonNullable<NewestPage['first']>,
  pinned: readonly StoredMessage[],
  units: readonly ToolUnit<StoredMessage>[],
  summaryCost: Cost | undefined,
  costs: ReadonlyMap<string, Cost>,
): ContextResult {
  const { ordered: merged, trimmed } = chatOrder(
    [...pinned, ...units.flatMap((unit) => unit.items)].sort((a, b) => compareIds(a, b)),
  );
  const sentCosts = merged.map((m) => costs.get(m.message.id)!);
  const anything = merged.length > 0 || summaryCost !== undefined;
  const tokens =
    (anything ? REPLY_PRIMING_TOKENS : 0) +
    sum(sentCosts.map((c) => c.tokens)) +
    (summaryCost?.tokens ?? 0);
  const exact = !trimmed && sentCosts.every((c) => c.exact) && (summaryCost?.exact ?? true);
  const logTokens = head.tokenCount - head.summaryTokens + head.estimatedTokens;
  const sentStored = sum(merged.map((m) => storedCost(m).tokens));
  return {
    messages: asChatMessages(
      summaryCost !== undefined ? head.summary : undefined,
      merged.map((m) => m.message),
    ),
    tokens,
    exact,
    omitted: {
      messages: Math.max(0, first.total - merged.length),
      tokens: Math.max(0, logTokens - sentStored),
    },
    summary: summaryCost !== undefined,
    epoch: first.epoch === undefined ? undefined : `${first.epoch}:${first.createdAt ?? ''}`,
    throughId: first.newestId,
  };
}

/**
 * `messages` (log order) as the chat APIs take them: every tool result right after the assistant
 * message whose call it answers (results of one message in log order; what lay between moves after
 * them, its order kept), and tool results whose call is not sent left out (`orphans`): OpenAI
 * refuses a tool message that does not follow its call. Such results exist when a privacy policy
 * or `do_not_persist` removed the call. A tool message stored without `tool_call_id` (before the
 * field was required) stays where it is, as stored. A call without a result is sent as stored
 * while no later assistant message is sent (a turn in progress: the caller appends the results
 * next); once a later assistant message exists the model went on without it (abandoned, as a
 * flush treats it), so it is taken out of its message's `tool_calls` (the chat APIs refuse a call
 * that no result follows), and a message left with no calls and no content is left out (`trimmed`:
 * its stored count then overstates what is sent, so the read is not exact).
 */
function chatOrder(messages: readonly StoredMessage[]): {
  ordered: StoredMessage[];
  orphans: StoredMessage[];
  trimmed: boolean;
} {
  const owners = matchToolResults(messages, (m) => m.message);
  const results = new Map<StoredMessage, StoredMessage[]>();
  const orphans: StoredMessage[] = [];
  const rest: StoredMessage[] = [];
  messages.forEach((m, i) => {
    if (m.message.role !== 'tool' || m.message.tool_call_id === undefined) {
      rest.push(m);
      return;
    }
    const at = owners.get(i);
    if (at === undefined) {
      orphans.push(m);
      return;
    }
    const owner = messages[at]!;
    results.set(owner, [...(results.get(owner) ?? []), m]);
  });
  let trimmed = false;
  const lastAssistant = rest.findLastIndex((m) => m.message.role === 'assistant');
  const ordered = rest.flatMap((m, i) => {
    const answers = results.get(m) ?? [];
    const calls = m.message.tool_calls;
    if (calls === undefined || i === lastAssistant) return [m, ...answers];
    const answered = new Set(answers.map((r) => r.message.tool_call_id));
    const kept = calls.filter((call) => answered.has(call.id));
    if (kept.length === calls.length) return [m, ...answers];
    trimmed = true;
    const message: Message = { ...m.message, tool_calls: kept };
    if (kept.length === 0) {
      delete message.tool_calls;
      if (message.content === null || message.content === '') return answers;
    }
    return [{ ...m, message }, ...answers];
  });
  return { ordered, orphans, trimmed };
}

/**
 * The messages to count before costing `units[i]`: that unit and the older ones before it, up to
 * {@link RECOUNT_BATCH} messages (at least the whole unit), so `recount` is called per batch, not
 * per unit, and not for messages the budget will not reach.
 */
function batchFrom(units: readonly ToolUnit<StoredMessage>[], i: number): StoredMessage[] {
  const batch: StoredMessage[] = [...units[i]!.items];
  for (let j = i - 1; j >= 0 && batch.length < RECOUNT_BATCH; j--) batch.push(...units[j]!.items);
  return batch;
}

/** A message's stored count, or its append-time estimate when it is not counted yet. */
function storedCost(m: StoredMessage): Cost {
  return m.tokens === undefined
    ? { tokens: estimateTokens(m.message), exact: false }
    : { tokens: m.tokens, exact: m.approximatedBy === undefined };
}

/**
 * A recount's result as a cost.
 * @throws Error naming `what` when it is not `{tokens: integer >= 0, approximatedBy?: string}`.
 */
function checkedCount(value: Recounted | undefined, what: string): Cost {
  if (
    typeof value !== 'object' ||
    value === null ||
    !Number.isSafeInteger(value.tokens) ||
    value.tokens < 0 ||
    (value.approximatedBy !== undefined && typeof value.approximatedBy !== 'string')
  ) {
    throw new Error(
      `context read: ${what} returned ${JSON.stringify(value)}; expected {tokens: integer >= 0, approximatedBy?: string}`,
    );
  }
  return { tokens: value.tokens, exact: value.approximatedBy === undefined };
}

/** Orders stored messages by id (= log order: ids are ULIDs). */
function compareIds(a: StoredMessage, b: StoredMessage): number {
  return a.message.id < b.message.id ? -1 : a.message.id > b.message.id ? 1 : 0;
}

function sum(values: readonly number[]): number {
  return values.reduce((total, n) => total + n, 0);
}
