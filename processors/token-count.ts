import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { needsFlush } from '../src/flush/plan.js';
import type { MemoryResource } from '../src/core/memory-resource.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import { TokenCountJobSchema, type TokenCountJobResult } from '../queues/job-contracts.js';
import { QUEUES } from '../queues/names.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import { wrapProcessor } from './job-wrapper.js';
import type { MessageCounter } from '../src/tokens/resource-counters.js';

/** Messages counted and committed per round trip. */
export const TOKEN_COUNT_BATCH = 256;

/** Dependencies of {@link createTokenCountProcessor}. */
export interface TokenCountProcessorDeps {
  /** Where counts are committed. */
  readonly store: MemoryStore;
  /** Declared resources (model, TTL). */
  readonly registry: MemoryRegistry;
  /** The counter for a resource (built once per resource by the caller). */
  readonly counterFor: (resource: MemoryResource) => Promise<MessageCounter>;
  /**
   * Enqueues a (deduplicated) flush when the counted memory is over its trigger
   * (`limit x summarize_threshold`); absent = never.
   */
  readonly enqueueFlush?: (ref: MemoryRef) => Promise<unknown>;
  /** Base logger (job ids and memory ids only). */
  readonly log: Logger;
  /** Instruments (job outcomes and durations via the wrapper, plus this processor's own). */
  readonly metrics: MemqMetrics;
}

/**
 * `memory-token-count` processor: takes the burst (so appends from now on enqueue a new job),
 * counts every uncounted message of the instance (exactly, or by an approximation the commit
 * records per message), in batches of {@link TOKEN_COUNT_BATCH}, and commits each batch with
 * `commit-tokens.lua`, which replaces the append-time estimates. Yields to the event loop between batches so BullMQ can renew locks.
 * Then evaluates the flush trigger on the totals the last commit returned (no second read) and
 * enqueues a flush if the memory is over it.
 */
export function createTokenCountProcessor(deps: TokenCountProcessorDeps) {
  return wrapProcessor({
    queue: QUEUES.tokenCount,
    schema: TokenCountJobSchema,
    log: deps.log,
    metrics: deps.metrics,
    async run({ ref }, { signal }): Promise<TokenCountJobResult> {
      const resource = deps.registry.get(ref.resource);
      const counter = await deps.counterFor(resource);
      let counted = 0;
      // The first read also takes the burst (one script): appends from then on open a new one.
      let takeBurst = true;
      let tokens = 0;
      /** The memory's totals after the last commit (the flush trigger needs nothing more). */
      let usage: { tokens: number; messages: number } | undefined;
      for (;;) {
        signal?.throwIfAborted();
        const {
          messages: batch,
          scanned,
          missing,
        } = await deps.store.uncounted(ref, TOKEN_COUNT_BATCH, { takeBurst });
        takeBurst = false;
        if (scanned === 0) break;
        const results = await counter.countMessages(batch, signal);
        const counts = [
          ...batch.map((message, i) => {
            const { tokens: n, approximatedBy } = results[i]!;
            return { id: message.id, tokens: n, ...(approximatedBy ? { approximatedBy } : {}) };
          }),
          // Gone from the log: commit-tokens only drops them from the uncounted set.
          ...missing.map((id) => ({ id, tokens: 0 })),
        ];
        const result = await deps.store.commitTokens(ref, counts, resource.persistence.ttlSeconds);
        counted += result.committed;
        usage = {
          tokens: result.tokenCount + result.estimatedTokens,
          messages: result.messageCount,
        };
        const bySource = new Map<string, number>();
        for (const { tokens: n, source } of results) {
          tokens += n;
          bySource.set(source, (bySource.get(source) ?? 0) + n);
        }
        for (const [source, n] of bySource) {
          deps.metrics.tokensCounted.inc({ resource: ref.resource, source }, n);
        }
        if (scanned < TOKEN_COUNT_BATCH) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      if (deps.enqueueFlush) {
        if (!usage) {
          // Nothing was committed (nothing uncounted): read the totals.
          const window = await deps.store.read(ref, { limit: 1 });
          usage = { tokens: window.tokenCount + window.estimatedTokens, messages: window.total };
        }
        if (needsFlush(resource, usage)) await deps.enqueueFlush(ref);
      }
      return { counted, tokens };
    },
  });
}
