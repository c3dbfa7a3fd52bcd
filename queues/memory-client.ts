import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { monotonicFactory } from 'ulid';
import { z } from 'zod';
import { PayloadError } from '../src/core/errors.js';
import { MessageInputSchema, type Message, type MessageInput } from '../src/core/message.js';
import { resolveMemoryKey } from '../src/core/key-template.js';
import { applyPrivacy, findRedactable } from '../src/core/privacy.js';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import type { MemoryRef } from '../src/redis/keys.js';
import type { MemoryStore, MemoryWindow } from '../src/store/memory-store.js';
import {
  AppendJobSchema,
  MAX_MESSAGES_PER_APPEND,
  formatIssues,
  type AppendJob,
  type AppendJobResult,
} from './job-contracts.js';
import { queueOptions } from './job-options.js';
import { JOBS, QUEUES } from './names.js';

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
  /** The instance the messages go to. */
  readonly ref: MemoryRef;
}

/** The producer-side library services import (DESIGN.md section 1). */
export interface MemoryClient {
  /**
   * Validates `messages` (1..100), resolves the resource, assigns monotonic ULIDs and
   * `created_at` where absent, applies the resource's privacy policy (drops non-persistable
   * roles, redacts patterns: raw content never reaches Redis, job data included) and enqueues
   * one append job. Resolves when the job is in Redis.
   * @throws PayloadError for invalid input (nothing is enqueued).
   * @throws MemoryNotFoundError for an unknown resource.
   */
  append(target: MemoryTarget, messages: readonly MessageInput[]): Promise<AppendReceipt>;
  /** Reads one page of an instance (see `MemoryStore.read`). */
  read(target: MemoryTarget, page?: { offset?: number; limit?: number }): Promise<MemoryWindow>;
  /**
   * Waits until append job `jobId` has committed and returns its result.
   * @throws Error when the job failed (its reason) or did not finish within `timeoutMs`
   *   (default 30 000).
   */
  waitFor(jobId: string, options?: { timeoutMs?: number }): Promise<AppendJobResult>;
  /** Backlog of the append queue: waiting + delayed + prioritized jobs. */
  backlog(): Promise<number>;
  /** Closes the client's queue (not the Redis connection). Idempotent. */
  close(): Promise<void>;
}

/** Dependencies of {@link createMemoryClient}. */
export interface MemoryClientDeps {
  /** Producer connection (fail-fast); owned by the caller. */
  readonly connection: Redis;
  /** BullMQ prefix, e.g. `{memq}`. */
  readonly queuePrefix: string;
  /** Declared memory resources. */
  readonly registry: MemoryRegistry;
  /** Tenant all calls of this client act for. */
  readonly project: string;
  /** Store used by `read`. */
  readonly store: MemoryStore;
  /** Clock for `created_at`, ms since epoch; default `Date.now`. */
  readonly now?: () => number;
}

const MessagesSchema = z.array(MessageInputSchema).min(1).max(MAX_MESSAGES_PER_APPEND);

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

/** Creates a {@link MemoryClient}. */
export function createMemoryClient(deps: MemoryClientDeps): MemoryClient {
  const now = deps.now ?? Date.now;
  const nextId = monotonicFactory();
  const appendQueue = new Queue<AppendJob, AppendJobResult>(QUEUES.append, {
    connection: deps.connection,
    ...queueOptions(deps.queuePrefix),
  });
  let closed = false;

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
    return { project: deps.project, resource: target.resource, key };
  };

  return {
    async append(target, input) {
      const resource = deps.registry.get(target.resource);
      const ref = refOf(target);
      const parsed = MessagesSchema.safeParse(input);
      if (!parsed.success) throw new PayloadError(formatIssues('messages', parsed.error));
      const at = now();
      const createdAt = new Date(at).toISOString();
      const identified: Message[] = parsed.data
        .map((m) => ({ ...m, id: m.id ?? nextId(at), created_at: m.created_at ?? createdAt }))
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const {
        kept: messages,
        dropped,
        redactions,
      } = applyPrivacy(resource.privacyPolicy, identified);
      if (messages.length === 0)
        return {
          jobId: undefined,
          messageIds: [],
          dropped,
          redactions,
          ref,
        };
      const job: AppendJob = { ref, messages };
      const checked = AppendJobSchema.safeParse(job);
      if (!checked.success) throw new PayloadError(formatIssues('messages', checked.error));
      const jobId = appendJobId(messages.map((m) => m.id));
      await appendQueue.add(JOBS.append, job, { jobId });
      return {
        jobId,
        messageIds: messages.map((m) => m.id),
        dropped,
        redactions,
        ref,
      };
    },

    read(target, page) {
      return deps.store.read(refOf(target), page);
    },

    async waitFor(jobId, options = {}) {
      const timeoutMs = options.timeoutMs ?? 30_000;
      const deadline = Date.now() + timeoutMs;
      // Polls the job's state (5 ms doubling to 100 ms) rather than listening to QueueEvents: a
      // listener that starts reading the event stream after the job finished misses the event.
      for (let delayMs = 5; ; delayMs = Math.min(100, delayMs * 2)) {
        const state = await appendQueue.getJobState(jobId);
        if (state === 'unknown') {
          throw new PayloadError(
            `waitFor: no append job with id ${JSON.stringify(jobId)} (unknown id, or removed after completion by removeOnComplete)`,
          );
        }
        if (state === 'completed' || state === 'failed') {
          const job = await appendQueue.getJob(jobId);
          if (state === 'completed' && job) return job.returnvalue;
          throw new Error(
            `append job ${jobId} failed: ${job?.failedReason ?? 'removed after failing'}`,
          );
        }
        if (Date.now() >= deadline) {
          throw new Error(
            `waitFor: append job ${jobId} did not finish within ${timeoutMs} ms (state: ${state})`,
          );
        }
        await new Promise((resolve) =>
          setTimeout(resolve, Math.min(delayMs, deadline - Date.now())),
        );
      }
    },

    async backlog() {
      const counts = await appendQueue.getJobCounts('waiting', 'delayed', 'prioritized');
      return (counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0);
    },

    async close() {
      if (closed) return;
      closed = true;
      await appendQueue.close();
    },
  };
}
