import { extname } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { EncodingName } from './counter.js';
import type { CountReply, CountRequest } from './counting-thread-entry.js';

/** A worker thread that counts tokens, so counting never holds the event loop that runs BullMQ. */
export interface CountingThread {
  /**
   * Tokens of each text with `encoding` (special-token text as plain text), in order.
   * @throws Error when the thread failed or exited; the caller counts in-process instead.
   */
  count(encoding: EncodingName, texts: readonly string[]): Promise<number[]>;
  /** Whether a thread is running now (it starts on the first count and stops when idle). */
  running(): boolean;
  /** Terminates the thread (pending counts reject). Idempotent. */
  close(): Promise<void>;
}

/**
 * How long the counting thread may sit idle before it is stopped, ms: it holds its own V8 isolate
 * and encoder (~100 MB RSS, docs/benchmarks.md), which an idle worker should not keep.
 */
export const COUNTING_THREAD_IDLE_MS = 60_000;

/** Options of {@link createCountingThread}. */
export interface CountingThreadOptions {
  /** Idle time before the thread stops, ms; default {@link COUNTING_THREAD_IDLE_MS}. */
  readonly idleMs?: number;
  /**
   * Called with the thread's wall time spent counting each request, ms (from the thread's own
   * clock, so it excludes the hand-off to and from it). Feeds
   * `memq_counting_thread_busy_seconds_total`.
   */
  readonly onBusy?: (ms: number) => void;
}

/**
 * Starts the counting thread lazily, on the first `count`, and stops it after `idleMs` without a
 * request; the next `count` starts a new one. The entry is `counting-thread-entry` next to this
 * module, with this module's extension: the compiled `.js` in the package (`dist/src/tokens`, no
 * tsx needed), the `.ts` source through tsx when running from sources (tsx, vitest). A
 * thread that dies is replaced on the next call (its encoders, ~1 s and ~100 MB for o200k, load
 * again in the new thread); there is at most one thread per process.
 */
export function createCountingThread(
  log: Logger,
  options: CountingThreadOptions = {},
): CountingThread {
  const idleMs = options.idleMs ?? COUNTING_THREAD_IDLE_MS;
  let worker: Worker | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let nextId = 0;
  const pending = new Map<number, { resolve: (c: number[]) => void; reject: (e: Error) => void }>();
  const failAll = (error: Error) => {
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  };
  const start = (): Worker => {
    const entry = new URL(
      `./counting-thread-entry${extname(new URL(import.meta.url).pathname)}`,
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
      else {
        options.onBusy?.(reply.busyMs);
        waiter.resolve([...reply.counts]);
      }
      if (pending.size === 0) {
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => {
          if (worker !== thread || pending.size > 0) return;
          worker = undefined;
          void thread.terminate();
        }, idleMs);
        idleTimer.unref();
      }
    });
    // A thread stopped for idleness has no requests; its exit must not fail its successor's.
    thread.on('error', (error: Error) => {
      if (worker !== thread) return;
      log.error({ err: { name: error.name, message: error.message } }, 'counting thread failed');
      worker = undefined;
      failAll(new Error(`counting thread failed: ${error.message}`));
    });
    thread.on('exit', (code) => {
      if (worker !== thread) return;
      worker = undefined;
      failAll(new Error(`counting thread exited with code ${code}`));
    });
    return thread;
  };
  let closed = false;
  return {
    count(encoding, texts) {
      if (closed) return Promise.reject(new Error('counting thread: closed'));
      clearTimeout(idleTimer);
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
    running: () => worker !== undefined,
    async close() {
      closed = true;
      clearTimeout(idleTimer);
      const thread = worker;
      worker = undefined;
      failAll(new Error('counting thread: closed'));
      if (thread) await thread.terminate();
    },
  };
}
