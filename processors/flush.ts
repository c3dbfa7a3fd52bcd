import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { PayloadError } from '../src/core/errors.js';
import {
  needsFlush,
  planPrefix,
  type FlushPlan,
  type PrefixStrategy,
  type WindowMessage,
} from '../src/flush/plan.js';
import { isPrefixStrategy, planFlush, summaryBudget } from '../src/flush/strategies.js';
import type { Summary } from '../src/core/message.js';
import { applyPrivacyToText } from '../src/core/privacy.js';
import { RULE_BASED_SUMMARIZER, redactSummary, type Summarizer } from '../src/flush/summary.js';
import type { TokenCounter } from '../src/tokens/counter.js';
import type { MemoryResource } from '../src/core/memory-resource.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { LockService } from '../src/redis/lock-service.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import {
  PREFIX_PAGE_SIZE,
  readOldestPages,
  readWholeLog,
  type LogPrefix,
} from '../src/store/log-pages.js';
import { FlushJobSchema } from '../queues/job-contracts.js';
import { QUEUES } from '../queues/names.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import { localApproximation } from '../src/tokens/remote-providers.js';
import { wrapProcessor } from './job-wrapper.js';

/** What a flush job returns. */
export interface FlushJobResult {
  /** The plan that was made. */
  readonly plan: FlushPlan;
  /** False for a dry run or an empty plan. */
  readonly applied: boolean;
  /** Messages actually evicted (planned ids still present at commit). */
  readonly evicted: number;
  /** Messages actually folded into the summary. */
  readonly folded: number;
}

/** Dependencies of {@link createFlushProcessor}. */
export interface FlushProcessorDeps {
  /** Where the window is read and the plan committed. */
  readonly store: MemoryStore;
  /** Declared resources (strategy, limits, lock TTLs). */
  readonly registry: MemoryRegistry;
  /** Instance locks (flush holds `flush_ttl`, auto-extended). */
  readonly locks: LockService;
  /** The local counter of a resource (summaries are counted with it). */
  readonly counterFor: (resource: MemoryResource) => Promise<TokenCounter>;
  /** The summarizer of a resource (LLM with rule-based fallback, or rule-based); default rule-based. */
  readonly summarizerFor?: (resource: MemoryResource) => Summarizer;
  /** Base logger (job ids and memory ids only). */
  readonly log: Logger;
  /** Instruments (job outcomes and durations via the wrapper, plus this processor's own). */
  readonly metrics: MemqMetrics;
}

/**
 * Plans a prefix strategy (`simple_fifo` or `hybrid_summary`: `PREFIX_STRATEGIES` in
 * src/flush/strategies.ts) from the oldest pages only (`readOldestPages`): usage comes from the instance's counters, and another
 * page is read only while the plan falls short for lack of messages read (`PrefixPlan.short`:
 * it removes every removable unit read so far, or it stopped at a unit whose tool calls or
 * results may lie on a later page). So a flush costs what it removes, not the memory's size, and
 * never removes a tool call whose results it has not read: a call unanswered in the pages read
 * makes it read on, and once the whole log is read the call stays unless a later assistant
 * message abandoned it (`RemovableUnit.open` in src/flush/plan.ts). `token_allocation` is not
 * applied (it needs the whole log: the processor reads it then).
 * @param pageSize Messages per page; default `PREFIX_PAGE_SIZE` (200).
 */
export async function planFromPrefix(
  store: MemoryStore,
  ref: MemoryRef,
  resource: MemoryResource,
  strategy: PrefixStrategy,
  pageSize = PREFIX_PAGE_SIZE,
): Promise<{ window: LogPrefix; plan: FlushPlan }> {
  let plan: FlushPlan | undefined;
  const window = await readOldestPages(
    store,
    ref,
    (prefix) => {
      const planned = planPrefix(strategy, resource, {
        window: prefix.messages,
        summaryTokens: prefix.summaryTokens,
        usage: prefix.usage,
        complete: prefix.complete,
      });
      plan = planned.plan;
      return planned.short;
    },
    pageSize,
  );
  // readOldestPages calls back at least once (after the first page).
  return { window, plan: plan! };
}

/**
 * The new rolling summary for `folded`: previous summary + folded messages, written by
 * `summarizer` within {@link summaryBudget} tokens counted as one system message, then passed
 * through the resource's privacy policy before it can be stored ({@link redactSummary}: a
 * summarizer, an LLM above all, may echo or invent personal data; action `drop` redacts instead
 * of dropping, so the folded messages are not lost) and counted after that. The previous summary
 * goes through the policy too before the summarizer sees it (one stored before this check, or
 * under an older policy, reaches no LLM unredacted). Its watermark is the newest folded id (or
 * the previous one, if newer). `signal` aborts a remote summarizer's call (the job lost its
 * lock). `ref` is the instance the summary belongs to: a `privacy_scope: session` policy derives
 * its pseudonyms from it (and fails closed without it). `redactions`: matches replaced in the
 * previous and the new summary.
 * @throws PolicyError when the policy cannot be applied (fail closed: nothing is committed).
 */
export async function buildSummary(
  resource: MemoryResource,
  counter: TokenCounter,
  summarizer: Summarizer,
  previous: Summary | undefined,
  folded: readonly WindowMessage[],
  now: () => Date = () => new Date(),
  signal?: AbortSignal,
  ref?: MemoryRef,
): Promise<{ summary: Summary; source: string; redactions: number }> {
  const asSystem = (content: string) => counter.countMessage({ role: 'system', content });
  const policy = resource.privacyPolicy;
  const maxTokens = summaryBudget(resource);
  const before = previous ? applyPrivacyToText(policy, previous.content, ref) : undefined;
  const written = await summarizer.summarize({
    ...(before ? { previous: before.text } : {}),
    folded: folded.map((m) => m.message),
    maxTokens,
    countTokens: asSystem,
    ...(signal ? { signal } : {}),
  });
  const { content, redactions } = redactSummary(policy, written.content, maxTokens, asSystem, ref);
  const newest = folded.reduce((max, m) => (m.message.id > max ? m.message.id : max), '');
  return {
    source: written.source,
    redactions: redactions + (before?.redactions ?? 0),
    summary: {
      content,
      tokens: asSystem(content),
      covers_through_id:
        previous && previous.covers_through_id > newest ? previous.covers_through_id : newest,
      message_count_covered: (previous?.message_count_covered ?? 0) + folded.length,
      updated_at: now().toISOString(),
    },
  };
}

/**
 * `memory-flush` processor: under the instance lock (`flush_ttl`, auto-extended), reads the
 * window, plans with the requested (or configured) strategy and commits with `applyFlush`,
 * fenced by the lock token and the epoch read. A dry run returns the plan and changes nothing.
 * Messages appended while the flush runs are not in the plan and survive it.
 */
export function createFlushProcessor(deps: FlushProcessorDeps) {
  return wrapProcessor({
    queue: QUEUES.flush,
    schema: FlushJobSchema,
    log: deps.log,
    metrics: deps.metrics,
    async run({ ref, strategy, dry_run, trigger }, { log }): Promise<FlushJobResult> {
      const resource = deps.registry.get(ref.resource);
      const chosen = strategy ?? resource.flushing.type;
      if (chosen === 'hybrid_summary' && (resource.flushing.summaryTokens ?? 0) <= 0) {
        throw new PayloadError(
          `flush strategy hybrid_summary needs flushing.summary_tokens, which memory ${JSON.stringify(ref.resource)} does not set`,
          { details: { strategy: chosen } },
        );
      }
      const flush = async (
        lockToken: string | undefined,
        signal?: AbortSignal,
      ): Promise<FlushJobResult> => {
        const { window, plan } =
          isPrefixStrategy(chosen) && !resource.tokenAllocation
            ? await planFromPrefix(deps.store, ref, resource, chosen)
            : await (async () => {
                const whole = await readWholeLog(deps.store, ref);
                return {
                  window: whole,
                  plan: planFlush(chosen, resource, {
                    window: whole.messages,
                    summaryTokens: whole.summaryTokens,
                    access: whole.access,
                  }),
                };
              })();
        if (trigger && !dry_run && !needsFlush(resource, plan.before)) {
          // Another flush brought the memory under its trigger since this one was enqueued.
          return {
            plan: { ...plan, evictedIds: [], foldedIds: [], after: plan.before },
            applied: false,
            evicted: 0,
            folded: 0,
          };
        }
        if (
          dry_run ||
          lockToken === undefined ||
          plan.evictedIds.length + plan.foldedIds.length === 0
        ) {
          return { plan, applied: false, evicted: 0, folded: 0 };
        }
        let summary: Summary | undefined;
        let summarySource: string | undefined;
        let summaryRedactions = 0;
        if (plan.foldedIds.length > 0) {
          const folding = new Set(plan.foldedIds);
          // Summarized outside the Redis commit, under the (auto-extended) instance lock; the
          // commit below is fenced by lock token and epoch.
          const built = await buildSummary(
            resource,
            await deps.counterFor(resource),
            deps.summarizerFor?.(resource) ?? RULE_BASED_SUMMARIZER,
            window.summary,
            window.messages.filter((m) => folding.has(m.message.id)),
            undefined,
            signal,
            ref,
          );
          if (built.summary.content === '') {
            // Folding into an empty summary would lose the messages: refuse, change nothing.
            throw new PayloadError(
              `flush of ${ref.resource}: the summary budget (${summaryBudget(resource)} tokens) cannot hold any summary; raise flushing.summary_tokens`,
            );
          }
          summary = built.summary;
          summarySource = built.source;
          summaryRedactions = built.redactions;
        }
        const committed = await deps.store.applyFlush(
          ref,
          {
            lockToken,
            epoch: window.epoch,
            foldedIds: plan.foldedIds,
            evictedIds: plan.evictedIds,
            ...(summary
              ? {
                  summary,
                  // Summaries are counted locally: exact only for provider openai.
                  summaryApproximatedBy: localApproximation(
                    resource.tokenProvider.provider,
                    resource.tokenProvider.model,
                  ),
                }
              : {}),
          },
          resource.persistence.ttlSeconds,
        );
        if (summarySource) deps.metrics.summaries.inc({ source: summarySource });
        deps.metrics.tokensSaved.inc(
          { resource: ref.resource, strategy: chosen },
          Math.max(0, plan.before.tokens - plan.after.tokens),
        );
        log.info(
          {
            memory: `${ref.project}/${ref.resource}`,
            evicted: committed.evicted,
            folded: committed.folded,
            tokensAfter: committed.tokenCount,
            ...(summaryRedactions > 0 ? { summaryRedactions } : {}),
          },
          'flush committed',
        );
        return { plan, applied: true, evicted: committed.evicted, folded: committed.folded };
      };
      if (dry_run) return flush(undefined);
      return deps.locks.withLock(ref, resource.locking, 'flush', (lock) =>
        flush(lock.token, lock.signal),
      );
    },
  });
}
