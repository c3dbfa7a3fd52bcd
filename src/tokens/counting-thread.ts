import { extname } from 'node:path';
import {
  MessageChannel,
  receiveMessageOnPort,
  Worker,
  type MessagePort,
} from 'node:worker_threads';
import type { Logger } from 'pino';
import type { EncoderLoadListener, EncodingName } from './counter.js';
import type {
  CountingThreadData,
  CountReply,
  CountRequest,
  EncoderLoaded,
} from './counting-thread-entry.js';

/**
 * A worker thread that counts tokens, so counting never holds the event loop that runs BullMQ,
 * and the one place of a worker process that loads a tokenizer.
 */
export interface CountingThread {
  /**
   * Tokens of each text with `encoding` (special-token text as plain text), in order.
   * @throws Error when the thread failed or exited; the caller counts in-process instead.
   */
  count(encoding: EncodingName, texts: readonly string[]): Promise<number[]>;
  /**
   * {@link CountingThread.count}, blocking the calling thread (`Atomics.wait`) until the counting
   * thread answers: it does so between two texts of the batch it is counting, so the wait is
   * this request's count plus at most one text of another (and, when the thread is not running
   * or has not loaded `encoding` yet, its start: ~1 s for o200k). For callers that must count
   * synchronously (a summary fitted to its token budget); everything else uses `count`.
   * @throws Error when the thread fails to count, or does not answer within
   *   {@link SYNC_COUNT_TIMEOUT_MS} (it died); the caller counts in-process instead.
   */
  countSync(encoding: EncodingName, texts: readonly string[]): number[];
  /** Whether a thread is running now (it starts on the first count and stops when idle). */
  running(): boolean;
  /** Terminates the thread (pending counts reject). Idempotent. */
  close(): Promise<void>;
}

/**
 * How long the counting thread may sit idle before it is stopped, ms: it holds its own V8 isolate
 * and the process's only encoders (~97 MB RSS with o200k_base, docs/benchmarks.md), which an
 * idle worker should not keep.
 */
export const COUNTING_THREAD_IDLE_MS = 60_000;

/**
 * Longest a {@link CountingThread.countSync} waits for its answer, ms. The thread answers within
 * one text's count (a 4 MiB text: ~2 s) plus, when it was not running, its start (~1 s); a
 * thread that died while a caller waited is only noticed by this timeout, since the blocked
 * event loop cannot see its exit.
 */
export const SYNC_COUNT_TIMEOUT_MS = 30_000;

/**
 * V8 heap limits of the counting thread (`resourceLimits` of its `Worker`), MiB. The thread's
 * live heap is its encoder (~30 MB for o200k_base), the rank table of long pieces (~10 MB, built
 * on first use), gpt-tokenizer's merge cache (`MERGE_CACHE_BYTES`) and the batch it counts; the
 * rest is garbage of the regex splitting. V8 sizes both generations from the machine's memory
 * unless told: the young generation can reach 64 MiB (two 32 MiB semi-spaces, seen in the main
 * isolate here), and the old generation may grow up to 4x its live size before a full
 * collection (`MemoryController::MaxGrowingFactor` scales that factor with the limit). A 4 MiB
 * young generation and a 256 MiB limit took the peak RSS of a worker process during a full
 * replay from 325 to 291-299 MiB (`bench/worker-memory.ts`), with no measurable change in the
 * thread's counting speed. A batch too large for the limit ends the thread
 * (`ERR_WORKER_OUT_OF_MEMORY`) and is counted on the main thread instead.
 */
export const COUNTING_THREAD_HEAP_LIMITS = {
  maxYoungGenerationSizeMb: 4,
  maxOldGenerationSizeMb: 256,
} as const;

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
  /** Told once per encoding per thread how long its load took there (for the log). */
  readonly onLoad?: EncoderLoadListener;
}

/**
 * Starts the counting thread lazily, on the first `count` or `countSync`, and stops it after
 * `idleMs` without a request; the next request starts a new one. The entry is
 * `counting-thread-entry` next to this module, with this module's extension: the compiled `.js`
 * in the package (`dist/src/tokens`, no tsx needed), the `.ts` source through tsx when running
 * from sources (tsx, vitest). A thread that dies is replaced on the next call (its encoders,
 * ~1 s and ~60 MB for o200k, load again in the new thread); there is at most one thread per
 * process. Its heap is bounded by {@link COUNTING_THREAD_HEAP_LIMITS}.
 */
export function createCountingThread(
  log: Logger,
  options: CountingThreadOptions = {},
): CountingThread {
  const idleMs = options.idleMs ?? COUNTING_THREAD_IDLE_MS;
  /** The running thread with the main side of its sync port. */
  let current: { thread: Worker; syncPort: MessagePort } | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let nextId = 0;
  /** Set to 0 before a synchronous request; the thread stores the answered id + 1. */
  const syncState = new Int32Array(new SharedArrayBuffer(4));
  const pending = new Map<number, { resolve: (c: number[]) => void; reject: (e: Error) => void }>();
  const failAll = (error: Error) => {
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  };
  /** Stops the thread after `idleMs` unless a request comes first. */
  const armIdle = (thread: Worker) => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (current?.thread !== thread || pending.size > 0) return;
      current.syncPort.close();
      current = undefined;
      void thread.terminate();
    }, idleMs);
    idleTimer.unref();
  };
  const start = (): { thread: Worker; syncPort: MessagePort } => {
    const entry = new URL(
      `./counting-thread-entry${extname(new URL(import.meta.url).pathname)}`,
      import.meta.url,
    );
    const fromSource = entry.pathname.endsWith('.ts');
    const { port1, port2 } = new MessageChannel();
    port1.unref();
    const data: CountingThreadData = { syncPort: port2, syncState };
    const thread = new Worker(entry, {
      ...(fromSource ? { execArgv: ['--import', 'tsx'] } : {}),
      workerData: data,
      transferList: [port2],
      resourceLimits: COUNTING_THREAD_HEAP_LIMITS,
    });
    thread.unref();
    thread.on('message', (reply: CountReply | EncoderLoaded) => {
      if ('loaded' in reply) {
        options.onLoad?.(reply.loaded);
        return;
      }
      const waiter = pending.get(reply.id);
      if (!waiter) return;
      pending.delete(reply.id);
      if ('error' in reply) waiter.reject(new Error(`counting thread: ${reply.error}`));
      else {
        options.onBusy?.(reply.busyMs);
        waiter.resolve([...reply.counts]);
      }
      if (pending.size === 0) armIdle(thread);
    });
    const gone = (error: Error) => {
      if (current?.thread !== thread) return;
      current.syncPort.close();
      current = undefined;
      failAll(error);
    };
    // A thread stopped for idleness has no requests; its exit must not fail its successor's.
    thread.on('error', (error: Error) => {
      if (current?.thread !== thread) return;
      log.error({ err: { name: error.name, message: error.message } }, 'counting thread failed');
      gone(new Error(`counting thread failed: ${error.message}`));
    });
    thread.on('exit', (code) => gone(new Error(`counting thread exited with code ${code}`)));
    return { thread, syncPort: port1 };
  };
  let closed = false;
  return {
    count(encoding, texts) {
      if (closed) return Promise.reject(new Error('counting thread: closed'));
      clearTimeout(idleTimer);
      current ??= start();
      const { thread } = current;
      const id = nextId++;
      const request: CountRequest = { id, encoding, texts };
      return new Promise<number[]>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        try {
          thread.postMessage(request);
        } catch (error) {
          pending.delete(id);
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    },
    countSync(encoding, texts) {
      if (closed) throw new Error('counting thread: closed');
      clearTimeout(idleTimer);
      current ??= start();
      const { thread, syncPort } = current;
      const id = nextId++;
      Atomics.store(syncState, 0, 0);
      syncPort.postMessage({ id, encoding, texts } satisfies CountRequest);
      const deadline = performance.now() + SYNC_COUNT_TIMEOUT_MS;
      try {
        for (;;) {
          // The thread posts a reply before it sets the state, so a set state means a reply waits.
          if (Atomics.load(syncState, 0) === 0) {
            const left = deadline - performance.now();
            if (left <= 0 || Atomics.wait(syncState, 0, 0, left) === 'timed-out') {
              // Dead or stuck: the next request starts a new thread.
              if (current?.thread === thread) {
                current.syncPort.close();
                current = undefined;
                failAll(new Error('counting thread: stopped after a synchronous count timed out'));
                void thread.terminate();
              }
              throw new Error(
                `counting thread: no answer to a synchronous count within ${SYNC_COUNT_TIMEOUT_MS} ms`,
              );
            }
          }
          Atomics.store(syncState, 0, 0);
          // Replies to requests that timed out earlier may come first: skip them.
          for (let next = receiveMessageOnPort(syncPort); next;) {
            const reply = next.message as CountReply;
            if (reply.id === id) {
              if ('error' in reply) throw new Error(`counting thread: ${reply.error}`);
              options.onBusy?.(reply.busyMs);
              return [...reply.counts];
            }
            next = receiveMessageOnPort(syncPort);
          }
        }
      } finally {
        if (pending.size === 0 && current?.thread === thread) armIdle(thread);
      }
    },
    running: () => current !== undefined,
    async close() {
      closed = true;
      clearTimeout(idleTimer);
      const stopping = current;
      current = undefined;
      failAll(new Error('counting thread: closed'));
      if (stopping) {
        stopping.syncPort.close();
        await stopping.thread.terminate();
      }
    },
  };
}
