import { extname } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { EncodingName } from '../src/core/token-counter.js';
import type { CountReply, CountRequest } from './count-thread.js';

/** A worker thread that counts tokens, so counting never holds the event loop that runs BullMQ. */
export interface CountingThread {
  /**
   * Tokens of each text with `encoding` (special-token text as plain text), in order.
   * @throws Error when the thread failed or exited; the caller counts in-process instead.
   */
  count(encoding: EncodingName, texts: readonly string[]): Promise<number[]>;
  /** Terminates the thread (pending counts reject). Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the counting thread lazily, on the first `count`. The entry is `count-thread.ts` next
 * to this module; when running from TypeScript sources (tsx, vitest) the thread loads it through
 * tsx. A thread that dies is replaced on the next call (its encoders, ~1 s and ~150 MB for o200k,
 * load again in the new thread); normally there is one thread per process.
 */
export function createCountingThread(log: Logger): CountingThread {
  let worker: Worker | undefined;
  let nextId = 0;
  const pending = new Map<number, { resolve: (c: number[]) => void; reject: (e: Error) => void }>();
  const failAll = (error: Error) => {
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  };
  const start = (): Worker => {
    const entry = new URL(
      `./count-thread${extname(new URL(import.meta.url).pathname)}`,
      import.meta.url,
    );
    const fromSource = entry.pathname.endsWith('.ts');
    const thread = new Worker(entry, fromSource ? { execArgv: ['--import', 'tsx'] } : {});
    thread.unref();
    thread.on('message', (reply: CountReply) => {
      const waiter = pending.get(reply.id);
      if (!waiter) return;
      pending.delete(reply.id);
      if ('error' in reply) waiter.reject(new Error(`counting thread: ${reply.error}`));
      else waiter.resolve([...reply.counts]);
    });
    thread.on('error', (error: Error) => {
      log.error({ err: { name: error.name, message: error.message } }, 'counting thread failed');
      if (worker === thread) worker = undefined;
      failAll(new Error(`counting thread failed: ${error.message}`));
    });
    thread.on('exit', (code) => {
      if (worker === thread) worker = undefined;
      failAll(new Error(`counting thread exited with code ${code}`));
    });
    return thread;
  };
  let closed = false;
  return {
    count(encoding, texts) {
      if (closed) return Promise.reject(new Error('counting thread: closed'));
      worker ??= start();
      const id = nextId++;
      const request: CountRequest = { id, encoding, texts };
      return new Promise<number[]>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        try {
          worker!.postMessage(request);
        } catch (error) {
          pending.delete(id);
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    },
    async close() {
      closed = true;
      const thread = worker;
      worker = undefined;
      failAll(new Error('counting thread: closed'));
      if (thread) await thread.terminate();
    },
  };
}
