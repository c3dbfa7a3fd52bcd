import type { FlushStrategy, MemoryResource } from '../core/memory-resource.js';
import { contextWindowOf } from '../core/context-window.js';
import { PINNED_ROLES, toolUnits, type Message } from '../core/message.js';
import { estimateTokens } from '../tokens/counter.js';

/**
 * Compozy's effective defaults : 2,000 tokens when a token-limited memory
 * sets neither `max_tokens` nor `max_context_ratio`, 100 messages when a message-limited one sets
 * no `max_messages`.
 */
export const DEFAULT_MAX_TOKENS = 2000;
/** See {@link DEFAULT_MAX_TOKENS}. */
export const DEFAULT_MAX_MESSAGES = 100;

/** The limits a memory is flushed against; undefined = that dimension is not limited. */
export interface EffectiveLimits {
  /** Token limit: `max_tokens`, else `floor(context window x max_context_ratio)`, else 2,000. */
  readonly maxTokens: number | undefined;
  /** Message limit: `max_messages`, else 100 (message-count and buffer memories only). */
  readonly maxMessages: number | undefined;
}

/**
 * The limits of `resource` by type: `token_based` -> tokens (and `max_messages` if set),
 * `message_count_based` -> messages, `buffer` -> both.
 * @throws ConfigError when `max_context_ratio` names a model without a known context window.
 */
export function effectiveLimits(resource: MemoryResource): EffectiveLimits {
  const tokens =
    resource.maxTokens ??
    (resource.maxContextRatio !== undefined
      ? Math.floor(contextWindowOf(resource.tokenProvider.model) * resource.maxContextRatio)
      : DEFAULT_MAX_TOKENS);
  switch (resource.type) {
    case 'token_based':
      return { maxTokens: tokens, maxMessages: resource.maxMessages };
    case 'message_count_based':
      return {
        maxTokens: resource.maxTokens,
        maxMessages: resource.maxMessages ?? DEFAULT_MAX_MESSAGES,
      };
    case 'buffer':
      return { maxTokens: tokens, maxMessages: resource.maxMessages ?? DEFAULT_MAX_MESSAGES };
  }
}

/** Current size of a memory. */
export interface MemoryUsage {
  /** Exact tokens plus estimates of uncounted messages plus the summary. */
  readonly tokens: number;
  /** Messages in the log. */
  readonly messages: number;
}

/**
 * The flush trigger (docs/architecture.md, "Flush"): usage reaches `limit x summarize_threshold` in any
 * limited dimension.
 */
export function needsFlush(resource: MemoryResource, usage: MemoryUsage): boolean {
  const limits = effectiveLimits(resource);
  const threshold = resource.flushing.summarizeThreshold;
  return (
    (limits.maxTokens !== undefined && usage.tokens >= limits.maxTokens * threshold) ||
    (limits.maxMessages !== undefined && usage.messages >= limits.maxMessages * threshold)
  );
}

/** A message of the window with its tokens (exact, or estimated when not counted yet). */
export interface WindowMessage {
  /** The stored message. */
  readonly message: Message;
  /** Exact tokens, undefined when not counted yet (the estimate is used). */
  readonly tokens: number | undefined;
}

/** What a flush will do (or, for a dry run, would do). */
export interface FlushPlan {
  /** Strategy that made the plan. */
  readonly strategy: FlushStrategy;
  /** Ids removed without a summary, oldest first. */
  readonly evictedIds: readonly string[];
  /** Ids folded into the summary (none for simple_fifo). */
  readonly foldedIds: readonly string[];
  /** Usage before and after the plan. */
  readonly before: MemoryUsage;
  /** Usage once the plan is committed (for hybrid_summary, with the summary at its full budget). */
  readonly after: MemoryUsage;
  /** The target it flushed down to (`limit x target_ratio` per limited dimension). */
  readonly target: { readonly tokens: number | undefined; readonly messages: number | undefined };
}

/** What a message costs: its exact tokens, or the append-time estimate when not counted yet. */
export const costOf = (m: WindowMessage): number => m.tokens ?? estimateTokens(m.message);

/** Usage of a whole window: its messages' costs plus the summary's tokens. */
export function usageOf(window: readonly WindowMessage[], summaryTokens: number): MemoryUsage {
  return {
    tokens: summaryTokens + window.reduce((sum, m) => sum + costOf(m), 0),
    messages: window.length,
  };
}

/** The flush target: `floor(limit x target_ratio)` per limited dimension (docs/architecture.md, "Flush"). */
export function flushTarget(resource: MemoryResource): FlushPlan['target'] {
  const limits = effectiveLimits(resource);
  const ratio = resource.flushing.targetRatio;
  return {
    tokens: limits.maxTokens === undefined ? undefined : Math.floor(limits.maxTokens * ratio),
    messages: limits.maxMessages === undefined ? undefined : Math.floor(limits.maxMessages * ratio),
  };
}

/**
 * What one unit of a window ({@link removableUnits}) holds for a flush: the messages that go
 * together (never a tool call without its results, nor a result without its call).
 */
export interface RemovableUnit {
  /**
   * The unit's messages a flush may remove, in log order, never empty: a `toolUnits` unit
   * (src/core/message.ts) minus its pinned messages ({@link PINNED_ROLES}), which stay where
   * they are.
   */
  readonly messages: readonly WindowMessage[];
  /** Ids of the unit's tool calls that no message of the window answers. */
  readonly unanswered: readonly string[];
  /**
   * True when the unit may not be removed yet, because a result may still come or lie outside
   * the window:
   * - the window is the whole log and the unit holds an unanswered call of the log's newest
   *   assistant message: no assistant message follows the call, so the model is still waiting
   *   for its result. Pinned messages, user messages and other tool results after the call do
   *   not change that (a developer instruction or a "please hurry" while the tool runs);
   * - or the window is only the log's oldest part and the unit has a call without a result in it,
   *   or a result whose call is not in it: a later page may hold them, so the prefix reader reads
   *   on, and at the end of the log the first rule decides.
   * A call still unanswered in the whole log with a later assistant message after it is
   * abandoned (the model went on without its result): its unit is removable (docs/decisions.md,
   * "Flush and summaries").
   */
  readonly open: boolean;
}

/**
 * The units a flush removes whole, oldest first: `toolUnits` (an assistant message with tool
 * calls, every tool message answering one of them by `tool_call_id`, and everything between; a
 * result whose call is not in the log alone; every other message alone), each without its pinned
 * messages (system and developer are never evicted or folded). Units holding only pinned
 * messages are left out. Every strategy removes these units and nothing smaller, and none an
 * {@link RemovableUnit.open} one: a call waiting for its result stays until a later assistant
 * message shows the model went on without it. Pure; linear apart from `toolUnits`.
 * @param complete True when `window` is the whole log; false when it is only its oldest part
 *   (a page read so far), which makes a unit whose results may lie further on
 *   {@link RemovableUnit.open}.
 */
export function removableUnits(window: readonly WindowMessage[], complete = true): RemovableUnit[] {
  const calls = new Set<string>();
  /** The newest assistant message: only its calls can still be waiting for a result. */
  let newestAssistant: WindowMessage | undefined;
  for (const m of window)
    if (m.message.role === 'assistant') {
      newestAssistant = m;
      for (const c of m.message.tool_calls ?? []) calls.add(c.id);
    }
  const waiting = new Set((newestAssistant?.message.tool_calls ?? []).map((c) => c.id));
  const removable: RemovableUnit[] = [];
  for (const unit of toolUnits(window, (m) => m.message)) {
    const messages = unit.items.filter((m) => !PINNED_ROLES.has(m.message.role));
    if (messages.length === 0) continue;
    const callMissing = unit.items.some(
      (m) =>
        m.message.role === 'tool' &&
        m.message.tool_call_id !== undefined &&
        !calls.has(m.message.tool_call_id),
    );
    // An id the model reused inside one unit counts as waiting if any call with it is
    // unanswered: the unit then stays until the next assistant message, never goes too early.
    const open = complete
      ? newestAssistant !== undefined &&
        unit.items.includes(newestAssistant) &&
        unit.unanswered.some((id) => waiting.has(id))
      : unit.unanswered.length > 0 || callMissing;
    removable.push({ messages, unanswered: unit.unanswered, open });
  }
  return removable;
}

/** What a prefix strategy plans from: the whole log, or its oldest part read so far. */
export interface PrefixInput {
  /** The messages read (the whole log, or its oldest part with `usage`), in id order. */
  readonly window: readonly WindowMessage[];
  /** Tokens of the current summary. */
  readonly summaryTokens: number;
  /**
   * The whole memory's usage when `window` is only its oldest part (read page by page);
   * default: the window's own sum plus `summaryTokens`.
   */
  readonly usage?: MemoryUsage;
  /**
   * True when `window` is the whole log ({@link removableUnits}); default: true without
   * `usage`, false with it.
   */
  readonly complete?: boolean;
}

/** The strategies that only remove a prefix of the log (`isPrefixStrategy` in src/flush/strategies.ts). */
export type PrefixStrategy = 'simple_fifo' | 'hybrid_summary';

/** A prefix strategy's plan, and whether more of the log could take it further. */
export interface PrefixPlan {
  /** The plan from what was read. */
  readonly plan: FlushPlan;
  /**
   * True when the plan fell short of its goal for lack of messages read: it removes every
   * removable unit of the window, or it stopped at an {@link RemovableUnit.open} unit. A reader
   * of the log's oldest pages reads another page then (`planFromPrefix` in processors/flush.ts).
   */
  readonly short: boolean;
}

/** The removal loop of both prefix strategies: whole units from the oldest, never past an open one. */
function removePrefix(
  units: readonly RemovableUnit[],
  done: () => boolean,
  remove: (m: WindowMessage) => void,
): boolean {
  for (const unit of units) {
    if (done()) return false;
    if (unit.open) return true;
    for (const m of unit.messages) remove(m);
  }
  return !done();
}

/**
 * `simple_fifo` or `hybrid_summary` from the whole log or its oldest part
 * ({@link planSimpleFifo}, {@link planHybridSummary}), with whether more of the log could take the
 * plan further ({@link PrefixPlan.short}). `token_allocation` is not applied here: it needs the
 * whole log (`planFlush` in src/flush/strategies.ts). Pure.
 */
export function planPrefix(
  strategy: PrefixStrategy,
  resource: MemoryResource,
  input: PrefixInput,
): PrefixPlan {
  const { window, summaryTokens, usage } = input;
  const units = removableUnits(window, input.complete ?? usage === undefined);
  const target = flushTarget(resource);
  const before = usage ?? usageOf(window, summaryTokens);
  const folds = strategy === 'hybrid_summary';
  const budget = folds ? (resource.flushing.summaryTokens ?? 0) : 0;
  let tokens = folds ? before.tokens - summaryTokens + budget : before.tokens;
  let messages = before.messages;
  let minimum = 0;
  if (folds) {
    const pinned = window.filter((m) => PINNED_ROLES.has(m.message.role)).length;
    const removable = usage
      ? usage.messages - pinned
      : units.reduce((n, u) => n + u.messages.length, 0);
    minimum = Math.ceil(removable * resource.flushing.summarizeOldestPercent);
  }
  const over = () =>
    (target.tokens !== undefined && tokens > target.tokens) ||
    (target.messages !== undefined && messages > target.messages);
  const removed: string[] = [];
  const short = removePrefix(
    units,
    () => removed.length >= minimum && !over(),
    (m) => {
      removed.push(m.message.id);
      tokens -= costOf(m);
      messages -= 1;
    },
  );
  if (removed.length === 0) tokens = before.tokens;
  return {
    plan: {
      strategy,
      evictedIds: folds ? [] : removed,
      foldedIds: folds ? removed : [],
      before,
      after: { tokens, messages },
      target,
    },
    short,
  };
}

/**
 * `simple_fifo`: evicts whole units ({@link removableUnits}) from the oldest until usage is at or
 * below `limit x target_ratio` in every limited dimension (hysteresis: docs/architecture.md,
 * "Flush"). Pinned messages (system, developer) are never evicted, and a tool call goes with
 * every result answering it, matched by id. It stops at an open unit (a call still waiting for
 * its results, or whose results may be on a later page: {@link RemovableUnit.open}). Pure.
 * @param summaryTokens Tokens of the current summary (counted in usage, never evicted here).
 * @param usage The whole memory's usage when `window` is only its oldest part (a prefix read
 *   page by page); default: `window`'s own sum plus `summaryTokens`.
 */
export function planSimpleFifo(
  resource: MemoryResource,
  window: readonly WindowMessage[],
  summaryTokens = 0,
  usage?: MemoryUsage,
): FlushPlan {
  return planPrefix('simple_fifo', resource, {
    window,
    summaryTokens,
    ...(usage ? { usage } : {}),
  }).plan;
}

/**
 * `hybrid_summary` (docs/architecture.md, "Flush"): keeps pinned messages (system, developer) and
 * the newest messages, and folds the oldest ones into the rolling summary. It folds whole units
 * ({@link removableUnits}) from the oldest: at least `summarize_oldest_percent` of the removable
 * messages, then more until usage, counting the new summary at its full `summary_tokens` budget,
 * is at or below `limit x target_ratio` (or nothing removable is left, or the next unit is open).
 * Folding is a prefix, so no message is folded while an older removable one stays. Pure.
 * @param summaryTokens Tokens of the current summary (replaced by the new one).
 * @param usage The whole memory's usage when `window` is only its oldest part (then the
 *   `summarize_oldest_percent` minimum is taken of `usage.messages` minus the pinned messages
 *   seen in `window`); default: `window`'s own.
 */
export function planHybridSummary(
  resource: MemoryResource,
  window: readonly WindowMessage[],
  summaryTokens = 0,
  usage?: MemoryUsage,
): FlushPlan {
  return planPrefix('hybrid_summary', resource, {
    window,
    summaryTokens,
    ...(usage ? { usage } : {}),
  }).plan;
}
