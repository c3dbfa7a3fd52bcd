/**
 * Entry of the token-counting worker thread (see `createCountingThread`): counts texts with the
 * same exact counter as the main thread, off the event loop that runs BullMQ.
 */
import { parentPort } from 'node:worker_threads';
import { createTokenCounter, type EncodingName } from './counter.js';

/** A request: count each text with `encoding`. */
export interface CountRequest {
  /** Correlates the reply. */
  readonly id: number;
  /** Encoding to count with. */
  readonly encoding: EncodingName;
  /** Texts to count: message texts (string contents, text parts, tool-call names and arguments, `tool_call_id`s). */
  readonly texts: readonly string[];
}

/**
 * The reply to a {@link CountRequest}: tokens per text, in order, and the thread's wall time
 * spent counting them (`busyMs`, ms); or why counting failed.
 */
export type CountReply =
  | { readonly id: number; readonly counts: readonly number[]; readonly busyMs: number }
  | { readonly id: number; readonly error: string };

parentPort?.on('message', (request: CountRequest) => {
  void (async () => {
    try {
      const counter = await createTokenCounter(request.encoding);
      const started = performance.now();
      const counts = request.texts.map((text) => counter.countText(text));
      const busyMs = performance.now() - started;
      parentPort!.postMessage({ id: request.id, counts, busyMs } satisfies CountReply);
    } catch (error) {
      const reply: CountReply = {
        id: request.id,
        error: error instanceof Error ? error.message : String(error),
      };
      parentPort!.postMessage(reply);
    }
  })();
});
