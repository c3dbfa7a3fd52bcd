/**
 * Group commit for appends (docs/decisions.md, "Jobs and pipeline"): while an enqueue of a
 * project is in flight, the appends of that project that arrive go out together in the next
 * `memory-append` job, as PostgreSQL's group commit and Kafka's producer batches do. With nothing
 * in flight an append is sent at once, so a lone append waits for nothing; under load a job
 * carries what accumulated during one round trip, up to {@link AppendBatchLimits}.
 */
import type { AppendEntry } from './job-contracts.js';

export {
  DEFAULT_APPEND_BATCH_MAX_BYTES,
  DEFAULT_APPEND_BATCH_MAX_MESSAGES,
} from '../src/config/env.js';

/** Bounds of one batched append job. */
export interface AppendBatchLimits {
  /**
   * Most messages one job carries (all entries), 1..`MAX_MESSAGES_PER_APPEND_JOB` (default
   * `DEFAULT_APPEND_BATCH_MAX_MESSAGES`, src/config/env.ts); 1 turns
   * batching off (every append is its own job, sent at once). An entry is never split: one
   * larger than this goes out alone.
   */
  readonly maxMessages: number;
  /**
   * Most bytes of entries (JSON, UTF-8) one job carries (default
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
}

/** A project's state: jobs being added now, and the job gathering what arrives meanwhile. */
interface ProjectState {
  inFlight: number;
  pending: PendingJob | undefined;
}

/**
 * Creates an {@link AppendBatcher}.
 * @param send Adds one job of `entries` (all of one project) and resolves with its id.
 */
export function createAppendBatcher(
  limits: AppendBatchLimits,
  send: (project: string, entries: readonly AppendEntry[], bytes: number) => Promise<string>,
): AppendBatcher {
  const projects = new Map<string, ProjectState>();

  const dispatch = (project: string, state: ProjectState, job: PendingJob) => {
    state.inFlight += 1;
    send(project, job.entries, job.bytes)
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
        };
        if (state.inFlight === 0 || size >= limits.maxMessages || bytes >= limits.maxBytes) {
          // Nothing in flight, batching off (maxMessages 1), or a full job by itself: it goes now.
          dispatch(project, state, alone);
          return;
        }
        const pending = state.pending;
        if (
          pending !== undefined &&
          (pending.messages + size > limits.maxMessages || pending.bytes + bytes > limits.maxBytes)
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
