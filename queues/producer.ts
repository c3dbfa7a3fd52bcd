import { randomBytes } from 'node:crypto';
import { monotonicFactory } from 'ulid';
import { z } from 'zod';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { BackpressureError, ConflictError, PayloadError, PolicyError } from '../src/core/errors.js';
import type { MemoryRef } from '../src/core/memory-key.js';
import type { FlushStrategy } from '../src/core/memory-resource.js';
import { MEMORY_DEFAULTS } from '../src/config/memory-resource-schema.js';
import {
  MessageInputSchema,
  type Message,
  type MessageInput,
  type MessagePrivacy,
} from '../src/core/message.js';
import { applyInputPrivacy, type RedactionPolicy } from '../src/core/privacy.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import type { RedisConnection } from '../src/redis/connection.js';
import {
  confirmReplicas,
  connectionSession,
  type ReplicaConfirmation,
} from '../src/redis/replicas.js';
import { createBacklogLedger, type LedgerQueue } from './backlog-ledger.js';
import {
  backlogRefusal,
  createBackpressureGate,
  hasBacklogBounds,
  type BacklogBounds,
} from './backpressure.js';
import {
  AppendEntrySchema,
  MAX_MESSAGES_PER_APPEND,
  MAX_MESSAGES_PER_WRITE,
  WriteJobSchema,
  formatIssues,
  type AppendEntry,
  type AppendJob,
  type ClearJob,
  type DeleteJob,
  type FlushJob,
  type WriteJob,
} from './job-contracts.js';
import {
  createAppendBatcher,
  DEFAULT_APPEND_BATCH_MAX_BYTES,
  DEFAULT_APPEND_BATCH_MAX_MESSAGES,
  type AppendBatchLimits,
} from './append-batcher.js';
import type { JobReceipt } from './job-status.js';
import { resolveTarget, type MemoryTarget } from './memory-target.js';
import type { MemoryQueues } from './memory-queues.js';
import { JOBS, QUEUES, type QueueName } from './names.js';
import type { RedisGuard } from './redis-guard.js';

/** What `append` tells the caller once the messages are durably enqueued. */
export interface AppendReceipt {
  /**
   * BullMQ id of the append job that carries the messages ({@link appendJobId}); appends batched
   * together (group commit, queues/append-batcher.ts) share it. Pass the receipt itself to
   * `MemoryClient.waitFor` to get this append's own result. Undefined when no message is left to
   * store (every one dropped by the privacy policy or marked `privacy.do_not_persist`), so
   * nothing was enqueued.
   */
  readonly jobId: string | undefined;
  /**
   * This append's index in the job's `entries` (its result is `entries[entry]` of the job's
   * result when the job carries more than one); undefined when nothing was enqueued.
   */
  readonly entry: number | undefined;
  /** Ids of the messages enqueued (after the privacy policy), in order (ascending ids). */
  readonly messageIds: readonly string[];
  /**
   * Messages dropped by the resource's policy: a non-persistable role, or a match under action
   * `drop`.
   */
  readonly dropped: number;
  /**
   * Messages the caller marked `privacy.do_not_persist`: not enqueued, not stored, not logged
   * (the HTTP API's `not_persisted`).
   */
  readonly notPersisted: number;
  /**
   * Replacements made before enqueueing: pattern matches, plus metadata values replaced by a
   * message's `privacy.redact_fields`.
   */
  readonly redactions: number;
  /**
   * {@link redactions} by rule: `redact_patterns[i]`, a detector's name, or `redact_fields`
   * (`REDACT_FIELDS_RULE`).
   */
  readonly redactionsByRule: Readonly<Record<string, number>>;
  /** The instance the messages go to. */
  readonly ref: MemoryRef;
}

/** What {@link ProjectProducer.prepareAppend} returns. */
export interface PreparedAppend {
  /** The receipt `append` would return, without the job (`jobId`, `entry`: known once enqueued). */
  readonly receipt: Omit<AppendReceipt, 'jobId' | 'entry'>;
  /** The job entry to enqueue; absent when no message is left to store. */
  readonly entry?: AppendEntry;
}

/** Options of one {@link ProjectProducer.append} or {@link ProjectProducer.write} call. */
export interface EnqueueOptions {
  /**
   * Runs once the input is fully validated (ids, privacy, job contract) and before backpressure
   * and the enqueue; a rejection aborts the call with nothing enqueued. The HTTP API counts the
   * request's messages against its API key's rate limit here.
   * @param info `messages`: the messages the caller sent (before the privacy policy dropped any).
   */
  readonly beforeEnqueue?: (info: { readonly messages: number }) => Promise<void>;
}

/**
 * Producer backpressure (docs/decisions.md, "Jobs and pipeline" and "Fairness between tenants"),
 * measured in messages and bytes, not jobs (one append job carries many appends). The backlog is
 * the messages of append and write jobs not yet started (waiting, delayed or prioritized; a job
 * leaves it once a worker took it), every project, read from the backlog ledger
 * (queues/backlog-ledger.ts) and cached up to 250 ms. At or above `highWaterMessages`, `append`
 * and `write` reject with `BackpressureError` (policy `reject`, `details.bound` `messages`) or
 * wait until the backlog is at or below `lowWaterMessages` (policy `wait`, up to
 * `waitTimeoutMs`). The {@link BacklogBounds} (`projectHighWaterMessages`, `maxBytes`,
 * `projectMaxBytes`; each off when absent or 0) are read from the same ledger on every call and
 * always reject (`backlogRefusal`), whatever the policy.
 */
export type ProducerBackpressure = BacklogBounds & {
  /** Backlog (messages, every project) at or above which enqueues are refused or wait, >= 1. */
  readonly highWaterMessages: number;
  /**
   * Backlog (messages) a waiting enqueue waits for (policy `wait`), and at or below which a
   * pushing-back gate admits again; >= 0 and below `highWaterMessages`.
   */
  readonly lowWaterMessages: number;
  /** `reject` at once, or `wait` for the low-water mark. */
  readonly policy: 'reject' | 'wait';
  /** Longest a `wait` lasts, ms. Default 30 000. */
  readonly waitTimeoutMs?: number;
};

/**
 * The enqueueing operations of one project (docs/architecture.md, "Producer path"). Each runs
 * validation -> privacy -> backpressure -> `add`: nothing reaches Redis before the input is valid
 * and redacted, and nothing is enqueued past a backpressure refusal.
 */
export interface ProjectProducer {
  /**
   * Validates `messages` (1..100, each message's `privacy` included), resolves the resource,
   * assigns monotonic ULIDs and `created_at` where absent, applies each message's own privacy
   * instructions (`privacy.do_not_persist` messages are left out and counted in `notPersisted`;
   * `privacy.redact_fields` values are replaced) and the resource's privacy policy (drops
   * non-persistable roles, redacts patterns: raw content never reaches Redis, job data included;
   * see `applyInputPrivacy`), strips `privacy`, and enqueues one append job of what is left (none
   * when nothing is). Resolves when the job is in Redis (and, with `waitReplicas`, confirmed by
   * that many replicas).
   * @throws PayloadError for invalid input (nothing is enqueued).
   * @throws BackpressureError when the backlog (messages) is at or over the high-water mark, or
   *   the project's messages or bytes, or everyone's bytes, at or over a bound (`details.bound`;
   *   see {@link ProducerBackpressure}); nothing is enqueued, retry after `retryAfterMs`.
   * @throws MemoryNotFoundError for an unknown resource.
   * @throws whatever `options.beforeEnqueue` throws (nothing is enqueued).
   */
  append(
    target: MemoryTarget,
    messages: readonly MessageInput[],
    options?: EnqueueOptions,
  ): Promise<AppendReceipt>;
  /**
   * The producer-side work of {@link ProjectProducer.append} without the enqueue: validation,
   * key resolution, ids, privacy, the job contract. Returns the receipt `append` would return
   * and the job payload (absent when no message is left to store). Synchronous; no I/O.
   * @throws PayloadError / MemoryNotFoundError as `append` does.
   */
  prepareAppend(target: MemoryTarget, messages: readonly MessageInput[]): PreparedAppend;
  /**
   * Replaces an instance's log with `messages` (0..1000; ids assigned where absent, each
   * message's `privacy` instructions and the resource's policy applied as by `append`: a
   * `do_not_persist` message is not written) through a `memory-cleanup` / `write` job.
   * @throws PayloadError for invalid input (nothing is enqueued).
   * @throws BackpressureError as `append` does (the same marks and bounds).
   * @throws whatever `options.beforeEnqueue` throws (nothing is enqueued).
   */
  write(
    target: MemoryTarget,
    messages: readonly MessageInput[],
    options?: EnqueueOptions,
  ): Promise<JobReceipt>;
  /**
   * Enqueues a flush (`memory-flush`): `strategy` overrides the resource's; `dryRun` plans only.
   * Real flushes are deduplicated per instance (the receipt then names the pending flush).
   * @throws ConflictError when a pending requested flush has another strategy (it would absorb
   *   this request).
   */
  flush(
    target: MemoryTarget,
    options?: { strategy?: FlushStrategy; dryRun?: boolean },
  ): Promise<JobReceipt>;
  /**
   * Enqueues a clear (every message and the summary go; the instance stays).
   * @throws PayloadError unless `confirm` is exactly `true` (Compozy's rule for destructive calls).
   */
  clear(target: MemoryTarget, options: { confirm: true }): Promise<JobReceipt>;
  /** Enqueues a delete of the instance (every key family and its index entry). */
  delete(target: MemoryTarget): Promise<JobReceipt>;
}

/** Dependencies of {@link createProducer}. */
export interface ProducerDeps {
  /** Producer connection (fail-fast), for the backlog ledger; owned by the caller. */
  readonly connection: RedisConnection;
  /** BullMQ prefix, e.g. `{memq}` (the backlog ledger's keys live under it). */
  readonly queuePrefix: string;
  /** Declared memory resources. */
  readonly registry: MemoryRegistry;
  /** Queues jobs are added to; owned by the caller. */
  readonly queues: MemoryQueues;
  /** Deadline and failure classification of every Redis call. */
  readonly guard: RedisGuard;
  /** Clock for `created_at`, ms since epoch; default `Date.now`. */
  readonly now?: () => number;
  /** Records redactions, privacy failures and backpressure rejections; absent = not recorded. */
  readonly metrics?: MemqMetrics;
  /** Absent = no backpressure. */
  readonly backpressure?: ProducerBackpressure;
  /**
   * Group commit of appends (queues/append-batcher.ts); default
   * `DEFAULT_APPEND_BATCH_MAX_MESSAGES` messages and `DEFAULT_APPEND_BATCH_MAX_BYTES` bytes per
   * job; `maxMessages` 1 = one job per append.
   */
  readonly appendBatch?: Partial<AppendBatchLimits>;
  /**
   * Replica confirmation (`MEMQ_WAIT_REPLICAS`): when set, an append, write, clear or delete is
   * acknowledged only after `WAIT` on {@link connection} (the connection the job was added on,
   * so WAIT covers the job; one WAIT per group-committed job) confirms `replicas` replicas.
   * Fewer: the call throws RedisUnavailableError (503, retryable) and the job stays enqueued (a
   * worker may still commit it; a retry with the same message ids is deduplicated by the store's
   * `seen` window). Flushes are not confirmed (a lost flush leaves the messages unsummarized,
   * nothing lost). Absent = acknowledged by the primary alone. Not on a Redis Cluster (ConfigError).
   */
  readonly waitReplicas?: ReplicaConfirmation;
}

/** The producer: per-project enqueueing over one set of queues, one gate and one ledger. */
export interface Producer {
  /** The enqueueing operations acting for `project` (not validated here). */
  forProject(project: string): ProjectProducer;
  /**
   * The backlog: messages of append and write jobs not yet started, every project, from the
   * backlog ledger (cached <= 250 ms with backpressure on).
   * @throws RedisUnavailableError when Redis does not answer.
   */
  backlog(): Promise<number>;
  /** Stops the backpressure gate's timers (not the queues). Idempotent. */
  close(): void;
}

/**
 * A fresh append job id: the job's first message id plus 8 random hex characters, so Bull
 * Board shows which messages a job carries (no `:`, BullMQ's job-id rule). Every enqueue is a new
 * job on purpose: idempotency is the store's (the `seen` window), so a resubmitted batch runs
 * and reports its duplicates truthfully, and a batch whose job ended as a dead letter can simply
 * be submitted again. (A job id derived from the content would make BullMQ silently ignore the
 * resubmission while it still keeps the old job.)
 */
export function appendJobId(messageIds: readonly string[]): string {
  return `${messageIds[0]}-${randomBytes(4).toString('hex')}`;
}

/** Creates the {@link Producer}. */
export function createProducer(deps: ProducerDeps): Producer {
  const { guard, queues } = deps;
  const waitReplicas = deps.waitReplicas;
  /**
   * With replica confirmation on, waits for it (see {@link ProducerDeps.waitReplicas}) for the
   * writes made in `session` ({@link connectionSession} taken when the add's reply is in).
   */
  /** {@link connectionSession} of the connection when replica confirmation is on; else 0. */
  const replicaSession = () => (waitReplicas ? connectionSession(deps.connection) : 0);
  const confirmed = async (what: string, session: number) => {
    if (waitReplicas) {
      await guard(what, () => confirmReplicas(deps.connection, waitReplicas, what, session));
    }
  };
  const now = deps.now ?? Date.now;
  const nextId = monotonicFactory();
  // Always on, backpressure or not: `backlog()` reads it, and the maintenance sweep reconciles it.
  const ledger = createBacklogLedger(deps.connection, deps.queuePrefix);
  /** Messages of append and write jobs not yet started, every project (settles the ledger). */
  const countBacklog = async () => (await guard('backlog', () => ledger.backlog())).messages;
  const bounds: BacklogBounds = deps.backpressure ?? {};
  const gate = deps.backpressure
    ? createBackpressureGate({ countBacklog, queueName: QUEUES.append, ...deps.backpressure })
    : undefined;
  const checkBounds = hasBacklogBounds(bounds);
  /**
   * Admits an enqueue of `project` to `queue` or throws BackpressureError: the global message
   * marks (the gate, cached), then the ledger's per-project and byte bounds (one script call).
   */
  const admit = async (project: string, queue: QueueName) => {
    try {
      await gate?.admit(undefined, queue);
    } catch (error) {
      if (error instanceof BackpressureError) {
        deps.metrics?.backpressureRejections.inc({ queue, bound: 'messages' });
      }
      throw error;
    }
    if (!checkBounds) return;
    const usage = await guard('backlog', () => ledger.check(project));
    const refusal = backlogRefusal(queue, project, usage, bounds);
    if (refusal) {
      deps.metrics?.backpressureRejections.inc({ queue, bound: String(refusal.details.bound) });
      throw refusal;
    }
  };
  /**
   * Adds a job of `project` to `queue` carrying `options.messages` messages, then records it in
   * the ledger with them and its bytes (`options.bytes`, else measured from `data`). A failed
   * record leaves the job uncounted (the enqueue stands): the ledger errs on the side of admitting.
   */
  const enqueue = async (
    project: string,
    queue: LedgerQueue,
    name: string,
    data: object,
    options: { messages: number; jobId?: string; bytes?: number; timestamp?: number },
  ): Promise<string> => {
    const { jobId, timestamp } = options;
    const job = await guard(name, () =>
      queues.byName(queue).add(name, data, {
        ...(jobId !== undefined ? { jobId } : {}),
        ...(timestamp !== undefined ? { timestamp } : {}),
      }),
    );
    // Taken as the add's reply is in: an add re-sent after a reconnect is confirmed on the
    // connection that made it, instead of answering 503 for a job that is enqueued.
    const session = replicaSession();
    const bytes = options.bytes ?? Buffer.byteLength(JSON.stringify(data), 'utf8');
    await guard('backlog', () =>
      ledger.record(queue, job.id!, project, { messages: options.messages, bytes }),
    ).catch(() => undefined);
    await confirmed(name, session);
    return job.id!;
  };
  const batchLimits: AppendBatchLimits = {
    maxMessages: deps.appendBatch?.maxMessages ?? DEFAULT_APPEND_BATCH_MAX_MESSAGES,
    maxBytes: deps.appendBatch?.maxBytes ?? DEFAULT_APPEND_BATCH_MAX_BYTES,
  };
  /**
   * Adds one append job of `entries` (one project's), recorded in the ledger with `bytes`. Its
   * enqueue time (`timestamp`, what the erasure tombstone is compared with) is when its first
   * append was submitted: a delete that commits while an append waits in the batcher still
   * refuses it. A job of one entry keeps the shape jobs had before group commit
   * (`{ ref, messages }`), which workers of every version run, so a deployment can upgrade its
   * producers with `MEMQ_APPEND_BATCH_MAX=1` before its workers (docs/operations.md, "Upgrading").
   */
  const batcher = createAppendBatcher(batchLimits, (project, entries, bytes, submittedAtMs) => {
    const job: AppendJob | AppendEntry =
      entries.length === 1 ? entries[0]! : { entries: [...entries] };
    const jobId = appendJobId(entries.flatMap((e) => e.messages.slice(0, 1).map((m) => m.id)));
    const messages = entries.reduce((n, e) => n + e.messages.length, 0);
    deps.metrics?.appendJobEntries.observe(entries.length);
    deps.metrics?.appendJobMessages.observe(messages);
    return enqueue(project, QUEUES.append, JOBS.append, job, {
      messages,
      jobId,
      timestamp: submittedAtMs,
      bytes: entries.length === 1 ? bytes : bytes + 13 + entries.length, // `{"entries":[`, `]}`, commas
    });
  });
  /**
   * Validates `input` (min..max messages, `privacy` included), assigns ids and `created_at`,
   * sorts by id. The messages keep their `privacy` (applied and stripped by {@link protect}).
   */
  const identify = (
    input: readonly MessageInput[],
    max: number,
    min: number,
  ): Array<Message & { privacy?: MessagePrivacy }> => {
    const parsed = z.array(MessageInputSchema).min(min).max(max).safeParse(input);
    if (!parsed.success) throw new PayloadError(formatIssues('messages', parsed.error));
    const at = now();
    const createdAt = new Date(at).toISOString();
    return parsed.data
      .map((m) => ({ ...m, id: m.id ?? nextId(at), created_at: m.created_at ?? createdAt }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  };
  const cleanupJob = async (name: string, data: object, ref: MemoryRef): Promise<JobReceipt> => {
    const job = await guard(name, () => queues.cleanup.add(name, data));
    const session = replicaSession(); // as in enqueue
    await confirmed(name, session);
    return { queue: QUEUES.cleanup, jobId: job.id!, ref };
  };
  /**
   * Each message's privacy instructions, then the resource's policy (`applyInputPrivacy`);
   * without a policy, `redact_fields` replaces with the configuration's default redaction string.
   */
  const protect = (
    policy: RedactionPolicy | undefined,
    messages: ReadonlyArray<Message & { privacy?: MessagePrivacy }>,
    ref: MemoryRef,
  ) =>
    applyInputPrivacy(policy, messages, {
      ref,
      defaultRedactionString: MEMORY_DEFAULTS.redactionString,
    });
  const checkedBeforeEnqueue = (options: EnqueueOptions | undefined, messages: number) =>
    options?.beforeEnqueue?.({ messages }) ?? Promise.resolve();

  const forProject = (project: string): ProjectProducer => {
    const refOf = (target: MemoryTarget) => resolveTarget(deps.registry, project, target);

    const prepareAppend: ProjectProducer['prepareAppend'] = (target, input) => {
      const resource = deps.registry.get(target.resource);
      const ref = refOf(target);
      const identified = identify(input, MAX_MESSAGES_PER_APPEND, 1);
      const {
        kept: messages,
        dropped,
        notPersisted,
        redactions,
        redactionsByRule,
      } = protect(resource.privacyPolicy, identified, ref);
      const counts = { dropped, notPersisted, redactions, redactionsByRule, ref };
      if (messages.length === 0) return { receipt: { messageIds: [], ...counts } };
      const entry: AppendEntry = { ref, messages };
      const checked = AppendEntrySchema.safeParse(entry);
      if (!checked.success) throw new PayloadError(formatIssues('messages', checked.error));
      return { receipt: { messageIds: messages.map((m) => m.id), ...counts }, entry };
    };

    return {
      prepareAppend,

      async append(target, input, options) {
        let prepared: ReturnType<typeof prepareAppend>;
        try {
          prepared = prepareAppend(target, input);
        } catch (error) {
          if (error instanceof PolicyError) {
            deps.metrics?.privacyFailures.inc({ resource: target.resource }, input.length);
          }
          throw error;
        }
        const { receipt, entry } = prepared;
        await checkedBeforeEnqueue(options, input.length);
        if (receipt.redactions > 0) {
          deps.metrics?.redactions.inc({ resource: target.resource }, receipt.redactions);
        }
        if (!entry) return { ...receipt, jobId: undefined, entry: undefined };
        await admit(project, QUEUES.append);
        const bytes = Buffer.byteLength(JSON.stringify(entry), 'utf8');
        const batched = await batcher.submit(project, entry, bytes);
        return { ...receipt, jobId: batched.jobId, entry: batched.entry };
      },

      async write(target, input, options) {
        const resource = deps.registry.get(target.resource);
        const ref = refOf(target);
        const { kept } = protect(
          resource.privacyPolicy,
          identify(input, MAX_MESSAGES_PER_WRITE, 0),
          ref,
        );
        const job: WriteJob = { ref, messages: kept };
        const checked = WriteJobSchema.safeParse(job);
        if (!checked.success) throw new PayloadError(formatIssues('messages', checked.error));
        await checkedBeforeEnqueue(options, input.length);
        await admit(project, QUEUES.cleanup);
        const jobId = await enqueue(project, QUEUES.cleanup, JOBS.write, job, {
          messages: kept.length,
        });
        return { queue: QUEUES.cleanup, jobId, ref };
      },

      async flush(target, options = {}) {
        const ref = refOf(target);
        const jobId = await guard('flush', () => queues.enqueueFlush(ref, options));
        if (!options.dryRun) {
          // A requested flush is deduplicated per instance: the id may be a pending flush's.
          // If that one plans with another strategy, this request would silently become it.
          const pending = (await guard('flush', () => queues.flush.getJob(jobId)))?.data as
            FlushJob | undefined;
          if (pending && pending.strategy !== options.strategy) {
            throw new ConflictError(
              `flush: a flush of this memory with strategy ${pending.strategy ?? '(the resource default)'} is already pending (job ${jobId}); wait for it or request the same strategy`,
              { details: { queue: QUEUES.flush, job_id: jobId } },
            );
          }
        }
        return { queue: QUEUES.flush, jobId, ref };
      },

      async clear(target, options) {
        if ((options as { confirm?: unknown } | undefined)?.confirm !== true) {
          throw new PayloadError(
            'clear: pass { confirm: true } to remove every message and the summary',
            { details: { field: 'confirm' } },
          );
        }
        const ref = refOf(target);
        const job: ClearJob = { ref };
        return cleanupJob(JOBS.clear, job, ref);
      },

      async delete(target) {
        const ref = refOf(target);
        const job: DeleteJob = { ref };
        return cleanupJob(JOBS.delete, job, ref);
      },
    };
  };

  return {
    forProject,
    backlog: () => (gate ? gate.backlog() : countBacklog()),
    close: () => gate?.close(),
  };
}
