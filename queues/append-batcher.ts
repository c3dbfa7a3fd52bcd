/**
 * Group commit for appends (docs/decisions.md, "Jobs and pipeline"): while an enqueue of a
 * project is in flight, the appends of that project that arrive go out together in the next
 * `memory-append` job, as PostgreSQL's group commit and Kafka's producer batches do. With nothing
 * in flight an append is sent at once, so a lone append waits for nothing; under load a job
 * carries what accumulated during one round trip, up to {@link AppendBatchLimits}.
 */
import { ConfigError } from '../src/core/errors.js';
import { MAX_APPEND_BATCH_MESSAGES } from '../src/config/env.js';
import type { AppendEntry } from './job-contracts.js';

export {
  DEFAULT_APPEND_BATCH_MAX_BYTES,
  DEFAULT_APPEND_BATCH_MAX_MESSAGES,
} from '../src/config/env.js';

/** Bounds of one batched append job. */
export interface AppendBatchLimits {
  /**
   * Most messages one job carries (all entries), an integer 1..`MAX_MESSAGES_PER_APPEND_JOB`
   * (1000; a larger value is lowered to it) (default `DEFAULT_APPEND_BATCH_MAX_MESSAGES`,
   * src/config/env.ts); 1 turns
   * batching off (every append is its own job, sent at once). An entry is never split: one
   * larger than this goes out alone.
   */
  readonly maxMessages: number;
  /**
   * Most bytes of entries (JSON, UTF-8) one job carries, an integer >= 1 (default
   * `DEFAULT_APPEND_BATCH_MAX_BYTES`); an entry larger than this goes out alone.
   */
  readonly maxBytes: number;
}

/** Where an entry went: the job, and the entry's index in it. */
export interface BatchedEntry {
  /** BullMQ id of the job that carries the entry. */
  readonly jobId: string;
  /** The entry's index in the job's `entries`. */
  readonly entry: number;
}

/** The batcher of one producer: {@link AppendBatcher.submit} instead of one `add` per append. */
export interface AppendBatcher {
  /**
   * Enqueues `entry` (already validated and redacted) of `project`, alone or with the other
   * entries of `project` submitted while an earlier job of it was being added. Resolves once
   * the job carrying it is in Redis.
   * @param bytes The entry's size as JSON, UTF-8 bytes (what it adds to the job).
   * @throws whatever `send` throws for its job (every entry of that job gets the same error;
   *   none of them was enqueued).
   */
  submit(project: string, entry: AppendEntry, bytes: number): Promise<BatchedEntry>;
}

/** One job being assembled. */
interface PendingJob {
  readonly entries: AppendEntry[];
  readonly settle: Array<{
    readonly resolve: (at: BatchedEntry) => void;
    readonly reject: (error: unknown) => void;
  }>;
  messages: number;
  bytes: number;
  /** When its first entry was submitted, ms since epoch (the job's enqueue time). */
  readonly submittedAtMs: number;
}

/** A project's state: jobs being added now, and the job gathering what arrives meanwhile. */
interface ProjectState {
  inFlight: number;
  pending: PendingJob | undefined;
}

/**
 * Creates an {@link AppendBatcher}.
 * @param limits Bounds of one job; `maxMessages` above `MAX_APPEND_BATCH_MESSAGES` (1000, the
 *   job contract's `MAX_MESSAGES_PER_APPEND_JOB`) is lowered to it, since a larger job would be
 *   refused whole by the append processor's payload check.
 * @param send Adds one job of `entries` (all of one project), `bytes` of them as JSON, with
 *   `submittedAtMs` (when its first entry was submitted, ms since epoch) as its enqueue time,
 *   and resolves with its id.
 * @param now Clock for `submittedAtMs`, ms since epoch; default `Date.now`.
 * @throws ConfigError when `maxMessages` or `maxBytes` is not an integer >= 1.
 */
export function createAppendBatcher(
  limits: AppendBatchLimits,
  send: (
    project: string,
    entries: readonly AppendEntry[],
    bytes: number,
    submittedAtMs: number,
  ) => Promise<string>,
  now: () => number = Date.now,
): AppendBatcher {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      // NaN would never fill a job: every append of a busy project would pile into one.
      throw new ConfigError(`appendBatch.${name}: expected an integer >= 1, got ${String(value)}`);
    }
  }
  const maxMessages = Math.min(limits.maxMessages, MAX_APPEND_BATCH_MESSAGES);
  const maxBytes = limits.maxBytes;
  const projects = new Map<string, ProjectState>();

  /**
   * `send`, called at once, with a synchronous throw turned into a rejection (async), so the
   * job's appends are rejected and `inFlight` is given back.
   */
  const sent = async (project: string, job: PendingJob): Promise<string> =>
    send(project, job.entries, job.bytes, job.submittedAtMs);

  const dispatch = (project: string, state: ProjectState, job: PendingJob) => {
    state.inFlight += 1;
    sent(project, job)
      .then(
        (jobId) => job.settle.forEach(({ resolve }, entry) => resolve({ jobId, entry })),
        (error: unknown) => job.settle.forEach(({ reject }) => reject(error)),
      )
      .finally(() => {
        state.inFlight -= 1;
        const next = state.pending;
        if (next !== undefined) {
          // What gathered while this job was being added goes out now.
          state.pending = undefined;
          dispatch(project, state, next);
        } else if (state.inFlight === 0) {
          projects.delete(project);
        }
      });
  };

  return {
    submit(project, entry, bytes) {
      return new Promise<BatchedEntry>((resolve, reject) => {
        let state = projects.get(project);
        if (!state) {
          state = { inFlight: 0, pending: undefined };
          projects.set(project, state);
        }
        const size = entry.messages.length;
        const alone: PendingJob = {
          entries: [entry],
          settle: [{ resolve, reject }],
          messages: size,
          bytes,
          submittedAtMs: now(),
        };
        if (state.inFlight === 0 || size >= maxMessages || bytes >= maxBytes) {
          // Nothing in flight, batching off (maxMessages 1), or a full job by itself: it goes now,
          // after what gathered before it, so jobs are added in the order appends were submitted.
          const before = state.pending;
          state.pending = undefined;
          if (before !== undefined) dispatch(project, state, before);
          dispatch(project, state, alone);
          return;
        }
        const pending = state.pending;
        if (
          pending !== undefined &&
          (pending.messages + size > maxMessages || pending.bytes + bytes > maxBytes)
        ) {
          // The job being gathered is full: it goes now, beside the one in flight.
          state.pending = undefined;
          dispatch(project, state, pending);
        }
        if (state.pending === undefined) {
          state.pending = alone;
        } else {
          state.pending.entries.push(entry);
          state.pending.settle.push({ resolve, reject });
          state.pending.messages += size;
          state.pending.bytes += bytes;
        }
      });
    },
  };
}
