import { LRUCache } from 'lru-cache';
import { PINNED_ROLES, contentText } from '../core/message.js';
import {
  costOf,
  effectiveLimits,
  flushTarget,
  usageOf,
  planPrefix,
  removableUnits,
  type FlushPlan,
  type PrefixInput,
  type PrefixStrategy,
  type RemovableUnit,
  type WindowMessage,
} from './plan.js';
import type { FlushStrategy, MemoryResource, TokenAllocation } from '../core/memory-resource.js';

/** How often and how recently each message was read (recorded on read when enabled). */
export interface AccessStats {
  /** Last read, ms since epoch, by message id; absent = never read. */
  readonly lastAccessMs: ReadonlyMap<string, number>;
  /** Reads by message id; absent = 0. */
  readonly count: ReadonlyMap<string, number>;
}

/** No recorded access: lru and lfu then evict oldest first (the id order). */
export const NO_ACCESS: AccessStats = { lastAccessMs: new Map(), count: new Map() };

/**
 * Everything a planner sees: the window (the whole log, or for {@link PREFIX_STRATEGIES} its
 * oldest part with the memory's `usage` and `complete: false`), the current summary's tokens and
 * access stats.
 */
export interface PlanInput extends PrefixInput {
  /** Access stats (lru, lfu, token_aware_lru); default {@link NO_ACCESS}. */
  readonly access?: AccessStats;
}

/**
 * Strategies that only remove a prefix of the log, so they can plan from its oldest pages
 * (flush cost grows with what is removed, not with memory size). The others rank every message.
 */
export const PREFIX_STRATEGIES: ReadonlySet<FlushStrategy> = new Set([
  'simple_fifo',
  'hybrid_summary',
]);

/** Whether `strategy` is one of {@link PREFIX_STRATEGIES}. */
export const isPrefixStrategy = (strategy: FlushStrategy): strategy is PrefixStrategy =>
  PREFIX_STRATEGIES.has(strategy);

/** A unit's messages. */
type Group = RemovableUnit['messages'];

const groupTokens = (group: readonly WindowMessage[]) => group.reduce((s, m) => s + costOf(m), 0);

/** Whether `input.window` is the whole log ({@link PrefixInput.complete}). */
const completeOf = (input: PlanInput) => input.complete ?? input.usage === undefined;

/**
 * The units ranking strategies may evict ({@link removableUnits} that are not open: never a call
 * still waiting for its result, whatever its rank), as their messages, oldest first.
 */
const evictableGroups = (input: PlanInput): Group[] =>
  removableUnits(input.window, completeOf(input))
    .filter((u) => !u.open)
    .map((u) => u.messages);

/**
 * Evicts whole units ({@link evictableGroups}) in `order` until usage is at or below the target
 * in every limited dimension. Pure.
 */
function evictInOrder(
  strategy: FlushStrategy,
  resource: MemoryResource,
  input: PlanInput,
  order: (groups: Group[]) => Group[],
): FlushPlan {
  const target = flushTarget(resource);
  const before = usageOf(input.window, input.summaryTokens);
  let { tokens, messages } = before;
  const over = () =>
    (target.tokens !== undefined && tokens > target.tokens) ||
    (target.messages !== undefined && messages > target.messages);
  const evicted = new Set<string>();
  for (const group of order(evictableGroups(input))) {
    if (!over()) break;
    for (const m of group) {
      evicted.add(m.message.id);
      tokens -= costOf(m);
      messages -= 1;
    }
  }
  return {
    strategy,
    // Reported in log order, whatever order the strategy chose.
    evictedIds: input.window.filter((m) => evicted.has(m.message.id)).map((m) => m.message.id),
    foldedIds: [],
    before,
    after: { tokens, messages },
    target,
  };
}

/** The most recent read of a unit (any member), or -1 when never read. */
const lastAccess = (access: AccessStats, group: Group) =>
  group.reduce((at, m) => Math.max(at, access.lastAccessMs.get(m.message.id) ?? -1), -1);
/** Reads of a unit (the most-read member's). */
const reads = (access: AccessStats, group: Group) =>
  group.reduce((n, m) => Math.max(n, access.count.get(m.message.id) ?? 0), 0);

/**
 * `lru`: evicts the least recently read units ({@link removableUnits}: a tool call with its
 * results) first (never-read ones first, oldest first among equals) down to the target. Without
 * recorded access this is oldest-first, as Compozy's was.
 */
export function planLru(resource: MemoryResource, input: PlanInput): FlushPlan {
  const access = input.access ?? NO_ACCESS;
  return evictInOrder('lru', resource, input, (groups) =>
    groups
      .map((g, i) => ({ g, i, at: lastAccess(access, g) }))
      .sort((a, b) => a.at - b.at || a.i - b.i)
      .map((x) => x.g),
  );
}

/**
 * `lfu`: evicts the least often read units ({@link removableUnits}) first (oldest first among
 * equals) down to the target.
 */
export function planLfu(resource: MemoryResource, input: PlanInput): FlushPlan {
  const access = input.access ?? NO_ACCESS;
  return evictInOrder('lfu', resource, input, (groups) =>
    groups
      .map((g, i) => ({ g, i, n: reads(access, g) }))
      .sort((a, b) => a.n - b.n || a.i - b.i)
      .map((x) => x.g),
  );
}

/**
 * `token_aware_lru`: an lru-cache whose `maxSize` is the token budget left for removable
 * messages (target tokens minus pinned messages, open units and the summary) and whose
 * `sizeCalculation` is a unit's tokens ({@link removableUnits}); units are inserted from least to
 * most recently read, so the cache keeps the most recently read units that fit and evicts the
 * rest (a unit larger than the whole budget is never kept). A message-count target is then met oldest-read first. Without a token limit it
 * is {@link planLru}.
 */
export function planTokenAwareLru(resource: MemoryResource, input: PlanInput): FlushPlan {
  const target = flushTarget(resource);
  if (target.tokens === undefined)
    return { ...planLru(resource, input), strategy: 'token_aware_lru' };
  const access = input.access ?? NO_ACCESS;
  // Kept whatever the budget: pinned messages and open units (calls waiting for results).
  const units = removableUnits(input.window, completeOf(input));
  const kept =
    groupTokens(input.window.filter((m) => PINNED_ROLES.has(m.message.role))) +
    units.filter((u) => u.open).reduce((s, u) => s + groupTokens(u.messages), 0);
  const budget = target.tokens - kept - input.summaryTokens;
  const ordered = units
    .filter((u) => !u.open)
    .map((u) => u.messages)
    .map((g, i) => ({ g, i, at: lastAccess(access, g) }))
    .sort((a, b) => a.at - b.at || a.i - b.i);
  const fitting = new Set<number>();
  if (budget > 0) {
    const cache = new LRUCache<number, true>({
      maxSize: budget,
      sizeCalculation: (_v, key) => Math.max(1, groupTokens(ordered[key]!.g)),
      dispose: (_v, key) => fitting.delete(key),
    });
    for (const [key] of ordered.entries()) {
      cache.set(key, true);
      if (cache.has(key)) fitting.add(key);
    }
  }
  const keptGroups = new Set(ordered.filter((_, key) => fitting.has(key)).map((x) => x.g));
  return evictInOrder('token_aware_lru', resource, input, () => [
    ...ordered.filter((x) => !keptGroups.has(x.g)).map((x) => x.g),
    ...ordered.filter((x) => keptGroups.has(x.g)).map((x) => x.g),
  ]);
}

/**
 * Keywords that make a message high priority (case-insensitive substring), from Compozy's
 * priority eviction policy (as in Compozy).
 */
export const PRIORITY_KEYWORDS = [
  'error',
  'critical',
  'important',
  'warning',
  'failed',
  'exception',
  'issue',
  'problem',
  'urgent',
  'key',
  'essential',
  'required',
];
/** Small talk that makes a message low priority (whole content, trimmed, case-insensitive). */
export const SMALL_TALK = [
  'hello',
  'hi',
  'hey',
  'thanks',
  'thank you',
  'ok',
  'okay',
  'bye',
  'yes',
  'no',
];

/** Priority classes, most important first; `priority` evicts the highest class first. */
export type PriorityClass = 'critical' | 'high' | 'medium' | 'low';
const CLASS_RANK: Record<PriorityClass, number> = { critical: 0, high: 1, medium: 2, low: 3 };

/**
 * The priority class of a message (as in Compozy): `metadata.priority` when it is
 * one of the classes; else `critical` for pinned roles (system, developer); `low` for content under 10 characters
 * or small talk; `high` for a {@link PRIORITY_KEYWORDS} match or a message in the newest 20 %
 * of the window; `medium` otherwise.
 */
export function priorityOf(m: WindowMessage, index: number, windowLength: number): PriorityClass {
  const declared = m.message.metadata?.priority;
  if (typeof declared === 'string' && declared in CLASS_RANK) return declared as PriorityClass;
  if (PINNED_ROLES.has(m.message.role)) return 'critical';
  const text = contentText(m.message.content).trim().toLowerCase();
  if (text.length < 10 || SMALL_TALK.includes(text.replace(/[.!?]+$/, ''))) return 'low';
  if (PRIORITY_KEYWORDS.some((k) => text.includes(k))) return 'high';
  if (index >= Math.floor(windowLength * 0.8)) return 'high';
  return 'medium';
}

/**
 * `priority`: evicts the least important units first ({@link removableUnits}; a unit ranks as its
 * most important member, {@link priorityOf}), oldest first within a class, down to the target.
 * `critical` messages (pinned roles, or `metadata.priority: critical`) are never evicted, nor is
 * the rest of their unit.
 */
export function planPriority(resource: MemoryResource, input: PlanInput): FlushPlan {
  const index = new Map(input.window.map((m, i) => [m.message.id, i]));
  const rank = (g: Group) =>
    g.reduce(
      (r, m) =>
        Math.min(r, CLASS_RANK[priorityOf(m, index.get(m.message.id)!, input.window.length)]),
      CLASS_RANK.low,
    );
  return evictInOrder('priority', resource, input, (groups) =>
    groups
      .map((g, i) => ({ g, i, r: rank(g) }))
      .filter((x) => x.r > CLASS_RANK.critical)
      .sort((a, b) => b.r - a.r || a.i - b.i)
      .map((x) => x.g),
  );
}

/**
 * Plans a flush with `strategy` and then enforces the resource's `token_allocation`
 * ({@link enforceAllocation}). Pure.
 */
export function planFlush(
  strategy: FlushStrategy,
  resource: MemoryResource,
  input: PlanInput,
): FlushPlan {
  const plan = ((): FlushPlan => {
    switch (strategy) {
      case 'simple_fifo':
      case 'hybrid_summary':
        return planPrefix(strategy, resource, input).plan;
      case 'lru':
        return planLru(resource, input);
      case 'lfu':
        return planLfu(resource, input);
      case 'token_aware_lru':
        return planTokenAwareLru(resource, input);
      case 'priority':
        return planPriority(resource, input);
    }
  })();
  return enforceAllocation(resource, input, plan);
}

/**
 * The short-term cap of `token_allocation`, tokens: `limit x short_term`, less what the pinned
 * (system and developer) messages of `window` take beyond their reserved `limit x system` (never
 * below 0). Pure.
 */
export function shortTermBudget(
  allocation: TokenAllocation,
  limit: number,
  window: readonly WindowMessage[],
): number {
  const system = window
    .filter((m) => PINNED_ROLES.has(m.message.role))
    .reduce((s, m) => s + costOf(m), 0);
  const overSystemShare = Math.max(0, system - Math.floor(limit * allocation.system));
  return Math.max(0, Math.floor(limit * allocation.shortTerm) - overSystemShare);
}

/**
 * `token_allocation` (docs/architecture.md, "Flush"), for token-limited memories: after the
 * strategy's plan, the raw non-pinned messages kept (short-term) must fit
 * {@link shortTermBudget}: `limit x short_term`, less the tokens pinned (system and developer)
 * messages take beyond their reserved `limit x system` share (pinned messages are never removed,
 * so their excess is paid for by raw messages first: pinned + short-term + summary stay within
 * the limit as long as the pinned messages fit `limit x (system + short_term)`; beyond that
 * nothing more can be removed, since the summary keeps its own budget and pinned messages stay).
 * If they do not fit, more of them go, whole units ({@link removableUnits}) oldest first, the
 * same way the strategy removes (folded for hybrid_summary, evicted otherwise; an open unit
 * stays, and a fold stops at it). The summary's budget (long-term) is `min(summary_tokens,
 * limit x long_term)` (applied by the summarizer, {@link summaryBudget}). Without
 * `token_allocation` the plan is returned unchanged.
 */
export function enforceAllocation(
  resource: MemoryResource,
  input: PlanInput,
  plan: FlushPlan,
): FlushPlan {
  const allocation = resource.tokenAllocation;
  const limit = effectiveLimits(resource).maxTokens;
  if (!allocation || limit === undefined) return plan;
  const budget = shortTermBudget(allocation, limit, input.window);
  const removed = new Set([...plan.evictedIds, ...plan.foldedIds]);
  const keptUnits = removableUnits(input.window, completeOf(input)).filter(
    (u) => !u.messages.some((m) => removed.has(m.message.id)),
  );
  let shortTerm = keptUnits.reduce((s, u) => s + groupTokens(u.messages), 0);
  const extra: string[] = [];
  let tokens = plan.after.tokens;
  let messages = plan.after.messages;
  const folds = plan.strategy === 'hybrid_summary';
  for (const unit of keptUnits) {
    if (shortTerm <= budget) break;
    // An open unit stays; a fold stops there too, so folding remains a prefix.
    if (unit.open) {
      if (folds) break;
      continue;
    }
    for (const m of unit.messages) {
      extra.push(m.message.id);
      shortTerm -= costOf(m);
      tokens -= costOf(m);
      messages -= 1;
    }
  }
  if (extra.length === 0) return plan;
  const inLogOrder = (ids: Iterable<string>) => {
    const set = new Set(ids);
    return input.window.filter((m) => set.has(m.message.id)).map((m) => m.message.id);
  };
  return {
    ...plan,
    evictedIds: folds ? plan.evictedIds : inLogOrder([...plan.evictedIds, ...extra]),
    foldedIds: folds ? inLogOrder([...plan.foldedIds, ...extra]) : plan.foldedIds,
    after: { tokens, messages },
  };
}

/** The summary's token budget: `summary_tokens`, capped at `limit x long_term` with an allocation. */
export function summaryBudget(resource: MemoryResource): number {
  const configured = resource.flushing.summaryTokens ?? 0;
  const limit = effectiveLimits(resource).maxTokens;
  if (!resource.tokenAllocation || limit === undefined) return configured;
  return Math.min(configured, Math.floor(limit * resource.tokenAllocation.longTerm));
}
