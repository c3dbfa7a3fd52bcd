/**
 * Entry of the token-counting worker thread (see `createCountingThread`): the one place of a
 * worker process that loads a tokenizer. Counts texts with the exact counter (`counter.ts`), off
 * the event loop that runs BullMQ, for asynchronous requests (`parentPort`) and for synchronous
 * ones (the `syncPort` of {@link CountingThreadData}, answered between two texts of a batch).
 */
import {
  type MessagePort,
  parentPort,
  receiveMessageOnPort,
  workerData,
} from 'node:worker_threads';
import {
  createTokenCounter,
  type EncoderLoadListener,
  type EncodingName,
  type TokenCounter,
} from './counter.js';

/** A request: count each text with `encoding`. */
export interface CountRequest {
  /** Correlates the reply. */
  readonly id: number;
  /** Encoding to count with. */
  readonly encoding: EncodingName;
  /**
   * Texts to count: message texts (string contents, text parts, tool-call names and arguments,
   * `tool_call_id`s), roles and names.
   */
  readonly texts: readonly string[];
}

/**
 * The reply to a {@link CountRequest}: tokens per text, in order, and the thread's wall time
 * spent counting them (`busyMs`, ms); or why counting failed.
 */
export type CountReply =
  | { readonly id: number; readonly counts: readonly number[]; readonly busyMs: number }
  | { readonly id: number; readonly error: string };

/** Posted on `parentPort` once per encoding the thread loads: its load time and RSS growth. */
export interface EncoderLoaded {
  /** What `createTokenCounter`'s `onLoad` was told. */
  readonly loaded: Parameters<EncoderLoadListener>[0];
}

/** What the thread is started with (`workerData`). */
export interface CountingThreadData {
  /**
   * Port of synchronous requests: each {@link CountRequest} on it is answered on it, and then
   * `syncState[0]` is set to the request's `id + 1` and notified (`Atomics.notify`), so a caller
   * blocked in `Atomics.wait` wakes and takes the reply with `receiveMessageOnPort`.
   */
  readonly syncPort: MessagePort;
  /** One Int32 on a SharedArrayBuffer: 0 while a synchronous request is pending, else `id + 1`. */
  readonly syncState: Int32Array;
}

/** One counter per encoding, loaded on first use (the encoder is loaded once per thread). */
const counters = new Map<EncodingName, Promise<TokenCounter>>();
/** The counters whose encoder has loaded, for answering synchronous requests between texts. */
const loaded = new Map<EncodingName, TokenCounter>();

function counterOf(encoding: EncodingName): Promise<TokenCounter> {
  let counter = counters.get(encoding);
  if (!counter) {
    const onLoad: EncoderLoadListener = (loaded) =>
      parentPort?.postMessage({ loaded } satisfies EncoderLoaded);
    counter = createTokenCounter(encoding, { onLoad }).then((c) => {
      loaded.set(encoding, c);
      return c;
    });
    counters.set(encoding, counter);
  }
  return counter;
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

const data = workerData as CountingThreadData | undefined;

/** Answers a synchronous request on the sync port and wakes the caller. */
function replySync(reply: CountReply): void {
  if (!data) return;
  data.syncPort.postMessage(reply);
  Atomics.store(data.syncState, 0, reply.id + 1);
  Atomics.notify(data.syncState, 0);
}

/** Counts a synchronous request: at once when its encoder is loaded, else once it is. */
function serveSync(request: CountRequest): void {
  const counter = loaded.get(request.encoding);
  if (counter) {
    replySync(countAll(request.id, counter, request.texts, false));
    return;
  }
  void counterOf(request.encoding).then(
    (c) => replySync(countAll(request.id, c, request.texts, false)),
    (error: unknown) => replySync({ id: request.id, error: errorText(error) }),
  );
}

/** Answers every synchronous request waiting on the sync port (between two texts of a batch). */
function drainSync(): void {
  if (!data) return;
  for (let next = receiveMessageOnPort(data.syncPort); next;) {
    serveSync(next.message as CountRequest);
    next = receiveMessageOnPort(data.syncPort);
  }
}

/**
 * Tokens of each text; with `serve`, synchronous requests that arrived meanwhile are answered
 * between two texts, so a caller blocked on one waits at most one text's count.
 */
function countAll(
  id: number,
  counter: TokenCounter,
  texts: readonly string[],
  serve: boolean,
): CountReply {
  const started = performance.now();
  const counts: number[] = [];
  for (const text of texts) {
    if (serve) drainSync();
    counts.push(counter.countText(text));
  }
  return { id, counts, busyMs: performance.now() - started };
}

data?.syncPort.on('message', (request: CountRequest) => serveSync(request));

parentPort?.on('message', (request: CountRequest) => {
  void (async () => {
    let reply: CountReply;
    try {
      reply = countAll(request.id, await counterOf(request.encoding), request.texts, true);
    } catch (error) {
      reply = { id: request.id, error: errorText(error) };
    }
    parentPort!.postMessage(reply);
  })();
});
