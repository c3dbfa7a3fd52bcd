import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { needsFlush } from '../src/core/flush-plan.js';
import type { TokenCounter } from '../src/core/token-counter.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import { TokenCountJobSchema, type TokenCountJobResult } from '../queues/job-contracts.js';
import { QUEUES } from '../queues/names.js';
import { AVAILABLE_FLUSH_STRATEGIES } from './flush.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import { wrapProcessor } from './job-wrapper.js';

/** Messages counted and committed per round trip. */
export const TOKEN_COUNT_BATCH = 256;

/** Dependencies of {@link createTokenCountProcessor}. */
export interface TokenCountProcessorDeps {
  /** Where counts are committed. */
  readonly store: MemoryStore;
  /** Declared resources (model, TTL). */
  readonly registry: MemoryRegistry;
  /** The counter for a model (cached by the caller). */
  readonly counterFor: (model: string) => Promise<TokenCounter>;
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
 * counts every uncounted message of the instance exactly, in batches of
 * {@link TOKEN_COUNT_BATCH}, and commits each batch with `commit-tokens.lua`, which replaces the
 * append-time estimates. Yields to the event loop between batches so BullMQ can renew locks.
 * Then evaluates the flush trigger and enqueues a flush if the memory is over it and its
 * strategy is available.
 */
export function createTokenCountProcessor(deps: TokenCountProcessorDeps) {
  return wrapProcessor({
    queue: QUEUES.tokenCount,
    schema: TokenCountJobSchema,
    log: deps.log,
    metrics: deps.metrics,
    async run({ ref }, { signal }): Promise<TokenCountJobResult> {
      const resource = deps.registry.get(ref.resource);
      const counter = await deps.counterFor(resource.tokenProvider.model);
      await deps.store.clearTokenCountPending(ref);
      let counted = 0;
      let tokens = 0;
      for (;;) {
        signal?.throwIfAborted();
        const { messages: batch, scanned } = await deps.store.uncounted(ref, TOKEN_COUNT_BATCH);
        if (scanned === 0) break;
        const counts = [];
        for (const message of batch) {
          counts.push({ id: message.id, tokens: await counter.countMessageAsync(message, signal) });
        }
        const result = await deps.store.commitTokens(ref, counts, resource.persistence.ttlSeconds);
        counted += result.committed;
        tokens += counts.reduce((sum, c) => sum + c.tokens, 0);
        if (scanned < TOKEN_COUNT_BATCH) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      if (deps.enqueueFlush && AVAILABLE_FLUSH_STRATEGIES.has(resource.flushing.type)) {
        const window = await deps.store.read(ref, { limit: 1 });
        const usage = {
          tokens: window.tokenCount + window.estimatedTokens,
          messages: window.total,
        };
        if (needsFlush(resource, usage)) await deps.enqueueFlush(ref);
      }
      deps.metrics.tokensCounted.inc({ resource: ref.resource, source: counter.encoding }, tokens);
      return { counted, tokens };
    },
  });
}
