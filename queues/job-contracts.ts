import { z } from 'zod';
import { MAX_APPEND_BATCH_MESSAGES } from '../src/config/env.js';
import { MessageSchema } from '../src/core/message.js';
import { MemoryRefSchema } from '../src/core/memory-key.js';
import { FLUSH_STRATEGIES } from '../src/core/memory-resource.js';
import { INDEX_SHARDS } from '../src/redis/keys.js';
import { JOBS } from './names.js';

/**
 * Job payload contracts, validated by the producer before `add` and again by the processor
 * (an invalid payload fails without retries and without touching stored data). Every payload
 * names its instance as `ref`, a `MemoryRefSchema` (src/core/memory-key.ts).
 */

/** Maximum messages in one append call, i.e. one entry of an append job. */
export const MAX_MESSAGES_PER_APPEND = 100;

/**
 * Maximum messages in one append job, all entries together: the batcher's
 * `MEMQ_APPEND_BATCH_MAX` is at most this (queues/append-batcher.ts).
 */
export const MAX_MESSAGES_PER_APPEND_JOB = MAX_APPEND_BATCH_MESSAGES;

/**
 * One append call's messages (already redacted by the producer) for one instance: an entry of an
 * append job ({@link AppendJobSchema}).
 */
export const AppendEntrySchema = z.strictObject({
  /** Target instance. */
  ref: MemoryRefSchema,
  /** 1..{@link MAX_MESSAGES_PER_APPEND} messages with ids assigned, ascending by id. */
  messages: z
    .array(MessageSchema)
    .min(1)
    .max(MAX_MESSAGES_PER_APPEND)
    .superRefine((ms, ctx) => {
      ms.forEach((m, i) => {
        if (i > 0 && ms[i - 1]!.id >= m.id) {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'id'],
            message: `message ids must be unique and strictly ascending; ${m.id} follows ${ms[i - 1]!.id}`,
          });
        }
      });
    }),
});
/** One entry of an append job: the messages of one append call. */
export type AppendEntry = z.output<typeof AppendEntrySchema>;

/** `memory-token-count` / `token-count`: a pointer to the instance; messages are read from Redis. */
export const TokenCountJobSchema = z.strictObject({
  /** Target instance. */
  ref: MemoryRefSchema,
});
/** Payload of a token-count job. */
export type TokenCountJob = z.output<typeof TokenCountJobSchema>;

/** Maximum messages in one write job. */
export const MAX_MESSAGES_PER_WRITE = 1000;

/** `memory-flush` / `flush`: flush one instance now. */
export const FlushJobSchema = z.strictObject({
  /** Target instance. */
  ref: MemoryRefSchema,
  /** Strategy override; default the resource's `flushing.type`. */
  strategy: z.enum(FLUSH_STRATEGIES).optional(),
  /** Plan only: report what would be evicted or folded and change nothing. Default false. */
  dry_run: z.boolean().default(false),
  /**
   * True when the flush trigger enqueued it (token counting, the maintenance sweep): such a flush
   * re-checks the trigger under the instance lock and does nothing when the memory is no longer
   * over it (another flush got there first). A requested flush (false, the default) always plans.
   */
  trigger: z.boolean().default(false),
});
/** Payload of a flush job. */
export type FlushJob = z.output<typeof FlushJobSchema>;

/** `memory-cleanup` / `clear`: remove every message and the summary of one instance. */
export const ClearJobSchema = z.strictObject({
  /** Target instance. */
  ref: MemoryRefSchema,
});
/** Payload of a clear job. */
export type ClearJob = z.output<typeof ClearJobSchema>;

/** Payload of a delete job (`memory-cleanup` / `delete`: remove one instance entirely). */
export type DeleteJob = z.output<(typeof CLEANUP_JOB_SCHEMAS)[typeof JOBS.delete]>;

/**
 * `memory-cleanup` / `canary`: touches no memory; `/readyz` enqueues one and waits for it, which
 * proves a worker is consuming the queues end to end.
 */
export const CanaryJobSchema = z.strictObject({
  /** When the probe was enqueued, ms since epoch. */
  sent_at: z.number().int().nonnegative(),
});
/** Payload of a canary job. */
export type CanaryJob = z.output<typeof CanaryJobSchema>;

/** `memory-cleanup` / `write`: replace one instance's log (messages already redacted). */
export const WriteJobSchema = z.strictObject({
  /** Target instance. */
  ref: MemoryRefSchema,
  /** The new log: 0..{@link MAX_MESSAGES_PER_WRITE} messages, ids unique. */
  messages: z
    .array(MessageSchema)
    .max(MAX_MESSAGES_PER_WRITE)
    .superRefine((ms, ctx) => {
      const seen = new Set<string>();
      ms.forEach((m, i) => {
        if (seen.has(m.id)) {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'id'],
            message: `message id ${m.id} is repeated`,
          });
        }
        seen.add(m.id);
      });
    }),
});
/** Payload of a write job. */
export type WriteJob = z.output<typeof WriteJobSchema>;

/**
 * What an append or write job's data becomes once a delete or clear of its instance, requested
 * after the job was enqueued, has committed: the message ids without the messages (written by
 * `scrub-jobs.lua` during the delete or clear, or by the processor when the erasure tombstone
 * refused the job). A processor completes such a job without touching the store. Never produced
 * by a client.
 */
export const ErasedJobSchema = z.strictObject({
  /** The instance that was deleted or cleared. */
  ref: MemoryRefSchema,
  /** Ids of the messages the job carried (ULIDs: time and randomness, no content). */
  erased_ids: z.array(z.string()).max(MAX_MESSAGES_PER_WRITE),
});
/** Payload of an erased append or write job. */
export type ErasedJob = z.output<typeof ErasedJobSchema>;

/**
 * `schema`, or {@link ErasedJobSchema} for data that has `erased_ids`. Not a `z.union`: an invalid
 * job is reported field by field against the one contract its shape follows, where a union would
 * only say "Invalid input".
 */
function orErased<S extends z.ZodType>(schema: S) {
  return z.unknown().transform((data, ctx): z.output<S> | ErasedJob => {
    const erased = typeof data === 'object' && data !== null && 'erased_ids' in data;
    const parsed = (erased ? ErasedJobSchema : schema).safeParse(data);
    if (parsed.success) return parsed.data;
    for (const issue of parsed.error.issues) ctx.addIssue({ ...issue });
    return z.NEVER;
  });
}

/** An entry of an append job as a processor reads it: messages, or erased since enqueueing. */
export const AppendEntryDataSchema = orErased(AppendEntrySchema);
/** An entry as a processor reads it: {@link AppendEntry} or {@link ErasedJob}. */
export type AppendEntryData = z.output<typeof AppendEntryDataSchema>;

/**
 * `memory-append` / `append`: the appends of one project that the producer's batcher grouped
 * into one job (group commit, queues/append-batcher.ts), in the order they were submitted. The
 * processor commits each entry on its own (one `append.lua` call per entry); entries of the same
 * instance keep their order.
 */
export const AppendJobSchema = z
  .strictObject({
    /**
     * 1..{@link MAX_MESSAGES_PER_APPEND_JOB} entries, all of one project, at most
     * {@link MAX_MESSAGES_PER_APPEND_JOB} messages (or erased ids) together.
     */
    entries: z.array(AppendEntryDataSchema).min(1).max(MAX_MESSAGES_PER_APPEND_JOB),
  })
  .superRefine((job, ctx) => {
    const project = job.entries[0]?.ref.project;
    let messages = 0;
    job.entries.forEach((entry, i) => {
      messages += 'erased_ids' in entry ? entry.erased_ids.length : entry.messages.length;
      if (entry.ref.project !== project) {
        ctx.addIssue({
          code: 'custom',
          path: ['entries', i, 'ref', 'project'],
          message: `every entry of an append job belongs to one project; entry 0 is of ${JSON.stringify(project)}`,
        });
      }
    });
    if (messages > MAX_MESSAGES_PER_APPEND_JOB) {
      ctx.addIssue({
        code: 'custom',
        path: ['entries'],
        message: `at most ${MAX_MESSAGES_PER_APPEND_JOB} messages per append job, got ${messages}`,
      });
    }
  });
/** Payload of an append job. */
export type AppendJob = z.output<typeof AppendJobSchema>;

/**
 * What the append processor accepts: an append job ({@link AppendJobSchema}), or the one-entry
 * shape jobs had before group commit (`{ ref, messages }`, or `{ ref, erased_ids }` once erased),
 * read as a job of that one entry, so jobs enqueued by an earlier memq still run after an upgrade.
 */
export const AppendJobDataSchema = z.unknown().transform((data, ctx): AppendJob => {
  const single = typeof data === 'object' && data !== null && 'ref' in data;
  const parsed = single
    ? AppendEntryDataSchema.transform((entry) => ({ entries: [entry] })).safeParse(data)
    : AppendJobSchema.safeParse(data);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) ctx.addIssue({ ...issue });
  return z.NEVER;
});

/** What the write processor accepts: a write job, or one erased since it was enqueued. */
export const WriteJobDataSchema = orErased(WriteJobSchema);

/**
 * `memory-cleanup` / `maintenance`: the scheduler's sweep (queues/schedules.ts enqueues `{}`).
 */
export const MaintenanceJobSchema = z.strictObject({
  /** Index shards to sweep, each 0..`INDEX_SHARDS` - 1 (0-15); default all. */
  shards: z
    .array(
      z
        .number()
        .int()
        .min(0)
        .max(INDEX_SHARDS - 1),
    )
    .optional(),
});
/** Payload of a maintenance job. */
export type MaintenanceJob = z.output<typeof MaintenanceJobSchema>;

/**
 * What the `memory-cleanup` processor accepts, by job name (docs/architecture.md, "Jobs"): the
 * processor parses a job's data with its name's schema, and fails a job whose name is not a key
 * here without retries and without touching anything. `clear` and `delete` carry the same
 * payload (the instance); `write` may have been erased since it was enqueued.
 */
export const CLEANUP_JOB_SCHEMAS = {
  [JOBS.clear]: ClearJobSchema,
  [JOBS.delete]: ClearJobSchema,
  [JOBS.write]: WriteJobDataSchema,
  [JOBS.maintenance]: MaintenanceJobSchema,
  [JOBS.canary]: CanaryJobSchema,
} as const;

/** A job name the `memory-cleanup` queue carries: a key of {@link CLEANUP_JOB_SCHEMAS}. */
export type CleanupJobName = keyof typeof CLEANUP_JOB_SCHEMAS;

/** True when `name` is a {@link CleanupJobName}. */
export function isCleanupJobName(name: string): name is CleanupJobName {
  return Object.hasOwn(CLEANUP_JOB_SCHEMAS, name);
}

/** What one entry of an append job came to (an element of {@link AppendJobResult.entries}). */
export interface AppendEntryResult {
  /** Messages newly stored. */
  readonly added: number;
  /** Messages skipped as already accepted. */
  readonly duplicates: number;
  /**
   * Messages not stored because a delete or clear of the instance, requested after this append
   * was enqueued, committed first (`added` and `duplicates` are then 0). Present only when > 0.
   */
  readonly erased?: number;
}

/**
 * Result an append job returns (visible in Bull Board and to `waitFor`): the sums over its
 * entries, and each entry's own result when it carries more than one. `waitFor` with an append
 * receipt returns that receipt's entry (`AppendReceipt.entry`).
 */
export interface AppendJobResult {
  /** Messages newly stored, all entries. */
  readonly added: number;
  /** Messages skipped as already accepted, all entries. */
  readonly duplicates: number;
  /**
   * Messages not stored because a delete or clear of their instance, requested after this append
   * was enqueued, committed first. Present only when > 0, so the usual answer stays
   * `{ added, duplicates }`.
   */
  readonly erased?: number;
  /** Each entry's result, in the job's order; present only when the job has more than one entry. */
  readonly entries?: readonly AppendEntryResult[];
}

/** Result a write job returns. */
export interface WriteJobResult {
  /** Messages in the log after the job (unchanged when the write was erased). */
  readonly messageCount: number;
  /** The instance's epoch after the job (unchanged when the write was erased). */
  readonly epoch: number;
  /**
   * Messages not written because a delete or clear requested after the write was enqueued
   * committed first (then nothing changed); 0 when the write was applied.
   */
  readonly erased: number;
}

/** Result a clear or delete job returns. */
export interface ErasureJobResult {
  /** Messages that were in the log. */
  readonly removed: number;
  /** Clear only: the instance's epoch after the clear. */
  readonly epoch?: number;
  /**
   * The instance's erasure tombstone after the job, ms since epoch: appends and writes enqueued
   * at or before it are refused.
   */
  readonly erasedAtMs: number;
  /** Append and write job hashes whose copy of the instance's messages was removed. */
  readonly jobsScrubbed: number;
}

/** Result a token-count job returns. */
export interface TokenCountJobResult {
  /** Messages counted exactly in this job. */
  readonly counted: number;
  /**
   * Tokens counted in this job (sum of the exact counts, including messages that were flushed
   * or cleared before their count could be committed).
   */
  readonly tokens: number;
}

/**
 * Formats zod issues as one line each: `<where>.<path>: <message>`.
 * @param where Prefix naming the payload, e.g. `append job 01H...`.
 */
export function formatIssues(where: string, error: z.ZodError): string {
  return error.issues
    .map(
      (issue) =>
        `${where}${issue.path.length ? ': ' + issue.path.join('.') : ''}: ${issue.message}`,
    )
    .join('\n');
}
