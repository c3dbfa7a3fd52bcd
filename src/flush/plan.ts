import type { FlushStrategy, MemoryResource } from '../core/memory-resource.js';
import { contextWindowOf } from '../core/context-window.js';
import type { Message } from '../core/message.js';
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
 * `simple_fifo`: evicts the oldest messages until usage is at or below `limit x target_ratio`
 * in every limited dimension (hysteresis: docs/architecture.md, "Flush"). System messages are never
 * evicted, and an assistant message is evicted together with the `tool` results that follow it,
 * so a tool call is never separated from its result. Pure.
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
  const target = flushTarget(resource);
  const before = usage ?? usageOf(window, summaryTokens);
  let tokens = before.tokens;
  let messages = before.messages;
  const over = () =>
    (target.tokens !== undefined && tokens > target.tokens) ||
    (target.messages !== undefined && messages > target.messages);
  const evictedIds: string[] = [];
  for (let i = 0; i < window.length && over(); i++) {
    const head = window[i]!;
    if (head.message.role === 'system') continue;
    // A tool result is evicted with the call before it; one reached on its own (its call was a
    // system message or already gone) goes alone.
    const group = [head];
    while (head.message.role === 'assistant' && window[i + 1]?.message.role === 'tool')
      group.push(window[++i]!);
    for (const m of group) {
      evictedIds.push(m.message.id);
      tokens -= costOf(m);
      messages -= 1;
    }
  }
  return {
    strategy: 'simple_fifo',
    evictedIds,
    foldedIds: [],
    before,
    after: { tokens, messages },
    target,
  };
}

/**
 * The groups of a window a flush may remove, oldest first: a non-system message, or an assistant
 * message together with the `tool` results right after it (a tool call is never separated from
 * its result). System messages are pinned: never evicted or folded, and not in any group.
 */
export function removableGroups(window: readonly WindowMessage[]): WindowMessage[][] {
  const groups: WindowMessage[][] = [];
  for (let i = 0; i < window.length; i++) {
    const head = window[i]!;
    if (head.message.role === 'system') continue;
    const group = [head];
    while (head.message.role === 'assistant' && window[i + 1]?.message.role === 'tool')
      group.push(window[++i]!);
    groups.push(group);
  }
  return groups;
}

/**
 * `hybrid_summary` (docs/architecture.md, "Flush"): keeps system messages and the newest messages, and
 * folds the oldest ones into the rolling summary. It folds whole groups ({@link removableGroups})
 * from the oldest: at least `summarize_oldest_percent` of the removable messages, then more until
 * usage, counting the new summary at its full `summary_tokens` budget, is at or below
 * `limit x target_ratio` (or nothing removable is left). Folding is a prefix, so no message is
 * folded while an older removable one stays. Pure.
 * @param summaryTokens Tokens of the current summary (replaced by the new one).
 * @param usage The whole memory's usage when `window` is only its oldest part (then the
 *   `summarize_oldest_percent` minimum is taken of `usage.messages` minus the system messages
 *   seen in `window`); default: `window`'s own.
 */
export function planHybridSummary(
  resource: MemoryResource,
  window: readonly WindowMessage[],
  summaryTokens = 0,
  usage?: MemoryUsage,
): FlushPlan {
  const target = flushTarget(resource);
  const before = usage ?? usageOf(window, summaryTokens);
  const budget = resource.flushing.summaryTokens ?? 0;
  const groups = removableGroups(window);
  const pinned = window.filter((m) => m.message.role === 'system').length;
  const removable = usage ? usage.messages - pinned : groups.reduce((n, g) => n + g.length, 0);
  const minimum = Math.ceil(removable * resource.flushing.summarizeOldestPercent);
  let tokens = before.tokens - summaryTokens + budget;
  let messages = before.messages;
  const over = () =>
    (target.tokens !== undefined && tokens > target.tokens) ||
    (target.messages !== undefined && messages > target.messages);
  const foldedIds: string[] = [];
  for (const group of groups) {
    if (foldedIds.length >= minimum && !over()) break;
    for (const m of group) {
      foldedIds.push(m.message.id);
      tokens -= costOf(m);
      messages -= 1;
    }
  }
  if (foldedIds.length === 0) tokens = before.tokens;
  return {
    strategy: 'hybrid_summary',
    evictedIds: [],
    foldedIds,
    before,
    after: { tokens, messages },
    target,
  };
}
