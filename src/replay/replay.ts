import { createHash } from 'node:crypto';
import { Queue, QueueEvents } from 'bullmq';
import { duplicateConnection, type RedisConnection } from '../redis/connection.js';
import type { Logger } from 'pino';
import type { MessageInput } from '../core/message.js';
import type { MemoryRef } from '../redis/keys.js';
import type { MemoryStore, MemoryWindow } from '../store/memory-store.js';
import type { AppendReceipt, MemoryClient } from '../../queues/memory-client.js';
import { isConnectionFailure } from '../redis/connection-failures.js';
import {
  BackpressureError,
  JobTimeoutError,
  PayloadError,
  RedisUnavailableError,
} from '../core/errors.js';
import { QUEUES } from '../../queues/names.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import {
  buildConversations,
  requireOneSource,
  FALLBACK_REASONS,
  SKIP_REASONS,
  sourceOptions,
  type Conversation,
  type ReplayStats,
} from './corpus.js';
import { loadConversationFile, type ScriptedConversation } from './conversation-file.js';

/** Options of {@link runReplay}. */
export interface ReplayOptions {
  /** Cap on messages replayed (whole threads first). Default: all. */
  readonly limit?: number;
  /**
   * Corpus groups; default the easy-ham ones. At most one of `groups`, `mbox`, `eml` and
   * `conversations`.
   */
  readonly groups?: readonly string[];
  /** Replay this mbox file (mboxrd or mboxo) instead of the corpus. */
  readonly mbox?: string;
  /** Replay the `.eml` files of this folder instead of the corpus. */
  readonly eml?: string;
  /**
   * Replay this file of scripted agent conversations instead of e-mail (see
   * src/replay/conversation-file.ts): each conversation goes to the instance its `key` names, its
   * messages appended one at a time in file order, each after the previous one committed.
   */
  readonly conversations?: string;
  /** Enqueue rate cap, messages per second; default unlimited. */
  readonly ratePerSecond?: number;
  /** Memory resource the threads go to, e.g. `customer-support`. */
  readonly memory: string;
  /** Appends in flight at once (bounded so the producer never buffers the corpus). Default 128. */
  readonly maxInFlight?: number;
  /** Give up when nothing commits for this long, ms. Default 120 000. */
  readonly stallTimeoutMs?: number;
  /** Called about every 250 ms with progress. */
  readonly onProgress?: (progress: ReplayProgress) => void;
  /**
   * Sample this process's RSS during the replay and report the peak as the workers' RSS (set
   * when the workers run in this process). Default false.
   */
  readonly sampleRss?: boolean;
  /**
   * When set, an append that fails with `RedisUnavailableError` (Redis down, restarting or not
   * answering) is tried again after this many ms, as a producer with a retry policy would; the
   * message keeps its id, so a retry of an append that did land stores nothing twice. Default
   * unset: such an append counts as an enqueue error and is not retried.
   */
  readonly retryUnavailableMs?: number;
  /**
   * Count an append job that no longer exists while its appends are pending (BullMQ state
   * `unknown`, asked once nothing has committed for 2 s after the last enqueue) as lost
   * ({@link ReplayReport.lostAppends}) instead of waiting for it: what a Redis failover leaves of
   * a job the old primary acknowledged but no replica had copied. Sound only while the replay
   * runs fewer append jobs than BullMQ keeps completed (1,000, `removeOnComplete`): beyond that, a
   * job removed after completing whose event was missed reads the same. Default false: such a
   * job is waited for until `stallTimeoutMs`.
   */
  readonly countVanishedJobsAsLost?: boolean;
}

/** A progress sample. */
export interface ReplayProgress {
  /** What the replay is doing: enqueueing messages, waiting for commits, or for exact counts. */
  readonly phase: 'parsing' | 'enqueueing' | 'committing' | 'counting';
  /** Messages to replay. */
  readonly total: number;
  /** Messages handed to the client so far. */
  readonly enqueued: number;
  /**
   * Messages whose append finished: its entry of the append job committed or failed, or it was
   * dropped before enqueueing (by the policy, `do_not_persist`, or a failed enqueue).
   */
  readonly committed: number;
  /** Messages of append and write jobs not yet started (`MemoryClient.backlog`). */
  readonly backlog: number;
  /** Commits per second since the first enqueue. */
  readonly ratePerSecond: number;
}

/** What a replay reports. */
export interface ReplayReport {
  /** Memory resource replayed into. */
  readonly memory: string;
  /** What was replayed: e-mail (the corpus, `--mbox`, `--eml`) or a conversations file. */
  readonly source: 'e-mail' | 'conversations';
  /**
   * What the corpus parser read, skipped and produced. For a conversations file: no e-mail read,
   * nothing skipped, `threads` and `messages` the conversations and messages replayed.
   */
  readonly corpus: ReplayStats;
  /** Memories written: one instance per thread, or per conversation of a conversations file. */
  readonly threads: number;
  /**
   * Messages handed to `MemoryClient.append`, one call each (the producer's group commit may carry
   * several of them in one append job, each as its own entry).
   */
  readonly messagesEnqueued: number;
  /** Messages newly stored: the sum of `added` over the replay's appends (their job entries). */
  readonly messagesAccepted: number;
  /**
   * Messages stored before (the store's idempotency check by message id, e.g. a second replay of
   * the same slice): the sum of `duplicates` over the replay's appends.
   */
  readonly duplicates: number;
  /** Messages the privacy policy dropped (non-persistable roles) before enqueueing. */
  readonly droppedByPolicy: number;
  /**
   * Messages of the source marked `privacy.do_not_persist` (conversations files only): the
   * producer stores, enqueues and logs none of them, and they are not in `messagesAccepted`.
   */
  readonly notPersisted: number;
  /** Pattern matches the privacy policy redacted before enqueueing. */
  readonly redactions: number;
  /** {@link redactions} by rule: `redact_patterns[i]` or a detector's name (`email`, ...). */
  readonly redactionsByRule: Readonly<Record<string, number>>;
  /** Flushes applied to the replayed memories (their flush epochs: over their lifetime). */
  readonly flushes: number;
  /** Messages folded into summaries or evicted by flushes (so `stored + folded = accepted`). */
  readonly messagesFolded: number;
  /** Replayed memories that have a rolling summary. */
  readonly summaries: number;
  /**
   * Tokens removed from windows by flushes during this replay (`memq_tokens_saved_total`), when
   * the workers record to {@link ReplayDeps.metrics}; undefined otherwise.
   */
  readonly tokensSaved: number | undefined;
  /** Peak RSS of this process during the replay, bytes, with `sampleRss`; undefined otherwise. */
  readonly workerPeakRssBytes: number | undefined;
  /** Appends whose enqueue failed (e.g. Redis unreachable); each is logged. */
  readonly enqueueErrors: number;
  /**
   * `RedisUnavailableError`s the producer saw and retried (with `retryUnavailableMs`); 0
   * otherwise.
   */
  readonly unavailableRetries: number;
  /**
   * The longest single `MemoryClient.append` call, ms, whatever it ended with (stored, rejected by
   * backpressure, or failed), up to its answer: how long a producer can be kept waiting for one.
   * The replay's own waits between attempts (a backpressure `retryAfterMs`, `retryUnavailableMs`)
   * are not part of it.
   */
  readonly appendCallMaxMs: number;
  /**
   * Append jobs carrying at least one of the replay's appends that failed permanently (dead
   * letters). A job of several entries fails when one entry fails; the entries it committed
   * before are not failed appends (see {@link failedAppends}).
   */
  readonly failedJobs: number;
  /**
   * The replay's appends (one message each) not committed: their entry of a failed append job had
   * no result in the job's progress, or the job's result marks the entry `failed`. 0 whenever
   * {@link failedJobs} is 0.
   */
  readonly failedAppends: number;
  /**
   * The replay's appends (one message each) acknowledged by the producer whose append job
   * vanished from Redis before finishing (only with `countVanishedJobsAsLost`; else 0): lost.
   */
  readonly lostAppends: number;
  /** Append jobs that vanished so (see {@link lostAppends}). */
  readonly lostJobs: number;
  /** Messages in the replayed memories' logs afterwards. */
  readonly messagesStored: number;
  /** Exact tokens in the replayed memories afterwards. */
  readonly tokensCounted: number;
  /** Memories whose every message has an exact count. */
  readonly exactMemories: number;
  /** Seconds from first enqueue to the last commit (appends and token counts). */
  readonly elapsedSeconds: number;
  /** messagesEnqueued / elapsedSeconds. */
  readonly throughputPerSecond: number;
  /**
   * Enqueue -> append committed, ms, per append (per message): from the start of its
   * `MemoryClient.append` call (after the `--rate` schedule) to the replay learning that the
   * append job carrying it finished (its `completed` or `failed` event). p50, p99 (nearest rank),
   * max, and `samples`, the appends timed: appends whose job's end was learnt by polling rather
   * than from an event are not timed.
   */
  readonly latencyMs: {
    readonly p50: number;
    readonly p99: number;
    readonly max: number;
    readonly samples: number;
  };
}

/** Dependencies of {@link runReplay}. */
export interface ReplayDeps {
  /** Producer the messages go through (validation, privacy, ids, enqueue). */
  readonly client: MemoryClient;
  /** Store read at the end to verify what was committed. */
  readonly store: MemoryStore;
  /** Connection used to create the replay's own event listener and queue handles. */
  readonly connection: RedisConnection;
  /** BullMQ prefix of the queues the workers consume. */
  readonly queuePrefix: string;
  /** Project the client writes to (for the memory refs it verifies). */
  readonly project: string;
  /** Logger for failures (never message content). */
  readonly log: Logger;
  /** The workers' instruments, when they run in this process (for tokens saved by flushes). */
  readonly metrics?: MemqMetrics;
}

/** What one append (one entry of an append job) ended with. */
type EntryOutcome = { readonly added: number; readonly duplicates: number } | 'failed';

/** An append job that has finished, as the replay learnt it. */
export interface FinishedAppendJob {
  /** When the replay learnt it from an event, ms since epoch; undefined when learnt by polling. */
  readonly at: number | undefined;
  /** True when the job failed (a dead letter), whatever some of its entries committed. */
  readonly failed: boolean;
  /** Entries the job carries (1 for a job in the one-entry shape `{ ref, messages }`). */
  readonly size: number;
  /** What entry `entry` (0-based, `AppendReceipt.entry`) ended with. */
  outcome(entry: number): EntryOutcome;
}

/** `{ added, duplicates }` of an entry's result (`AppendEntryResult`), or `failed` for none. */
function entryOutcome(result: unknown): EntryOutcome {
  if (typeof result !== 'object' || result === null) return 'failed';
  const r = result as { added?: unknown; duplicates?: unknown };
  return {
    added: typeof r.added === 'number' ? r.added : 0,
    duplicates: typeof r.duplicates === 'number' ? r.duplicates : 0,
  };
}

/**
 * A completed append job from its result (`AppendJobResult`, queues/job-contracts.ts): entry i's
 * outcome is `entries[i]` when the job carries more than one entry (the result then has
 * `entries`), else the job's whole result is its one entry's. An entry the result has no element
 * for is a failed append.
 * @param at When the replay learnt it (ms), undefined when by polling (see {@link FinishedAppendJob}).
 */
export function completedAppendJob(
  returnvalue: unknown,
  at: number | undefined,
): FinishedAppendJob {
  const entries = (returnvalue as { entries?: unknown } | null | undefined)?.entries;
  if (Array.isArray(entries)) {
    return {
      at,
      failed: false,
      size: entries.length,
      outcome: (entry) => entryOutcome(entries[entry]),
    };
  }
  return {
    at,
    failed: false,
    size: 1,
    outcome: (entry) => (entry === 0 ? entryOutcome(returnvalue ?? {}) : 'failed'),
  };
}

/**
 * A failed append job from its data and progress (processors/append.ts): entry i committed when
 * the job's progress `{ entries: [...] }` (`AppendJobProgress`, written when an entry could not be
 * committed) holds a result for it, and failed otherwise. Without such progress every entry
 * failed. The job's size is its data's `entries.length` (1 for the one-entry shape `{ ref, ... }`),
 * else the progress's, else unknown (`Infinity`: the job is never known to be fully accounted).
 */
export function failedAppendJob(
  job: { readonly data?: unknown; readonly progress?: unknown } | undefined,
  at: number | undefined,
): FinishedAppendJob {
  const data = job?.data as { entries?: unknown; ref?: unknown } | undefined;
  const progress = (job?.progress as { entries?: unknown } | null | undefined)?.entries;
  const committed = Array.isArray(progress) ? (progress as unknown[]) : [];
  const size = Array.isArray(data?.entries)
    ? data.entries.length
    : data?.ref !== undefined
      ? 1
      : Array.isArray(progress)
        ? progress.length
        : Number.POSITIVE_INFINITY;
  return {
    at,
    failed: true,
    size,
    outcome: (entry) => {
      const result = committed[entry];
      return result === null || result === undefined ? 'failed' : entryOutcome(result);
    },
  };
}

/** ULID's alphabet: Crockford's base32 digits (no I, L, O, U), https://github.com/ulid/spec. */
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** Base time for threads with no usable Date: 2002-01-01T00:00:00Z (the corpus's era). */
const UNDATED_BASE_MS = Date.UTC(2002, 0, 1);
/** Largest ULID time, ms: 2^48 - 1 (year 10889). */
const ULID_TIME_MAX = 2 ** 48 - 1;

/**
 * Deterministic message ids for replayed e-mails, so replaying the same slice twice stores
 * nothing twice (the second run reports duplicates). The rule (`memq audit` reimplements it from
 * this description; keep both in step):
 *
 * - base time T = `Date.parse(metadata.date)` of the thread's first message (in thread order)
 *   that has a `metadata.date`; 2002-01-01T00:00:00.000Z when none has, or when T + (messages - 1)
 *   would fall outside 0 .. 2^48 - 1 ms (the corpus parser keeps only dates in 1970-9999, so
 *   this is a guard);
 * - message i (0-based, thread order) gets time T + i: strictly increasing within the thread,
 *   whatever the Date headers say;
 * - id = 10 characters: T + i in base 32, most significant digit first, zero-padded; then 16
 *   characters: for k = 0..15 left to right, digit (byte 15 - k of SHA-256 of the UTF-8
 *   `metadata.message_id`) mod 32. Digits are Crockford's base32 `0123456789ABCDEFGHJKMNPQRSTVWXYZ`.
 *
 * (This is what `ulid(T + i, prng)` of the ulid package gave with a PRNG returning
 * `(digest[n] mod 32) / 32` for its n-th call: it fills the random part right to left. Written
 * out so the ids cannot change with that package.)
 */
export function replayMessageIds(conversation: Conversation): string[] {
  const firstDate = conversation.messages
    .map((m) => (m.metadata.date === undefined ? NaN : Date.parse(m.metadata.date)))
    .find((t) => !Number.isNaN(t));
  const last = conversation.messages.length - 1;
  const base =
    firstDate !== undefined && firstDate >= 0 && firstDate + last <= ULID_TIME_MAX
      ? firstDate
      : UNDATED_BASE_MS;
  return conversation.messages.map((message, index) =>
    derivedId(base + index, message.metadata.message_id),
  );
}

/** Base time of a scripted conversation none of whose messages has a `created_at`: 2025-01-01T00:00:00Z. */
const UNDATED_CONVERSATION_MS = Date.UTC(2025, 0, 1);

/**
 * Message ids for a scripted conversation (a conversations file), so replaying the same file
 * twice stores nothing twice. The rule (`memq audit` reimplements it from this description; keep
 * both in step):
 *
 * - when the conversation's messages carry ids (the file gives all or none), those ids;
 * - otherwise base time T = `Date.parse(created_at)` of the conversation's first message (in file
 *   order) that has a `created_at`; 2025-01-01T00:00:00.000Z when none has, or when T + (messages
 *   - 1) would fall outside 0 .. 2^48 - 1 ms;
 * - message i (0-based, file order) gets time T + i;
 * - id = 10 characters: T + i in base 32, most significant digit first, zero-padded; then 16
 *   characters: for k = 0..15 left to right, digit (byte 15 - k of SHA-256 of the UTF-8 text
 *   `JSON.stringify([key, i, message])`, `message` the message object as `JSON.parse` read it from
 *   the file) mod 32, in Crockford's base32 `0123456789ABCDEFGHJKMNPQRSTVWXYZ`.
 *
 * The same message at the same position of the same key gets the same id; a changed message gets
 * another.
 */
export function scriptedMessageIds(conversation: ScriptedConversation): string[] {
  const { messages } = conversation;
  if (messages.length > 0 && messages.every((m) => m.id !== undefined))
    return messages.map((m) => m.id!);
  const firstDate = messages
    .map((m) => (m.created_at === undefined ? NaN : Date.parse(m.created_at)))
    .find((t) => !Number.isNaN(t));
  const last = messages.length - 1;
  const base =
    firstDate !== undefined && firstDate >= 0 && firstDate + last <= ULID_TIME_MAX
      ? firstDate
      : UNDATED_CONVERSATION_MS;
  return messages.map((message, index) =>
    derivedId(base + index, JSON.stringify([conversation.key, index, message])),
  );
}

/**
 * A ULID-shaped id: `time` (ms, 0 .. 2^48 - 1) as 10 base-32 digits, most significant first, then
 * for k = 0..15 the digit (byte 15 - k of SHA-256(UTF-8 `seed`)) mod 32.
 */
function derivedId(time: number, seed: string): string {
  let rest = time;
  let timePart = '';
  for (let k = 0; k < 10; k++) {
    timePart = CROCKFORD[rest % 32]! + timePart;
    rest = Math.floor(rest / 32);
  }
  const digest = createHash('sha256').update(seed).digest();
  let randomPart = '';
  for (let k = 0; k < 16; k++) randomPart += CROCKFORD[digest[15 - k]! % 32]!;
  return timePart + randomPart;
}

/** One memory instance's messages, ready to append (ids set). */
interface ReplayItem {
  /** The instance key. */
  readonly key: string;
  /** The messages, in append order. */
  readonly inputs: readonly MessageInput[];
}

/**
 * The messages a replay sends: e-mail threads (ids from {@link replayMessageIds}, `created_at`
 * the e-mail's Date when usable), or a conversations file (ids from {@link scriptedMessageIds};
 * every message passed through the producer's own checks, `MemoryClient.prepareAppend`, before
 * anything is enqueued). `sequential`: append each conversation's messages one after another.
 * @throws PayloadError for more than one source, or a bad conversations file or message (naming
 *   the file, conversation and message); MemoryNotFoundError; PolicyError when the memory's
 *   policy cannot be applied.
 */
async function replaySource(
  client: MemoryClient,
  options: ReplayOptions,
): Promise<{ items: ReplayItem[]; stats: ReplayStats; sequential: boolean }> {
  const { conversations: file } = options;
  requireOneSource({
    ...sourceOptions(options),
    ...(file !== undefined ? { conversations: file } : {}),
  });
  if (file === undefined) {
    const { conversations, stats } = await buildConversations(sourceOptions(options));
    const items = conversations.map((conversation) => {
      const ids = replayMessageIds(conversation);
      return {
        key: conversation.threadId,
        inputs: conversation.messages.map((message, index): MessageInput => ({
          ...message,
          id: ids[index]!,
          ...(message.metadata.date ? { created_at: message.metadata.date } : {}),
        })),
      };
    });
    return { items, stats, sequential: false };
  }
  const { conversations, stats } = loadConversationFile(
    file,
    options.limit !== undefined ? { limit: options.limit } : {},
  );
  const items = conversations.map((conversation) => {
    const ids = scriptedMessageIds(conversation);
    return {
      key: conversation.key,
      inputs: conversation.messages.map((message, index) => ({ ...message, id: ids[index]! })),
    };
  });
  for (const [c, item] of items.entries()) {
    for (const [m, input] of item.inputs.entries()) {
      try {
        client.prepareAppend({ resource: options.memory, key: item.key }, [input]);
      } catch (error) {
        if (!(error instanceof PayloadError)) throw error;
        const field = `messages[${m}]`;
        throw new PayloadError(
          `--conversations ${file}: conversation ${c}: ${field}: ${error.message.replace(/^messages\[0\][.:]\s*/, '')}`,
          { details: { option: '--conversations', path: file, conversation: c, field } },
        );
      }
    }
  }
  return {
    items,
    sequential: true,
    stats: {
      emailsRead: 0,
      skipped: Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])) as ReplayStats['skipped'],
      fallbacks: Object.fromEntries(
        FALLBACK_REASONS.map((r) => [r, 0]),
      ) as ReplayStats['fallbacks'],
      threads: stats.conversations,
      messages: stats.messages,
    },
  };
}

/** What {@link appendPolitely} saw across all calls. */
interface ProducerTally {
  unavailableRetries: number;
  appendCallMaxMs: number;
}

/**
 * Appends one message, waiting out backpressure: on `BackpressureError` it sleeps the suggested
 * `retryAfterMs` and tries again (what a well-behaved producer does); with `retryUnavailableMs`
 * it also retries `RedisUnavailableError` after that long. Other errors propagate.
 * `tally.appendCallMaxMs` records the longest single `append` call, up to its answer or error:
 * the sleeps between attempts are the producer's choice, not the call's latency.
 */
async function appendPolitely(
  client: MemoryClient,
  target: { resource: string; key: string },
  input: MessageInput,
  retryUnavailableMs: number | undefined,
  tally: ProducerTally,
): Promise<AppendReceipt> {
  for (;;) {
    const callStarted = Date.now();
    const answered = () =>
      (tally.appendCallMaxMs = Math.max(tally.appendCallMaxMs, Date.now() - callStarted));
    try {
      const receipt = await client.append(target, [input]);
      answered();
      return receipt;
    } catch (error) {
      answered();
      if (error instanceof BackpressureError) await sleep(error.retryAfterMs);
      else if (error instanceof RedisUnavailableError && retryUnavailableMs !== undefined) {
        tally.unavailableRetries += 1;
        await sleep(retryUnavailableMs);
      } else throw error;
    }
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The main job on real input: parses the corpus into threads, streams every message through
 * {@link MemoryClient.append} (one call per e-mail, key = thread id; the producer may carry
 * several in one append job, each accounted by its entry) while workers run,
 * waits until every append has committed and every memory's tokens are counted exactly, then
 * reports. Only reports after everything it enqueued is committed.
 * @throws Error when nothing commits for `stallTimeoutMs` (names how many jobs are missing).
 */
export async function runReplay(deps: ReplayDeps, options: ReplayOptions): Promise<ReplayReport> {
  const maxInFlight = options.maxInFlight ?? 128;
  const stallTimeoutMs = options.stallTimeoutMs ?? 120_000;
  const source = await replaySource(deps.client, options);
  const { items, stats } = source;
  const total = stats.messages;

  const eventsConnection = duplicateConnection(deps.connection, { maxRetriesPerRequest: null });
  const events = new QueueEvents(QUEUES.append, {
    connection: eventsConnection,
    prefix: deps.queuePrefix,
  });
  const appendQueue = new Queue(QUEUES.append, {
    connection: deps.connection,
    prefix: deps.queuePrefix,
  });
  // Lost connections are retried by ioredis and show up as stalls or enqueue errors; without a
  // listener each reconnect attempt would print an "Unhandled error event".
  const ignore = () => undefined;
  eventsConnection.on('error', ignore);
  events.on('error', ignore);
  appendQueue.on('error', ignore);
  /**
   * The append jobs carrying the replay's appends, by job id. Appends the producer batched
   * together share one job (group commit): each is accounted on its own, by its entry index.
   */
  const jobs = new Map<
    string,
    {
      /** Entries enqueued whose outcome is not known yet: entry index -> enqueue start, ms. */
      readonly waiting: Map<number, number>;
      /** Set once the job finished (possibly before its appends' receipts arrived). */
      finished?: FinishedAppendJob;
      /** Entries of the job the replay has accounted. */
      settled: number;
    }
  >();
  /** Appends enqueued whose outcome is not known yet (the sum of every job's `waiting`). */
  let pendingAppends = 0;
  const latencies: number[] = [];
  let accepted = 0;
  let duplicates = 0;
  let failedJobs = 0;
  let failedAppends = 0;
  /** Jobs found vanished (`countVanishedJobsAsLost`): their entries count as lost appends. */
  const vanished = new Set<string>();
  let lostAppends = 0;
  let committed = 0;
  let enqueueErrors = 0;
  const tally: ProducerTally = { unavailableRetries: 0, appendCallMaxMs: 0 };
  let droppedByPolicy = 0;
  let notPersisted = 0;
  let redactions = 0;
  const redactionsByRule: Record<string, number> = {};
  let peakRss = options.sampleRss ? process.memoryUsage().rss : 0;
  const tokensSavedBefore = await tokensSavedOf(deps.metrics, options.memory);
  const progressAt = { last: Date.now() };
  const tracked = (jobId: string) => {
    let job = jobs.get(jobId);
    if (!job) {
      job = { waiting: new Map(), settled: 0 };
      jobs.set(jobId, job);
    }
    return job;
  };
  /** Accounts entry `entry` (enqueued at `startedAtMs`) of finished job `jobId`. */
  const settleEntry = (jobId: string, entry: number, startedAtMs: number) => {
    const job = jobs.get(jobId)!;
    const finished = job.finished!;
    const outcome = finished.outcome(entry);
    committed += 1;
    progressAt.last = Date.now();
    if (finished.failed && job.settled === 0 && !vanished.has(jobId)) failedJobs += 1;
    job.settled += 1;
    if (vanished.has(jobId)) lostAppends += 1;
    else if (outcome === 'failed') failedAppends += 1;
    else {
      accepted += outcome.added;
      duplicates += outcome.duplicates;
    }
    if (finished.at !== undefined) latencies.push(Math.max(0, finished.at - startedAtMs));
    // Every entry accounted: nothing more can arrive for this job.
    if (job.settled >= finished.size) jobs.delete(jobId);
  };
  /** Records that entry `entry` of job `jobId` was enqueued at `startedAtMs`. */
  const enqueuedEntry = (jobId: string, entry: number, startedAtMs: number) => {
    const job = tracked(jobId);
    if (job.finished) settleEntry(jobId, entry, startedAtMs);
    else {
      job.waiting.set(entry, startedAtMs);
      pendingAppends += 1;
    }
  };
  /** Records that job `jobId` finished; the first report of it wins (events and polling overlap). */
  const finishedJob = (jobId: string, finished: FinishedAppendJob) => {
    const job = tracked(jobId);
    if (job.finished) return;
    job.finished = finished;
    const waiting = [...job.waiting];
    job.waiting.clear();
    pendingAppends -= waiting.length;
    for (const [entry, startedAtMs] of waiting) settleEntry(jobId, entry, startedAtMs);
  };
  events.on('completed', ({ jobId, returnvalue }) => {
    finishedJob(jobId, completedAppendJob(returnvalue, Date.now()));
  });
  events.on('failed', ({ jobId, failedReason }) => {
    deps.log.error({ jobId, failedReason }, 'replay: append job failed');
    const at = Date.now();
    // Which of its entries the job committed before failing is in its progress. When Redis does
    // not answer now, the job stays pending: polling asks for it again.
    appendQueue.getJob(jobId).then(
      (job) => finishedJob(jobId, failedAppendJob(job, at)),
      () => undefined,
    );
  });

  let phase: ReplayProgress['phase'] = 'enqueueing';
  let enqueued = 0;
  let backlog = 0;
  let startedAt = 0;
  const progressTimer = setInterval(() => {
    if (options.sampleRss) peakRss = Math.max(peakRss, process.memoryUsage().rss);
    void deps.client.backlog().then(
      (b) => (backlog = b),
      () => undefined,
    );
    const seconds = startedAt ? (Date.now() - startedAt) / 1000 : 0;
    options.onProgress?.({
      phase,
      total,
      enqueued,
      committed,
      backlog,
      ratePerSecond: seconds > 0 ? committed / seconds : 0,
    });
  }, 250);
  progressTimer.unref();

  try {
    await events.waitUntilReady();
    const refs: MemoryRef[] = [];
    startedAt = Date.now();
    const inFlight = new Set<Promise<void>>();
    /** Messages whose enqueue slot was taken (the `--rate` schedule), >= `enqueued`. */
    let scheduled = 0;
    let stalled: Error | undefined;
    /**
     * Hands one message to the client; resolves with its receipt (its append job and entry), or
     * undefined when nothing was enqueued (the policy dropped it, or the enqueue failed: counted
     * and logged).
     */
    const send = async (
      target: { resource: string; key: string },
      input: MessageInput,
    ): Promise<AppendReceipt | undefined> => {
      if (options.ratePerSecond) {
        const due = startedAt + (scheduled++ * 1000) / options.ratePerSecond;
        if (due > Date.now()) await sleep(due - Date.now());
      }
      const startedAtMs = Date.now();
      enqueued += 1;
      if (input.privacy?.do_not_persist === true) notPersisted += 1;
      let receipt: AppendReceipt;
      try {
        receipt = await appendPolitely(
          deps.client,
          target,
          input,
          options.retryUnavailableMs,
          tally,
        );
      } catch (error) {
        enqueueErrors += 1;
        committed += 1;
        deps.log.error(
          { err: error instanceof Error ? error.message : String(error) },
          'replay: enqueue failed',
        );
        return undefined;
      }
      redactions += receipt.redactions;
      for (const [rule, n] of Object.entries(receipt.redactionsByRule)) {
        redactionsByRule[rule] = (redactionsByRule[rule] ?? 0) + n;
      }
      droppedByPolicy += receipt.dropped;
      if (receipt.jobId === undefined) {
        committed += 1; // nothing to store: the policy dropped the message, or do_not_persist
        return undefined;
      }
      enqueuedEntry(receipt.jobId, receipt.entry ?? 0, startedAtMs);
      return receipt;
    };
    /**
     * Waits until the append of `receipt` has finished (its entry committed, or its job failed;
     * counting is the events' job), polling its job's state; Redis being away is waited out.
     * @throws Error when it does not finish within `stallTimeoutMs`.
     */
    const committedAppend = async (receipt: AppendReceipt): Promise<void> => {
      const deadline = Date.now() + stallTimeoutMs;
      for (;;) {
        try {
          await deps.client.waitFor(receipt, { timeoutMs: Math.max(1, deadline - Date.now()) });
          return;
        } catch (error) {
          if (error instanceof JobTimeoutError) {
            throw new Error(
              `replay: append job ${receipt.jobId} (entry ${receipt.entry}) did not commit within ${stallTimeoutMs} ms; are workers running (memq work)?`,
              { cause: error },
            );
          }
          if (!(error instanceof RedisUnavailableError)) return; // failed, or removed after completing
          if (Date.now() > deadline) throw error;
          await sleep(200);
        }
      }
    };
    for (const item of items) {
      refs.push({ project: deps.project, resource: options.memory, key: item.key });
      const target = { resource: options.memory, key: item.key };
      if (source.sequential) {
        // One agent loop: each message after the previous one of this conversation committed.
        while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
        if (stalled) throw stalled;
        const task: Promise<void> = (async () => {
          for (const input of item.inputs) {
            if (stalled) return;
            const receipt = await send(target, input);
            if (receipt !== undefined) await committedAppend(receipt);
          }
        })()
          .catch((error: unknown) => {
            stalled ??= error instanceof Error ? error : new Error(String(error));
          })
          .finally(() => inFlight.delete(task));
        inFlight.add(task);
        continue;
      }
      for (const input of item.inputs) {
        while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
        const sent: Promise<void> = send(target, input)
          .then(() => undefined)
          .finally(() => inFlight.delete(sent));
        inFlight.add(sent);
      }
    }
    await Promise.all(inFlight);
    if (stalled) throw stalled;

    phase = 'committing';
    progressAt.last = Date.now();
    while (pendingAppends > 0) {
      await sleep(200);
      if (Date.now() - progressAt.last > 2000) {
        // Events can be missed (a listener lagging past the stream's bound): ask BullMQ for the
        // state of what is still pending. Outcomes learnt this way are not timed.
        try {
          const unfinished = [...jobs]
            .filter(([, job]) => !job.finished && job.waiting.size > 0)
            .map(([jobId]) => jobId);
          for (const jobId of unfinished.slice(0, 2000)) {
            const state = await appendQueue.getJobState(jobId);
            if (state === 'completed') {
              const job = await appendQueue.getJob(jobId);
              if (job) finishedJob(jobId, completedAppendJob(job.returnvalue, undefined));
            } else if (state === 'failed') {
              finishedJob(jobId, failedAppendJob(await appendQueue.getJob(jobId), undefined));
            } else if (state === 'unknown' && options.countVanishedJobsAsLost) {
              vanished.add(jobId);
              deps.log.error({ jobId }, 'replay: append job vanished (lost)');
              finishedJob(jobId, failedAppendJob(undefined, undefined));
            }
          }
        } catch (error) {
          if (!isConnectionFailure(error)) throw error; // Redis away: ask again next round
        }
      }
      if (Date.now() - progressAt.last > stallTimeoutMs) {
        const unfinished = [...jobs.values()].filter((job) => job.waiting.size > 0).length;
        throw new Error(
          `replay: ${pendingAppends} append(s) in ${unfinished} append job(s) did not commit within ${stallTimeoutMs} ms of the last progress; are workers running (memq work)?`,
        );
      }
    }

    phase = 'counting';
    let pending = refs;
    let lastCountProgress = Date.now();
    const windows = new Map<string, MemoryWindow>();
    while (pending.length > 0) {
      const next: MemoryRef[] = [];
      for (let i = 0; i < pending.length; i += 200) {
        const chunk = pending.slice(i, i + 200);
        let read: MemoryWindow[];
        try {
          read = await Promise.all(chunk.map((ref) => deps.store.read(ref, { limit: 1 })));
        } catch (error) {
          if (!isConnectionFailure(error)) throw error;
          next.push(...chunk); // Redis away: these stay pending, read again next round
          continue;
        }
        read.forEach((window, j) => {
          windows.set(chunk[j]!.key, window);
          if (window.estimatedTokens > 0) next.push(chunk[j]!);
        });
      }
      if (next.length < pending.length) lastCountProgress = Date.now();
      pending = next;
      if (pending.length === 0) break;
      if (Date.now() - lastCountProgress > stallTimeoutMs) {
        throw new Error(
          `replay: ${pending.length} memories still have uncounted tokens after ${stallTimeoutMs} ms without progress; are token-count workers running (memq work)?`,
        );
      }
      await sleep(250);
    }
    // Counting enqueues the flushes that the trigger asks for: wait until none is waiting or
    // running, so the report describes a settled state.
    const flushQueue = new Queue(QUEUES.flush, {
      connection: deps.connection,
      prefix: deps.queuePrefix,
    });
    flushQueue.on('error', ignore);
    try {
      let lastFlushProgress = Date.now();
      let lastPending = -1;
      for (;;) {
        const c = await flushQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        const pendingFlushes =
          (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
        if (pendingFlushes === 0) break;
        if (pendingFlushes !== lastPending) lastFlushProgress = Date.now();
        lastPending = pendingFlushes;
        if (Date.now() - lastFlushProgress > stallTimeoutMs) {
          throw new Error(
            `replay: ${pendingFlushes} flush job(s) made no progress for ${stallTimeoutMs} ms; are workers running (memq work)?`,
          );
        }
        await sleep(200);
      }
    } finally {
      await flushQueue.close();
    }
    const finishedAt = Date.now();
    let messagesStored = 0;
    let tokensCounted = 0;
    let exactMemories = 0;
    let flushes = 0;
    let messagesFolded = 0;
    let summaries = 0;
    for (let i = 0; i < refs.length; i += 200) {
      const chunk = refs.slice(i, i + 200);
      const all = await Promise.all(chunk.map((ref) => deps.store.stats(ref)));
      for (const stats of all) {
        messagesStored += stats.messageCount;
        tokensCounted += stats.tokenCount;
        if (stats.exact) exactMemories += 1;
        flushes += stats.epoch;
        messagesFolded += stats.foldedCount + stats.evictedCount;
        if (stats.summaryTokens > 0) summaries += 1;
      }
    }
    if (options.sampleRss) peakRss = Math.max(peakRss, process.memoryUsage().rss);
    const tokensSavedAfter = await tokensSavedOf(deps.metrics, options.memory);
    latencies.sort((a, b) => a - b);
    const elapsedSeconds = Math.max(0.001, (finishedAt - startedAt) / 1000);
    return {
      memory: options.memory,
      source: source.sequential ? 'conversations' : 'e-mail',
      corpus: stats,
      threads: refs.length,
      messagesEnqueued: enqueued,
      messagesAccepted: accepted,
      duplicates,
      droppedByPolicy,
      notPersisted,
      redactions,
      redactionsByRule,
      flushes,
      messagesFolded,
      summaries,
      tokensSaved:
        tokensSavedAfter === undefined || tokensSavedBefore === undefined
          ? undefined
          : tokensSavedAfter - tokensSavedBefore,
      workerPeakRssBytes: options.sampleRss ? peakRss : undefined,
      enqueueErrors,
      unavailableRetries: tally.unavailableRetries,
      appendCallMaxMs: tally.appendCallMaxMs,
      failedJobs,
      failedAppends,
      lostAppends,
      lostJobs: vanished.size,
      messagesStored,
      tokensCounted,
      exactMemories,
      elapsedSeconds,
      throughputPerSecond: enqueued / elapsedSeconds,
      latencyMs: {
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        max: latencies.at(-1) ?? 0,
        samples: latencies.length,
      },
    };
  } finally {
    clearInterval(progressTimer);
    await events.close();
    eventsConnection.disconnect();
    await appendQueue.close();
  }
}

/** `memq_tokens_saved_total` for `resource`, all strategies; undefined without metrics. */
async function tokensSavedOf(
  metrics: MemqMetrics | undefined,
  resource: string,
): Promise<number | undefined> {
  if (!metrics) return undefined;
  const { values } = await metrics.tokensSaved.get();
  return values.filter((v) => v.labels.resource === resource).reduce((sum, v) => sum + v.value, 0);
}

/** `3 (2 over the size cap, 1 undecodable)`: the total, then the reasons that occurred. */
export function byReason(counts: Readonly<Record<string, number>>): string {
  const present = Object.entries(counts).filter(([, n]) => n > 0);
  const total = present.reduce((sum, [, n]) => sum + n, 0);
  return present.length === 0
    ? '0'
    : `${total} (${present.map(([reason, n]) => `${n} ${reason}`).join(', ')})`;
}

/** The report as an aligned text table (the replay's final output). */
export function formatReplayReport(report: ReplayReport): string {
  const sourceRows: Array<[string, string]> =
    report.source === 'conversations'
      ? [['conversations', String(report.threads)]]
      : [
          ['e-mails read', String(report.corpus.emailsRead)],
          ['skipped', byReason(report.corpus.skipped)],
          ['fallbacks', byReason(report.corpus.fallbacks)],
          ['threads', String(report.threads)],
        ];
  const rows: Array<[string, string]> = [
    ['memory', report.memory],
    ...sourceRows,
    ['messages enqueued', String(report.messagesEnqueued)],
    ['messages accepted', String(report.messagesAccepted)],
    ['duplicates', String(report.duplicates)],
    ['dropped by policy', String(report.droppedByPolicy)],
    ...(report.source === 'conversations'
      ? [['not persisted (do_not_persist)', String(report.notPersisted)] as [string, string]]
      : []),
    [
      'redactions',
      `${report.redactions}${
        Object.keys(report.redactionsByRule).length > 0
          ? ` (${Object.entries(report.redactionsByRule)
              .map(([rule, n]) => `${rule}: ${n}`)
              .join(', ')})`
          : ''
      }`,
    ],
    ['enqueue errors', String(report.enqueueErrors)],
    [
      'producer',
      `longest append call ${report.appendCallMaxMs} ms, ${report.unavailableRetries} Redis-unavailable retries`,
    ],
    ['failed jobs', `${report.failedJobs} (${report.failedAppends} appends not committed)`],
    ['messages stored', String(report.messagesStored)],
    [
      'flushes',
      `${report.flushes} (${report.messagesFolded} messages folded or evicted, ${report.summaries} memories with a summary)`,
    ],
    [
      'tokens saved by flushes',
      report.tokensSaved === undefined
        ? 'n/a (workers in other processes)'
        : String(report.tokensSaved),
    ],
    [
      'tokens counted',
      `${report.tokensCounted} (exact in ${report.exactMemories}/${report.threads} memories)`,
    ],
    ['elapsed', `${report.elapsedSeconds.toFixed(2)} s`],
    ['throughput', `${report.throughputPerSecond.toFixed(1)} messages/s`],
    [
      'enqueue -> committed',
      `p50 ${report.latencyMs.p50} ms, p99 ${report.latencyMs.p99} ms, max ${report.latencyMs.max} ms (${report.latencyMs.samples} appends timed)`,
    ],
    [
      'worker RSS (peak)',
      report.workerPeakRssBytes === undefined
        ? 'n/a (workers in other processes)'
        : `${Math.round(report.workerPeakRssBytes / 2 ** 20)} MiB`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return ['memq replay report', ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)].join('\n');
}
