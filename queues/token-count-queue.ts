import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { memoryId, type MemoryRef } from '../src/redis/keys.js';
import type { TokenCountJob, TokenCountJobResult } from './job-contracts.js';
import { queueOptions } from './job-options.js';
import { JOBS, QUEUES } from './names.js';

/** Producer of token-count jobs. */
export interface TokenCountQueue {
  /**
   * Enqueues a token-count job for `ref`, deduplicated per instance with `keepLastIfActive`:
   * at most one waiting job per instance, never two running at once (BullMQ deduplication guide).
   */
  enqueue(ref: MemoryRef): Promise<void>;
  /** Closes the queue (not the connection). Idempotent. */
  close(): Promise<void>;
}

/** Creates a {@link TokenCountQueue} on `connection` (owned by the caller). */
export function createTokenCountQueue(connection: Redis, prefix: string): TokenCountQueue {
  const queue = new Queue<TokenCountJob, TokenCountJobResult>(QUEUES.tokenCount, {
    connection,
    ...queueOptions(prefix),
  });
  let closed = false;
  return {
    async enqueue(ref) {
      await queue.add(
        JOBS.tokenCount,
        { ref },
        { deduplication: { id: memoryId(ref), keepLastIfActive: true } },
      );
    },
    async close() {
      if (closed) return;
      closed = true;
      await queue.close();
    },
  };
}
