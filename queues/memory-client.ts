/**
 * The producer-side library services import (docs/architecture.md, "Surfaces and processes"): a
 * facade over the producer (queues/producer.ts), job lookups (queues/job-status.ts), the
 * readiness canary (queues/readiness.ts) and the store's reads, bound to one project.
 */
import { ConfigError, PayloadError, PolicyError } from '../src/core/errors.js';
import { contextWindowOf } from '../src/core/context-window.js';
import type { MemoryResource } from '../src/core/memory-resource.js';
import { NAME_PATTERN, type MemoryRef } from '../src/core/memory-key.js';
import type { Message } from '../src/core/message.js';
import { applyPrivacyToText, findRedactable } from '../src/core/privacy.js';
import type { MemoryRegistry } from '../src/config/load-memories.js';
import { effectiveLimits } from '../src/flush/plan.js';
import type { MemqMetrics } from '../src/metrics/metrics.js';
import type { RedisConnection } from '../src/redis/connection.js';
import { checkReplicaConfirmation, type ReplicaConfirmation } from '../src/redis/replicas.js';
import { readContext, type ContextResult, type Recounted } from '../src/store/context-read.js';
import {
  MAX_LIST_LIMIT,
  type InstanceList,
  type MemoryStats,
  type MemoryStore,
  type MemoryWindow,
} from '../src/store/memory-store.js';
import { MAX_STORED_DATA_VALUE_BYTES, sessionDataEntries } from '../src/store/session-data.js';
import {
  createTokenCounter,
  encodingForModel,
  localEncodingFor,
  messageParts,
  type EncodingName,
  type TokenCounter,
} from '../src/tokens/counter.js';
import {
  approximationOf,
  localApproximation,
  localCountApproximation,
} from '../src/tokens/remote-providers.js';
import type { AppendBatchLimits } from './append-batcher.js';
import type { AppendJobResult } from './job-contracts.js';
import { createJobStatus, type JobInfo, type JobReceipt } from './job-status.js';
import { createMemoryQueues, type MemoryQueues } from './memory-queues.js';
import { resolveTarget, type MemoryTarget } from './memory-target.js';
import type { QueueName } from './names.js';
import {
  createProducer,
  type AppendReceipt,
  type ProducerBackpressure,
  type ProjectProducer,
} from './producer.js';
import { runCanary } from './readiness.js';
import { createRedisGuard, DEFAULT_REDIS_TIMEOUT_MS } from './redis-guard.js';

export type { JobInfo, JobReceipt } from './job-status.js';
export type { MemoryTarget } from './memory-target.js';
export {
  appendJobId,
  type AppendReceipt,
  type PreparedAppend,
  type EnqueueOptions,
  type ProducerBackpressure,
} from './producer.js';
export { isConnectionFailure } from '../src/redis/connection-failures.js';

/**
 * Largest token budget of {@link MemoryClient.context}: 10,000,000, about 5x the largest context
 * window memq knows (Gemini 1.5 Pro's 2,097,152 tokens, `MODEL_CONTEXT_WINDOWS` in
 * src/core/context-window.ts).
 */
export const MAX_CONTEXT_TOKENS = 10_000_000;

/**
 * A model name {@link MemoryClient.context} accepts: 1-200 of letters, digits and `.`, `_`, `-`,
 * `:`, `/` (the shape of OpenAI's, Anthropic's and Google's model names, e.g. `gpt-4o`,
 * `claude-sonnet-4-5-20250929`, `gemini-1.5-pro`; 200 as `token_provider.model`).
 */
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9._:/-]{1,200}$/;

/** The encoding that stands in for a model without a published tokenizer (as `localEncodingFor`). */
const APPROXIMATING_ENCODING: EncodingName = 'o200k_base';

/** Options of {@link MemoryClient.context}. */
export interface ContextOptions {
  /**
   * Token budget, an integer in 1..{@link MAX_CONTEXT_TOKENS}. Default: the resource's token
   * limit (`effectiveLimits(resource).maxTokens`), at most the context window of `model` when
   * `model` is given; without a limit, the context window of the model counted for.
   */
  readonly maxTokens?: number;
  /**
   * Count with this model's tokenizer (see {@link MODEL_NAME_PATTERN}); default the resource's
   * `token_provider.model`, whose stored counts are used. Another model's counts are made at
   * read time: exact with its tiktoken encoding (`encodingForModel`), or approximated with
   * `o200k_base` (then `exact` is false) for a model whose context window memq knows but whose
   * tokenizer is not published (Claude, Gemini).
   */
  readonly model?: string;
}

/** What {@link MemoryClient.context} returns: `readContext`'s answer with the budget and model. */
export type ContextRead = ContextResult & {
  /** The budget applied. */
  readonly maxTokens: number;
  /** The model the counts are for. */
  readonly model: string;
};

/** What {@link MemoryClient.putData} stored. */
export interface DataPutResult {
  /** The data as stored (values after the privacy policy; dropped entries absent). */
  readonly data: Readonly<Record<string, string>>;
  /** Matches the policy replaced in the values. */
  readonly redactions: number;
  /** Entries not stored: their value matched a policy with action `drop`. */
  readonly dropped: number;
}

/**
 * The producer-side library: the enqueueing operations of {@link ProjectProducer} (append,
 * prepareAppend, write, flush, clear, delete), reads, job lookups and the readiness canary, all
 * acting for {@link MemoryClient.project}.
 */
export interface MemoryClient extends ProjectProducer {
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
   * What to send to the model now (`readContext`, src/store/context-read.ts): the rolling
   * summary and the newest messages that fit `maxTokens`, instructions always kept, an assistant
   * message with tool calls never split from its results.
   * @throws PayloadError for a `maxTokens` or `model` outside {@link ContextOptions}, a model
   *   whose tokenizer and context window memq does not know, or no budget at all (no
   *   `maxTokens`, no token limit on the resource, no known context window).
   * @throws MemoryNotFoundError for an undeclared resource.
   */
  context(target: MemoryTarget, options?: ContextOptions): Promise<ContextRead>;
  /**
   * One page of this project's instances of `resource`, most recently active first
   * (`MemoryStore.listInstances`): `limit` 1..{@link MAX_LIST_LIMIT} (default 20), `cursor` the
   * previous page's `nextCursor`.
   * @throws PayloadError for a `limit` or `cursor` out of range; MemoryNotFoundError for an
   *   undeclared resource.
   */
  list(resource: string, page?: { cursor?: string; limit?: number }): Promise<InstanceList>;
  /** The instance's session data (`MemoryStore.getData`); `{}` when none. */
  getData(target: MemoryTarget): Promise<Record<string, string>>;
  /**
   * Replaces the instance's session data (`MemoryStore.putData`) under the resource's TTL and
   * `expiration` (the data never outlives the instance's lifetime), after its privacy policy:
   * every value goes through it (`applyPrivacyToText` with the instance); with action `drop`
   * an entry whose value matches is not stored (counted in
   * `dropped`); a key the policy matches is refused (keys are names, not redacted, like
   * instance keys).
   * @throws PayloadError for data over the limits or a key the policy matches, naming the entry
   *   by position (`data[3]`, see {@link privateData}); nothing is stored.
   * @throws PolicyError when the policy cannot be applied (fail closed: nothing is stored).
   */
  putData(target: MemoryTarget, data: Readonly<Record<string, string>>): Promise<DataPutResult>;
  /**
   * Waits until a job has finished and returns its result. A bare job id means an append job
   * (its whole result); an append's receipt gives that append's own entry of the job (appends
   * batched into one job share its id).
   * @throws JobFailedError when the job failed (its reason), or the receipt's entry was not
   *   committed (the entry's reason) although the job's other entries were.
   * @throws JobTimeoutError when it did not finish within `timeoutMs` (default 30 000); the job
   *   goes on.
   * @throws PayloadError when no such job exists (unknown id, or already removed by retention).
   * @throws RedisUnavailableError when Redis does not answer (see `redisTimeoutMs`).
   */
  waitFor<R = AppendJobResult>(
    job: string | JobReceipt | AppendReceipt,
    options?: { timeoutMs?: number },
  ): Promise<R>;
  /**
   * Messages of append and write jobs not yet started, every project (the backlog ledger,
   * queues/backlog-ledger.ts; cached <= 250 ms with backpressure on).
   */
  backlog(): Promise<number>;
  /**
   * Readiness probe: enqueues a `canary` job on `memory-cleanup` and waits until a worker has
   * run it (`runCanary`, queues/readiness.ts). Resolves with the round trip in milliseconds; the
   * canary leaves nothing behind.
   * @throws JobFailedError when it failed.
   * @throws JobTimeoutError when no worker completed it within `timeoutMs` (default 2 000).
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
  /** Store used by `read`, `stats` and `health`. */
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
  /** Producer backpressure (see {@link ProducerBackpressure}); absent = none. */
  readonly backpressure?: ProducerBackpressure;
  /**
   * Group commit of appends (queues/append-batcher.ts): most messages and bytes per append job;
   * default `DEFAULT_APPEND_BATCH_MAX_MESSAGES` (256) and `DEFAULT_APPEND_BATCH_MAX_BYTES`
   * (1 MiB); `maxMessages` 1 = one job per append.
   */
  readonly appendBatch?: Partial<AppendBatchLimits>;
  /**
   * Replica confirmation of every append, write, clear and delete (`MEMQ_WAIT_REPLICAS`; see
   * `ProducerDeps.waitReplicas`); absent = off. The WAIT runs under the same deadline as every
   * Redis call of the client ({@link redisTimeoutMs}).
   * @throws ConfigError (from createMemoryClient) on a Redis Cluster connection.
   */
  readonly waitReplicas?: ReplicaConfirmation;
}

/**
 * The default token budget of a context read for `model`: the resource's token limit
 * (`effectiveLimits(resource).maxTokens`), but never more than the context window of a model the
 * caller asked for (`requested`, `contextWindowOf`): a budget the model cannot take is no budget.
 * Without a limit: the context window of `model`.
 * @param requested True when `model` is the caller's `model`, not the resource's own (whose
 *   limit the resource declares for it).
 * @throws PayloadError when neither a limit nor a context window is known.
 */
function defaultContextTokens(resource: MemoryResource, model: string, requested: boolean): number {
  const limit = effectiveLimits(resource).maxTokens;
  let window: number | undefined;
  try {
    window = contextWindowOf(model);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
  }
  if (limit !== undefined)
    return requested && window !== undefined ? Math.min(limit, window) : limit;
  if (window !== undefined) return window;
  throw new PayloadError(
    `max_tokens: required: memory ${JSON.stringify(resource.id)} has no token limit and memq knows no context window for ${JSON.stringify(model)}`,
    { details: { field: 'max_tokens' } },
  );
}

/** Token counters per encoding, created on first use (`createTokenCounter` shares the encoder). */
const counters = new Map<EncodingName, Promise<TokenCounter>>();

/** The shared counter of `encoding`, loaded on first use. */
function counterOf(encoding: EncodingName): Promise<TokenCounter> {
  let counter = counters.get(encoding);
  if (!counter) {
    counter = createTokenCounter(encoding);
    counters.set(encoding, counter);
  }
  return counter;
}

/** How a context read counts for one model: the encoding, and the approximation it is (if any). */
interface ModelCounting {
  /** The local encoding that counts. */
  readonly encoding: EncodingName;
  /** `approximationOf(encoding, model)` when the encoding only stands in for the model's tokenizer. */
  readonly approximatedBy: string | undefined;
}

/**
 * How to count for `model` in a context read. The resource's own model counts as its workers do
 * (`localEncodingFor`, `localApproximation`). Another model: its tiktoken encoding (exact), else,
 * for a model with a known context window (Claude, Gemini), `o200k_base` as an approximation
 * (as `localEncodingFor` does for providers without a published tokenizer). Synchronous; loads
 * nothing.
 * @throws PayloadError for any other model.
 */
function countingFor(resource: MemoryResource, model: string): ModelCounting {
  const { provider } = resource.tokenProvider;
  if (model === resource.tokenProvider.model) {
    return {
      encoding: localEncodingFor(provider, model),
      approximatedBy: localApproximation(provider, model),
    };
  }
  try {
    return { encoding: encodingForModel(model), approximatedBy: undefined };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
  }
  try {
    contextWindowOf(model);
  } catch {
    throw new PayloadError(
      `model: expected a model with a known tiktoken encoding (e.g. gpt-4o, gpt-4.1, o3) or context window (claude-*, gemini-*), got ${JSON.stringify(model)}`,
      { details: { field: 'model' } },
    );
  }
  return {
    encoding: APPROXIMATING_ENCODING,
    approximatedBy: approximationOf(APPROXIMATING_ENCODING, model),
  };
}

/**
 * `readContext`'s `recount` for `model`: each message counted with the counting's encoding
 * (`countMessageAsync`), qualified as a worker qualifies a local count (`localCountApproximation`:
 * the approximation, and the parts no published rule gives, such as tool calls).
 */
function recountFor(
  counting: ModelCounting,
  model: string,
): (messages: readonly Message[]) => Promise<Recounted[]> {
  return async (messages) => {
    const counter = await counterOf(counting.encoding);
    const counts: Recounted[] = [];
    for (const message of messages) {
      const tokens = await counter.countMessageAsync(message);
      const approximatedBy = localCountApproximation(
        messageParts(message),
        counting.encoding,
        model,
        counting.approximatedBy,
      );
      counts.push({ tokens, ...(approximatedBy !== undefined ? { approximatedBy } : {}) });
    }
    return counts;
  };
}

/** `readContext`'s `summaryRecount`: the summary's system message counted with the counting's encoding. */
function summaryRecountFor(counting: ModelCounting): (text: string) => Promise<Recounted> {
  return async (text) => {
    const counter = await counterOf(counting.encoding);
    const tokens = await counter.countMessageAsync({ role: 'system', content: text });
    return {
      tokens,
      ...(counting.approximatedBy !== undefined ? { approximatedBy: counting.approximatedBy } : {}),
    };
  };
}

/**
 * `data` checked against the session-data limits and passed through `resource`'s privacy policy
 * (docs/decisions.md, "Privacy"): each value through `applyPrivacyToText` with the
 * instance (`ref`, for `privacy_scope: session` pseudonyms); with action `drop`, an entry whose
 * value matches is left out. Keys are not redacted (a redacted key would no longer be the
 * caller's name, and two could collide): a key the policy matches is refused, as an instance key
 * is (`resolveTarget`). The limits apply to `data` as sent, before the policy: a value within
 * them whose replacements make it longer is stored longer, up to
 * {@link MAX_STORED_DATA_VALUE_BYTES}. Every error names an entry by its position in `data`'s own
 * key order, from 0 (`data[3]`, `sessionDataEntries`), never by its key or value. Pure; no I/O.
 * @throws PayloadError for data that is not an object of string values within the limits
 *   (`sessionDataEntries`, src/store/session-data.ts: 64 entries, keys 1..128 characters, values
 *   at most 4096 UTF-8 bytes), a key the policy matches, or a value over
 *   {@link MAX_STORED_DATA_VALUE_BYTES} after the policy (a policy whose replacements are over
 *   16 times as long as the text they replace).
 * @throws PolicyError when the policy cannot be applied (fail closed).
 */
export function privateData(
  resource: MemoryResource,
  ref: MemoryRef,
  data: Readonly<Record<string, string>>,
): DataPutResult {
  const entries = sessionDataEntries(data);
  const policy = resource.privacyPolicy;
  const drop = policy?.action === 'drop';
  const kept: Array<[string, string]> = [];
  let redactions = 0;
  let dropped = 0;
  entries.forEach(([key, value], index) => {
    const pattern = findRedactable(policy, key);
    if (pattern !== undefined) {
      throw new PayloadError(
        `data[${index}]: the key contains text that memory ${JSON.stringify(resource.id)}'s privacy policy redacts (rule ${pattern}); keys are stored as given: use a name, not data`,
        { details: { field: 'data', index, pattern } },
      );
    }
    if (drop) {
      if (findRedactable(policy, value) !== undefined) dropped += 1;
      else kept.push([key, value]);
      return;
    }
    const redacted = applyPrivacyToText(policy, value, ref);
    const bytes = Buffer.byteLength(redacted.text, 'utf8');
    if (bytes > MAX_STORED_DATA_VALUE_BYTES) {
      throw new PayloadError(
        `data[${index}]: the value: ${bytes} UTF-8 bytes after memory ${JSON.stringify(resource.id)}'s privacy policy, over the ${MAX_STORED_DATA_VALUE_BYTES} a stored value may take (its replacements are much longer than the text they replace); send a shorter value`,
        { details: { field: 'data', index } },
      );
    }
    redactions += redacted.redactions;
    kept.push([key, redacted.text]);
  });
  // fromEntries defines own properties: a `__proto__` entry stays an entry.
  return { data: Object.fromEntries(kept), redactions, dropped };
}

/** Creates a {@link MemoryClient} acting for `deps.project`. */
export function createMemoryClient(deps: MemoryClientDeps): MemoryClient {
  checkReplicaConfirmation(deps.connection, deps.waitReplicas);
  const ownsQueues = deps.queues === undefined;
  const queues = deps.queues ?? createMemoryQueues(deps.connection, deps.queuePrefix);
  const guard = createRedisGuard(deps.connection, deps.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS);
  const producer = createProducer({
    connection: deps.connection,
    queuePrefix: deps.queuePrefix,
    registry: deps.registry,
    queues,
    guard,
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
    ...(deps.backpressure ? { backpressure: deps.backpressure } : {}),
    ...(deps.appendBatch ? { appendBatch: deps.appendBatch } : {}),
    ...(deps.waitReplicas ? { waitReplicas: deps.waitReplicas } : {}),
  });
  const jobs = createJobStatus(queues, guard);
  const views = new Map<string, MemoryClient>();

  const bind = (project: string, owner: boolean): MemoryClient => {
    const refOf = (target: MemoryTarget) => resolveTarget(deps.registry, project, target);
    const client: MemoryClient = {
      ...producer.forProject(project),
      project,
      read(target, page) {
        const resource = deps.registry.get(target.resource);
        return deps.store.read(refOf(target), {
          ...page,
          recordAccess: resource.flushing.trackAccess === true,
        });
      },
      stats: (target, options) => deps.store.stats(refOf(target), options),
      health: (target) => deps.store.health(refOf(target)),
      async context(target, options = {}) {
        const ref = refOf(target);
        const resource = deps.registry.get(target.resource);
        const { maxTokens, model } = options;
        if (
          maxTokens !== undefined &&
          !(Number.isSafeInteger(maxTokens) && maxTokens >= 1 && maxTokens <= MAX_CONTEXT_TOKENS)
        ) {
          throw new PayloadError(
            `max_tokens: expected an integer in 1-${MAX_CONTEXT_TOKENS}, got ${String(maxTokens)}`,
            { details: { field: 'max_tokens' } },
          );
        }
        if (model !== undefined && !(typeof model === 'string' && MODEL_NAME_PATTERN.test(model))) {
          throw new PayloadError(
            'model: expected a model name: 1-200 of letters, digits and . _ - : /',
            { details: { field: 'model' } },
          );
        }
        const countFor = model ?? resource.tokenProvider.model;
        const counting = countingFor(resource, countFor);
        const budget = maxTokens ?? defaultContextTokens(resource, countFor, model !== undefined);
        // The resource's own model: the stored message counts; another: every message recounted.
        // The summary is always counted as sent (its stored count leaves the heading out).
        const read = await readContext(deps.store, ref, {
          maxTokens: budget,
          ...(countFor !== resource.tokenProvider.model
            ? { recount: recountFor(counting, countFor) }
            : {}),
          summaryRecount: summaryRecountFor(counting),
        });
        return { ...read, maxTokens: budget, model: countFor };
      },
      async list(resource, page = {}) {
        deps.registry.get(resource);
        const limit = page.limit ?? 20;
        if (!(Number.isSafeInteger(limit) && limit >= 1 && limit <= MAX_LIST_LIMIT)) {
          throw new PayloadError(
            `limit: expected an integer in 1-${MAX_LIST_LIMIT}, got ${String(limit)}`,
            { details: { field: 'limit' } },
          );
        }
        return deps.store.listInstances(project, resource, {
          ...(page.cursor !== undefined ? { cursor: page.cursor } : {}),
          limit,
        });
      },
      getData: async (target) => deps.store.getData(refOf(target)),
      async putData(target, data) {
        const ref = refOf(target);
        const resource = deps.registry.get(target.resource);
        let prepared: DataPutResult;
        try {
          prepared = privateData(resource, ref, data);
        } catch (error) {
          if (error instanceof PolicyError)
            deps.metrics?.privacyFailures.inc({ resource: ref.resource });
          throw error;
        }
        await deps.store.putData(ref, prepared.data, resource.persistence.ttlSeconds, {
          expirationSeconds: resource.expirationSeconds ?? 0,
        });
        deps.metrics?.redactions.inc({ resource: ref.resource }, prepared.redactions);
        return prepared;
      },
      waitFor: (job, options) => jobs.waitFor(job, options),
      job: (queue, jobId) => jobs.job(project, queue, jobId),
      backlog: () => producer.backlog(),
      canary: (options) => runCanary(queues, guard, options),
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
      close() {
        if (!owner) return Promise.resolve(); // the root client owns the queues
        producer.close();
        return ownsQueues ? queues.close() : Promise.resolve();
      },
    };
    return client;
  };
  const root = bind(deps.project, true);
  views.set(deps.project, root);
  return root;
}
