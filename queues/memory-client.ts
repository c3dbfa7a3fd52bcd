import { randomBytes } from 'node:crypto';
import type { RedisConnection } from '../src/redis/connection.js';
import { monotonicFactory } from 'ulid';
import { z } from 'zod';
import {
  BackpressureError,
  ConflictError,
  PayloadError,
  PolicyError,
  RedisUnavailableError,
} from '../src/core/errors.js';
import { MessageInputSchema, type Message, type MessageInput } from '../src/core/message.js';
import { resolveMemoryKey } from '../src/core/key-template.js';
import { NAME_PATTERN } from '../src/core/memory-key.js';
import { applyPrivacy, findRedactable } from '../src/core/privacy.js';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import type { FlushStrategy } from '../src/core/memory-resource.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import type { MemoryStats, MemoryStore, MemoryWindow } from '../src/store/memory-store.js';
import {
  AppendJobSchema,
  MAX_MESSAGES_PER_APPEND,
  MAX_MESSAGES_PER_WRITE,
  WriteJobSchema,
  formatIssues,
  type AppendJob,
  type AppendJobResult,
  type CanaryJob,
  type ClearJob,
  type DeleteJob,
  type FlushJob,
  type WriteJob,
} from './job-contracts.js';
import {
  backlogRefusal,
  createBackpressureGate,
  hasBacklogBounds,
  type BacklogBounds,
} from './backpressure.js';
import { createBacklogLedger, type LedgerQueue } from './backlog-ledger.js';
import { createMemoryQueues, type MemoryQueues } from './memory-queues.js';
import { JOBS, QUEUES, type QueueName } from './names.js';

/** Where an enqueued job can be found: pass it to {@link MemoryClient.waitFor}. */
export interface JobReceipt {
  /** The queue the job is in. */
  readonly queue: QueueName;
  /** The BullMQ job id. */
  readonly jobId: string;
  /** The instance the job acts on. */
  readonly ref: MemoryRef;
}

/**
 * Which memory instance a call addresses (the project comes from the client, not the call).
 * The key is resolved by `resolveMemoryKey` (Compozy's precedence): `key` (rendered if it
 * contains `{{`), else `keyTemplate`, else the resource's `default_key_template`, each rendered
 * against `context`.
 */
export interface MemoryTarget {
  /** Memory resource id (a file in `memories/`). */
  readonly resource: string;
  /** Instance key, e.g. `support:42` (1-256 of `[A-Za-z0-9_:\-@.]`), or a key template. */
  readonly key?: string;
  /** Go-template-style key, e.g. `support:{{ .conversation_id }}`. */
  readonly keyTemplate?: string;
  /** Variables for the template, e.g. `{ conversation_id: '42' }`. */
  readonly context?: unknown;
}

/** What `append` tells the caller once the messages are durably enqueued. */
export interface AppendReceipt {
  /**
   * BullMQ job id ({@link appendJobId}); pass to {@link MemoryClient.waitFor}. Undefined when the
   * privacy policy dropped every message, so nothing was enqueued.
   */
  readonly jobId: string | undefined;
  /** Ids of the messages enqueued (after the privacy policy), in order. */
  readonly messageIds: readonly string[];
  /** Messages dropped because their role is non-persistable under the resource's policy. */
  readonly dropped: number;
  /** Pattern matches redacted before enqueueing. */
  readonly redactions: number;
  /** {@link redactions} by rule (`redact_patterns[i]` or a detector's name). */
  readonly redactionsByRule: Readonly<Record<string, number>>;
  /** The instance the messages go to. */
  readonly ref: MemoryRef;
}

/**
 * Options of one {@link MemoryClient.append} or {@link MemoryClient.write} call.
 */
export interface EnqueueOptions {
  /**
   * Runs once the input is fully validated (ids, privacy, job contract) and before backpressure
   * and the enqueue; a rejection aborts the call with nothing enqueued. The HTTP API counts the
   * request's messages against its API key's rate limit here.
   * @param info `messages`: the messages the caller sent (before the privacy policy dropped any).
   */
  readonly beforeEnqueue?: (info: { readonly messages: number }) => Promise<void>;
}

/** The producer-side library services import (docs/architecture.md, "Surfaces and processes"). */
export interface MemoryClient {
  /**
   * Validates `messages` (1..100), resolves the resource, assigns monotonic ULIDs and
   * `created_at` where absent, applies the resource's privacy policy (drops non-persistable
   * roles, redacts patterns: raw content never reaches Redis, job data included) and enqueues
   * one append job. Resolves when the job is in Redis.
   * @throws PayloadError for invalid input (nothing is enqueued).
   * @throws BackpressureError when the append backlog is over the high-water mark, or the
   *   project's or everyone's backlog over a bound (see {@link MemoryClientDeps.backpressure});
   *   nothing is enqueued, retry after `retryAfterMs`.
   * @throws MemoryNotFoundError for an unknown resource.
   * @throws whatever `options.beforeEnqueue` throws (nothing is enqueued).
   */
  append(
    target: MemoryTarget,
    messages: readonly MessageInput[],
    options?: EnqueueOptions,
  ): Promise<AppendReceipt>;
  /**
   * The producer-side work of {@link MemoryClient.append} without the enqueue: validation, key
   * resolution, ids, privacy, the job contract. Returns the receipt `append` would return and
   * the job payload (absent when the policy dropped every message). Synchronous; no I/O.
   * @throws PayloadError / MemoryNotFoundError as `append` does.
   */
  prepareAppend(
    target: MemoryTarget,
    messages: readonly MessageInput[],
  ): { receipt: AppendReceipt; job?: AppendJob };
  /**
   * Replaces an instance's log with `messages` (0..1000; ids assigned where absent, privacy
   * policy applied) through a `memory-cleanup` / `write` job.
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
  /**
   * Reads one page of an instance (see `MemoryStore.read`); with `flushing.track_access` the read
   * of every returned message is recorded for lru/lfu.
   */
  read(target: MemoryTarget, page?: { offset?: number; limit?: number }): Promise<MemoryWindow>;
  /** Counters, accounting and health of an instance (see `MemoryStore.stats`). */
  stats(target: MemoryTarget, options?: { deep?: boolean }): Promise<MemoryStats>;
  /** Health of an instance (see `MemoryStore.health`). */
  health(target: MemoryTarget): Promise<MemoryStats & { healthy: boolean }>;
  /**
   * Waits until a job has finished and returns its result. A bare job id means an append job.
   * @throws Error when the job failed (its reason) or did not finish within `timeoutMs`
   *   (default 30 000).
   * @throws PayloadError when no such job exists (unknown id, or already removed by retention).
   */
  waitFor<R = AppendJobResult>(
    job: string | JobReceipt,
    options?: { timeoutMs?: number },
  ): Promise<R>;
  /** Backlog of the append queue: waiting + delayed + prioritized jobs (cached <= 250 ms with backpressure on). */
  backlog(): Promise<number>;
  /**
   * Readiness probe: enqueues a `canary` job on `memory-cleanup` and polls (5 ms doubling to
   * 100 ms) until a worker has run it. Resolves with the round trip in milliseconds. The canary
   * leaves nothing behind: a completed one is removed on completion, and one that failed or that
   * no worker took within `timeoutMs` is removed before this rejects.
   * @throws Error when it failed, or no worker completed it within `timeoutMs` (default 2 000).
   * @throws RedisUnavailableError when Redis does not answer (see `redisTimeoutMs`).
   */
  canary(options?: { timeoutMs?: number }): Promise<number>;
  /** The project (tenant) every call of this client acts for. */
  readonly project: string;
  /**
   * The same client acting for another project (the HTTP API binds each request to the project
   * of its API key): same queues, backpressure and metrics; views are cached per project and
   * their `close()` does nothing (the client that created them owns the queues).
   * @throws PayloadError when `project` is not 1-100 of `[A-Za-z0-9_-]`.
   */
  forProject(project: string): MemoryClient;
  /**
   * A job of this client's project, or undefined when there is no such job or it belongs to
   * another project (so callers cannot probe other tenants' job ids).
   */
  job(queue: QueueName, jobId: string): Promise<JobInfo | undefined>;
  /**
   * Stops the backpressure gate and closes the queues the client created (not injected ones
   * (`MemoryClientDeps.queues`), not the Redis connection). Idempotent.
   */
  close(): Promise<void>;
}

/** A job as {@link MemoryClient.job} reports it (what `GET /v1/jobs/:queue/:id` returns). */
export interface JobInfo {
  /** Queue name. */
  readonly queue: QueueName;
  /** BullMQ job id. */
  readonly id: string;
  /** Job name, e.g. `append`, `flush`, `clear`. */
  readonly name: string;
  /** BullMQ state: `waiting`, `active`, `delayed`, `prioritized`, `completed`, `failed`, ... */
  readonly state: string;
  /** Attempts made so far (retries included). */
  readonly attemptsMade: number;
  /** Progress the processor reported (number or object), BullMQ's `job.progress`. */
  readonly progress: unknown;
  /** When the job was added, ms since epoch. */
  readonly createdAt: number;
  /** When the last attempt started, ms since epoch. */
  readonly processedAt?: number;
  /** When the job finished, ms since epoch. */
  readonly finishedAt?: number;
  /** The processor's result, for completed jobs (e.g. `{ added, duplicates }` for an append). */
  readonly result?: unknown;
  /** Why the job failed, for failed jobs (never message content). */
  readonly failedReason?: string;
}

/** Dependencies of {@link createMemoryClient}. */
export interface MemoryClientDeps {
  /** Producer connection (fail-fast); owned by the caller. */
  readonly connection: RedisConnection;
  /** BullMQ prefix, e.g. `{memq}`. */
  readonly queuePrefix: string;
  /**
   * Queues to enqueue on, owned by the caller (the runtime shares one set between the client and
   * the workers); they must use `queuePrefix`. Absent = the client creates its own on
   * `connection` and closes them in `close()`; injected queues are never closed by the client.
   */
  readonly queues?: MemoryQueues;
  /** Declared memory resources. */
  readonly registry: MemoryRegistry;
  /** Tenant all calls of this client act for. */
  readonly project: string;
  /** Store used by `read`. */
  readonly store: MemoryStore;
  /**
   * Longest a queue operation (enqueue, backlog count, job lookup) may wait for Redis before it
   * fails with `RedisUnavailableError`, ms. BullMQ waits for a lost connection indefinitely;
   * producers must not. Default 5 000.
   */
  readonly redisTimeoutMs?: number;
  /** Clock for `created_at`, ms since epoch; default `Date.now`. */
  readonly now?: () => number;
  /** Records `memq_redactions_total` and `memq_backpressure_rejections_total`; absent = not recorded. */
  readonly metrics?: MemqMetrics;
  /**
   * Producer backpressure (docs/decisions.md, "Pipeline" and "Fairness between tenants"); absent = none. At or above `highWaterJobs`
   * waiting + delayed + prioritized appends, `append` and `write` reject with
   * `BackpressureError` (policy `reject`) or wait until the backlog is at or below
   * `lowWaterJobs` (policy `wait`, up to `waitTimeoutMs`). The {@link BacklogBounds}
   * (`projectHighWaterJobs`, `maxBytes`, `projectMaxBytes`; each off when absent or 0) are read
   * from the backlog ledger (queues/backlog-ledger.ts) and always reject (`backlogRefusal`),
   * whatever the policy.
   */
  readonly backpressure?: BacklogBounds & {
    readonly highWaterJobs: number;
    readonly lowWaterJobs: number;
    readonly policy: 'reject' | 'wait';
    /** Default 30 000. */
    readonly waitTimeoutMs?: number;
  };
}

/**
 * A fresh append job id: the batch's first message id plus 8 random hex characters, so Bull
 * Board shows which messages a job carries (no `:`, BullMQ's job-id rule). Every enqueue is a new
 * job on purpose: idempotency is the store's (the `seen` window), so a resubmitted batch runs
 * and reports its duplicates truthfully, and a batch whose job ended as a dead letter can simply
 * be submitted again. (A job id derived from the content would make BullMQ silently ignore the
 * resubmission while it still keeps the old job.)
 */
export function appendJobId(messageIds: readonly string[]): string {
  return `${messageIds[0]}-${randomBytes(4).toString('hex')}`;
}

/** Socket error codes that mean the connection to Redis dropped (Node's `net` errors). */
const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

/**
 * True when `error` says Redis was unreachable or not serving, not that the request was wrong:
 * ioredis's "Connection is closed." and its retry-limit error (connection lost mid-command), a
 * socket error, or a Redis reply of `LOADING` (restarting, reading its AOF), `CLUSTERDOWN`,
 * `TRYAGAIN` or `MASTERDOWN` (Redis documentation, "Redis errors" / cluster specification).
 */
export function isConnectionFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    error.message === 'Connection is closed.' ||
    (code !== undefined && CONNECTION_ERROR_CODES.has(code)) ||
    /^(LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN)\b/.test(error.message)
  );
}

/** Creates a {@link MemoryClient}. */
export function createMemoryClient(deps: MemoryClientDeps): MemoryClient {
  const now = deps.now ?? Date.now;
  const nextId = monotonicFactory();
  const ownsQueues = deps.queues === undefined;
  const queues = deps.queues ?? createMemoryQueues(deps.connection, deps.queuePrefix);
  const redisTimeoutMs = deps.redisTimeoutMs ?? 5_000;
  /**
   * Runs a BullMQ operation with a deadline: fails at once while the producer connection is known
   * to be down (reconnecting or closed), and after `redisTimeoutMs` otherwise.
   */
  const guard = async <T>(what: string, op: () => Promise<T>): Promise<T> => {
    const status = deps.connection.status;
    if (status === 'reconnecting' || status === 'close' || status === 'end') {
      throw new RedisUnavailableError(
        `${what}: Redis is not reachable (connection ${status}); nothing was changed, retry shortly`,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new RedisUnavailableError(
              `${what}: RedisConnection did not answer within ${redisTimeoutMs} ms; retry shortly (the operation may or may not have happened)`,
            ),
          ),
        redisTimeoutMs,
      );
      timer.unref();
    });
    try {
      return await Promise.race([op(), deadline]);
    } catch (error) {
      if (isConnectionFailure(error)) {
        throw new RedisUnavailableError(
          `${what}: Redis failed mid-operation (${(error as Error).message.slice(0, 80)}); retry shortly (the operation may or may not have happened)`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  };
  const appendQueue = queues.append;
  const countBacklog = async () => {
    const counts = await guard('backlog', () =>
      appendQueue.getJobCounts('waiting', 'delayed', 'prioritized'),
    );
    return (counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0);
  };
  const bounds: BacklogBounds = deps.backpressure ?? {};
  const gate = deps.backpressure
    ? createBackpressureGate({ countBacklog, queueName: QUEUES.append, ...deps.backpressure })
    : undefined;
  const ledger = hasBacklogBounds(bounds)
    ? createBacklogLedger(deps.connection, deps.queuePrefix)
    : undefined;
  /**
   * Admits an enqueue of `project` to `queue` or throws BackpressureError: the global job marks,
   * then the ledger's bounds.
   */
  const admit = async (project: string, queue: QueueName) => {
    try {
      await gate?.admit();
    } catch (error) {
      if (error instanceof BackpressureError) {
        deps.metrics?.backpressureRejections.inc({ queue: QUEUES.append, bound: 'jobs' });
      }
      throw error;
    }
    if (!ledger) return;
    const usage = await guard('backlog', () => ledger.check(project));
    const refusal = backlogRefusal(queue, project, usage, bounds);
    if (refusal) {
      deps.metrics?.backpressureRejections.inc({
        queue,
        bound: String(refusal.details.bound),
      });
      throw refusal;
    }
  };
  /**
   * Adds a job of `project` to `queue`, then records it in the ledger. A failed record leaves the
   * job uncounted (the enqueue stands): the ledger errs on the side of admitting.
   */
  const enqueue = async (
    project: string,
    queue: LedgerQueue,
    name: string,
    data: object,
    options?: { jobId: string },
  ): Promise<string> => {
    const job = await guard(name, () => queues.byName(queue).add(name, data, options));
    if (ledger) {
      const bytes = Buffer.byteLength(JSON.stringify(data), 'utf8');
      await guard('backlog', () => ledger.record(queue, job.id!, project, bytes)).catch(
        () => undefined,
      );
    }
    return job.id!;
  };
  const identify = (input: readonly MessageInput[], max: number, min: number): Message[] => {
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
    return { queue: QUEUES.cleanup, jobId: job.id!, ref };
  };
  const checkedBeforeEnqueue = (options: EnqueueOptions | undefined, messages: number) =>
    options?.beforeEnqueue?.({ messages }) ?? Promise.resolve();

  const bind = (project: string, owner: boolean): MemoryClient => {
    const refOf = (target: MemoryTarget): MemoryRef => {
      const resource = deps.registry.get(target.resource);
      const key = resolveMemoryKey({
        ...(target.key !== undefined ? { key: target.key } : {}),
        ...(target.keyTemplate !== undefined ? { keyTemplate: target.keyTemplate } : {}),
        ...(resource.defaultKeyTemplate !== undefined
          ? { defaultKeyTemplate: resource.defaultKeyTemplate }
          : {}),
        context: target.context,
      });
      const pattern = findRedactable(resource.privacyPolicy, key);
      if (pattern !== undefined) {
        throw new PayloadError(
          `key: contains text that memory ${JSON.stringify(target.resource)}'s privacy policy redacts (privacy_policy.redact_patterns[${pattern}]); keys end up in Redis key names, job data and logs, where nothing can be redacted: use an opaque id`,
          { details: { field: 'key', pattern } },
        );
      }
      return { project, resource: target.resource, key };
    };

    const prepareAppend: MemoryClient['prepareAppend'] = (target, input) => {
      const resource = deps.registry.get(target.resource);
      const ref = refOf(target);
      const identified = identify(input, MAX_MESSAGES_PER_APPEND, 1);
      const {
        kept: messages,
        dropped,
        redactions,
        redactionsByRule,
      } = applyPrivacy(resource.privacyPolicy, identified);
      if (messages.length === 0) {
        return {
          receipt: { jobId: undefined, messageIds: [], dropped, redactions, redactionsByRule, ref },
        };
      }
      const job: AppendJob = { ref, messages };
      const checked = AppendJobSchema.safeParse(job);
      if (!checked.success) throw new PayloadError(formatIssues('messages', checked.error));
      const messageIds = messages.map((m) => m.id);
      const jobId = appendJobId(messageIds);
      return { receipt: { jobId, messageIds, dropped, redactions, redactionsByRule, ref }, job };
    };

    const client: MemoryClient = {
      project,
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
        const { receipt, job } = prepared;
        await checkedBeforeEnqueue(options, input.length);
        if (receipt.redactions > 0) {
          deps.metrics?.redactions.inc({ resource: target.resource }, receipt.redactions);
        }
        if (!job || receipt.jobId === undefined) return receipt;
        await admit(project, QUEUES.append);
        await enqueue(project, QUEUES.append, JOBS.append, job, { jobId: receipt.jobId });
        return receipt;
      },

      async write(target, input, options) {
        const resource = deps.registry.get(target.resource);
        const ref = refOf(target);
        const { kept } = applyPrivacy(
          resource.privacyPolicy,
          identify(input, MAX_MESSAGES_PER_WRITE, 0),
        );
        const job: WriteJob = { ref, messages: kept };
        const checked = WriteJobSchema.safeParse(job);
        if (!checked.success) throw new PayloadError(formatIssues('messages', checked.error));
        await checkedBeforeEnqueue(options, input.length);
        await admit(project, QUEUES.cleanup);
        const jobId = await enqueue(project, QUEUES.cleanup, JOBS.write, job);
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
            {
              details: { field: 'confirm' },
            },
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

      read(target, page) {
        const resource = deps.registry.get(target.resource);
        return deps.store.read(refOf(target), {
          ...page,
          recordAccess: resource.flushing.trackAccess === true,
        });
      },

      stats(target, options) {
        return deps.store.stats(refOf(target), options);
      },

      health(target) {
        return deps.store.health(refOf(target));
      },

      async waitFor<R>(job: string | JobReceipt, options: { timeoutMs?: number } = {}): Promise<R> {
        const queueName = typeof job === 'string' ? QUEUES.append : job.queue;
        const jobId = typeof job === 'string' ? job : job.jobId;
        const queue = queues.byName(queueName);
        const timeoutMs = options.timeoutMs ?? 30_000;
        const deadline = Date.now() + timeoutMs;
        // Polls the job's state (5 ms doubling to 100 ms) rather than listening to QueueEvents: a
        // listener that starts reading the event stream after the job finished misses the event.
        for (let delayMs = 5; ; delayMs = Math.min(100, delayMs * 2)) {
          const state = await guard('waitFor', () => queue.getJobState(jobId));
          if (state === 'unknown') {
            throw new PayloadError(
              `waitFor: no ${queueName} job with id ${JSON.stringify(jobId)} (unknown id, or removed after completion by removeOnComplete)`,
            );
          }
          if (state === 'completed' || state === 'failed') {
            const found = await guard('waitFor', () => queue.getJob(jobId));
            if (state === 'completed' && found) return found.returnvalue as R;
            throw new Error(
              `${queueName} job ${jobId} failed: ${found?.failedReason ?? 'removed after failing'}`,
            );
          }
          if (Date.now() >= deadline) {
            throw new Error(
              `waitFor: ${queueName} job ${jobId} did not finish within ${timeoutMs} ms (state: ${state})`,
            );
          }
          await new Promise((resolve) =>
            setTimeout(resolve, Math.min(delayMs, deadline - Date.now())),
          );
        }
      },

      backlog() {
        return gate ? gate.backlog() : countBacklog();
      },

      async canary(options = {}) {
        const started = Date.now();
        const timeoutMs = options.timeoutMs ?? 2_000;
        const data: CanaryJob = { sent_at: started };
        // removeOnComplete: true removes only this job (a bound such as { age: 60 } would trim
        // every completed memory-cleanup job older than that when a canary completes). A failed
        // canary keeps the queue's default retention until the removal below.
        const job = await guard('canary', () =>
          queues.cleanup.add(JOBS.canary, data, { attempts: 1, removeOnComplete: true }),
        );
        const jobId = job.id!;
        let completed = false;
        try {
          for (let delayMs = 5; ; delayMs = Math.min(100, delayMs * 2)) {
            const state = await guard('canary', () => queues.cleanup.getJobState(jobId));
            // Completed canaries are removed at once, so `unknown` means a worker completed it.
            if (state === 'completed' || state === 'unknown') {
              completed = true;
              return Date.now() - started;
            }
            if (state === 'failed') {
              const found = await guard('canary', () => queues.cleanup.getJob(jobId));
              throw new Error(
                `canary: ${QUEUES.cleanup} job ${jobId} failed: ${found?.failedReason ?? 'unknown reason'}`,
              );
            }
            const left = started + timeoutMs - Date.now();
            if (left <= 0) {
              throw new Error(
                `canary: no worker ran ${QUEUES.cleanup} job ${jobId} within ${timeoutMs} ms (state: ${state}); is a worker (memq start or memq work) running?`,
              );
            }
            await new Promise((resolve) => setTimeout(resolve, Math.min(delayMs, left)));
          }
        } finally {
          // A canary no worker took must not wait for one forever (memq serve alone), nor a
          // failed one stay. BullMQ refuses to remove a job a worker holds (returns 0): that one
          // completes within the processor's run and removeOnComplete takes it.
          if (!completed) {
            await guard('canary', () => queues.cleanup.remove(jobId)).catch(() => undefined);
          }
        }
      },

      forProject(other) {
        if (!NAME_PATTERN.test(other)) {
          throw new PayloadError(
            `project: expected 1-100 characters of letters, digits, _ or -, got ${JSON.stringify(other)}`,
          );
        }
        let scoped = views.get(other);
        if (!scoped) {
          scoped = bind(other, false);
          views.set(other, scoped);
        }
        return scoped;
      },

      async job(queueName, jobId) {
        const found = await guard('job', () => queues.byName(queueName).getJob(jobId));
        const data = found?.data as { ref?: { project?: unknown } } | undefined;
        if (!found || data?.ref?.project !== project) return undefined;
        const state = await found.getState();
        return {
          queue: queueName,
          id: jobId,
          name: found.name,
          state,
          attemptsMade: found.attemptsMade,
          progress: found.progress,
          createdAt: found.timestamp,
          ...(found.processedOn !== undefined ? { processedAt: found.processedOn } : {}),
          ...(found.finishedOn !== undefined ? { finishedAt: found.finishedOn } : {}),
          ...(state === 'completed' ? { result: found.returnvalue as unknown } : {}),
          ...(state === 'failed' ? { failedReason: found.failedReason } : {}),
        };
      },

      close() {
        if (!owner) return Promise.resolve(); // the root client owns the queues
        gate?.close();
        return ownsQueues ? queues.close() : Promise.resolve();
      },
    };
    return client;
  };
  const views = new Map<string, MemoryClient>();
  const root = bind(deps.project, true);
  views.set(deps.project, root);
  return root;
}
