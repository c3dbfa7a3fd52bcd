import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import {
  createTokenCounter,
  encodingForModel,
  type TokenCounter,
} from '../src/core/token-counter.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import { QUEUES } from '../queues/names.js';
import { createTokenCountQueue } from '../queues/token-count-queue.js';
import { createAppendProcessor } from './append.js';
import { createTokenCountProcessor } from './token-count.js';

/** Options of {@link startWorkers}. */
export interface WorkersOptions {
  /** Worker connection (`maxRetriesPerRequest: null`); owned by the caller. */
  readonly connection: Redis;
  /** BullMQ prefix, e.g. `{memq}`. */
  readonly queuePrefix: string;
  /** Jobs run at once per queue in this process. */
  readonly concurrency: { readonly append: number; readonly tokenCount: number };
  /** Store the processors commit to (on a worker connection). */
  readonly store: MemoryStore;
  /** Declared resources. */
  readonly registry: MemoryRegistry;
  /** Base logger (job ids and memory ids only, never message content). */
  readonly log: Logger;
}

/** Running workers. */
export interface Workers {
  /** The BullMQ workers, one per queue. */
  readonly workers: readonly Worker[];
  /**
   * Resolves once the tokenizer of every declared resource's model is loaded (about 1 s for
   * o200k), so the first jobs do not stall the event loop.
   */
  readonly ready: Promise<void>;
  /**
   * Stops taking jobs and waits for active ones to finish. `force` does not wait (BullMQ moves
   * abandoned jobs back to wait once their locks expire); it only takes effect on the first call.
   * Idempotent: later calls return the first call's promise.
   */
  close(force?: boolean): Promise<void>;
}

/**
 * Wires the processors to BullMQ workers: the one module that knows both the processors and
 * their concrete dependencies.
 */
export function startWorkers(options: WorkersOptions): Workers {
  const { connection, queuePrefix, log } = options;
  const tokenCountQueue = createTokenCountQueue(connection, queuePrefix);
  const counters = new Map<string, Promise<TokenCounter>>();
  const counterFor = (model: string): Promise<TokenCounter> => {
    let counter = counters.get(model);
    if (!counter) {
      counter = createTokenCounter(encodingForModel(model), (info) =>
        log.info(
          {
            encoding: info.encoding,
            loadMs: info.loadMs,
            rssDeltaMB: Math.round(info.rssDeltaBytes / 2 ** 20),
          },
          'tokenizer loaded',
        ),
      );
      counters.set(model, counter);
    }
    return counter;
  };

  const common = { connection, prefix: queuePrefix };
  const workers = [
    new Worker(
      QUEUES.append,
      createAppendProcessor({
        store: options.store,
        registry: options.registry,
        enqueueTokenCount: (ref) => tokenCountQueue.enqueue(ref),
        log,
      }),
      { ...common, concurrency: options.concurrency.append },
    ),
    new Worker(
      QUEUES.tokenCount,
      createTokenCountProcessor({
        store: options.store,
        registry: options.registry,
        counterFor,
        log,
      }),
      { ...common, concurrency: options.concurrency.tokenCount },
    ),
  ];
  for (const worker of workers) {
    worker.on('error', (err) =>
      log.error(
        { queue: worker.name, err: { name: err.name, message: err.message } },
        'worker error',
      ),
    );
  }

  const ready = Promise.all(
    options.registry.list().map((r) => counterFor(r.tokenProvider.model)),
  ).then(() => undefined);

  let closing: Promise<void> | undefined;
  return {
    workers,
    ready,
    close(force = false) {
      closing ??= (async () => {
        await Promise.allSettled(workers.map((w) => w.close(force)));
        await tokenCountQueue.close();
      })();
      return closing;
    },
  };
}
