/**
 * `/v1` routes: the eight memory operations of Compozy's memory engine on
 * `/v1/memories/:resource/:key/...`, the context read (`.../context`), session data
 * (`.../data`), the list of a resource's instances (`/v1/memories/:resource`) and
 * `GET /v1/jobs/:queue/:id` (docs/architecture.md, "HTTP API").
 * Every request acts for the project of its API key (`forProject`), never one named in the body.
 */
import { Router, type Request, type Response } from 'express';
import type { z } from 'zod';
import type { MemoryRegistry } from '../config/load-memories.js';
import { JobTimeoutError, PayloadError } from '../core/errors.js';
import { effectiveLimits } from '../flush/plan.js';
import { validateMemoryKey } from '../core/memory-key.js';
import { asChatMessages } from '../flush/summary.js';
import {
  MAX_MESSAGES_PER_APPEND,
  MAX_MESSAGES_PER_WRITE,
  formatIssues,
} from '../../queues/job-contracts.js';
import type { JobReceipt, MemoryClient, MemoryTarget } from '../../queues/memory-client.js';
import type { QueueName } from '../../queues/names.js';
import { MAX_DATA_ENTRIES, MAX_DATA_VALUE_BYTES, type MemoryStats } from '../store/memory-store.js';
import { sessionDataEntries } from '../store/session-data.js';
import {
  AppendBodySchema,
  ClearBodySchema,
  ContextQuerySchema,
  DataBodySchema,
  EmptyBodySchema,
  EmptyQuerySchema,
  FlushBodySchema,
  JobParamsSchema,
  JOB_ID_SHAPES,
  ListQuerySchema,
  ReadQuerySchema,
  StatsQuerySchema,
  WaitQuerySchema,
  WriteBodySchema,
  type WaitQuery,
} from './api-schemas.js';
import { grantOf, requireWrite } from './auth.js';
import { NotFoundError, PayloadTooLargeError } from './http-errors.js';
import { NO_TENANT_LIMITS, type HoldKind, type TenantLimits } from './rate-limit.js';

/** Instances per page of `GET /v1/memories/:resource` without `?limit`. */
export const DEFAULT_LIST_LIMIT = 20;

/** Dependencies of {@link createMemoryRoutes}. */
export interface MemoryRoutesDeps {
  /** The process's client; each request uses `client.forProject(<key's project>)`. */
  readonly client: MemoryClient;
  /** Declared resources (limits for the context-window figures). */
  readonly registry: MemoryRegistry;
  /** Largest message content, UTF-8 bytes (`MEMQ_MAX_MESSAGE_BYTES`); over it: 413. */
  readonly maxMessageBytes: number;
  /**
   * Message rates and concurrency caps, applied after validation and before the enqueue (the
   * request rate is the app's middleware). Default: none.
   */
  readonly limits?: TenantLimits;
  /**
   * True once the process is shutting down (`HttpAppOptions.draining`). A `?wait=true` call
   * (append, write, clear, delete, flush) that starts waiting then waits at most
   * {@link DRAIN_WAIT_MS}, then answers `504 WAIT_TIMEOUT` as any wait that ran out of time (the
   * job goes on; its status URL tells): the process's own workers have stopped taking jobs, so a
   * longer wait could outlast the shutdown deadline. Dry-run flushes, which answer only with
   * their result, wait as asked. Default: never.
   */
  readonly draining?: () => boolean;
}

/**
 * Longest a `?wait=true` call waits once the process is draining, ms: 1 000 (the job may still
 * be taken by another process's workers; the client is told `504` and the job's status URL).
 */
export const DRAIN_WAIT_MS = 1000;

/** Parses `value` with `schema`, or throws PayloadError naming `where` and each field. */
function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const parsed = schema.safeParse(value ?? {});
  if (!parsed.success) throw new PayloadError(formatIssues(where, parsed.error));
  return parsed.data;
}

/**
 * UTF-8 bytes of the text one submitted message carries, read defensively (the body is not
 * validated yet): a string content, the text of text parts, image URLs and tool-call arguments;
 * anything else counts 0 (the schema refuses it next).
 */
export function messageTextBytes(message: unknown): number {
  const m = message as { content?: unknown; tool_calls?: unknown } | null;
  const bytes = (value: unknown) => (typeof value === 'string' ? Buffer.byteLength(value) : 0);
  let total = 0;
  if (typeof m?.content === 'string') total += bytes(m.content);
  else if (Array.isArray(m?.content)) {
    for (const part of m.content as unknown[]) {
      const p = part as { text?: unknown; image_url?: { url?: unknown } | null } | null;
      total += bytes(p?.text) + bytes(p?.image_url?.url);
    }
  }
  if (Array.isArray(m?.tool_calls)) {
    for (const call of m.tool_calls as unknown[]) {
      total += bytes(
        (call as { function?: { arguments?: unknown } | null } | null)?.function?.arguments,
      );
    }
  }
  return total;
}

/**
 * 413 before validation: too many messages, or a message whose text ({@link messageTextBytes}:
 * content, text parts, image URLs, tool-call arguments, in all) is over the byte limit.
 */
function checkSizes(body: unknown, maxMessages: number, maxMessageBytes: number): void {
  const messages = (body as { messages?: unknown } | undefined)?.messages;
  if (!Array.isArray(messages)) return;
  if (messages.length > maxMessages) {
    throw new PayloadTooLargeError(
      `messages: expected at most ${maxMessages} messages per request, got ${messages.length}`,
      { limit_messages: maxMessages },
    );
  }
  messages.forEach((m: unknown, index) => {
    if (messageTextBytes(m) > maxMessageBytes) {
      throw new PayloadTooLargeError(
        `messages.${index}: expected at most ${maxMessageBytes} bytes of text in all (content, text parts, image URLs, tool-call arguments; MEMQ_MAX_MESSAGE_BYTES)`,
        { index, limit_bytes: maxMessageBytes },
      );
    }
  });
}

/**
 * 413 before validation: session data over its size limits (more than {@link MAX_DATA_ENTRIES}
 * entries, or a string value over {@link MAX_DATA_VALUE_BYTES} UTF-8 bytes), on the data as sent
 * (the privacy policy runs later and may lengthen a value). An entry is named by its position
 * (`data[3]`, as `sessionDataEntries` names it), never by its key (a key is data too).
 */
function checkDataSizes(body: unknown): void {
  const data = (body as { data?: unknown } | undefined)?.data;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return;
  const values = Object.values(data as Record<string, unknown>);
  if (values.length > MAX_DATA_ENTRIES) {
    throw new PayloadTooLargeError(
      `data: expected at most ${MAX_DATA_ENTRIES} entries, got ${values.length}`,
      { limit_entries: MAX_DATA_ENTRIES },
    );
  }
  values.forEach((value, index) => {
    if (typeof value === 'string' && Buffer.byteLength(value) > MAX_DATA_VALUE_BYTES) {
      throw new PayloadTooLargeError(
        `data[${index}]: the value: expected at most ${MAX_DATA_VALUE_BYTES} bytes (UTF-8), got ${Buffer.byteLength(value)}`,
        { index, limit_bytes: MAX_DATA_VALUE_BYTES },
      );
    }
  });
}

/** snake_case view of {@link MemoryStats} (the API's naming). */
function statsBody(stats: MemoryStats) {
  return {
    exists: stats.exists,
    message_count: stats.messageCount,
    token_count: stats.tokenCount,
    estimated_tokens: stats.estimatedTokens,
    uncounted_messages: stats.uncountedMessages,
    exact: stats.exact,
    counted_by: stats.countedBy,
    approximate_tokens: stats.approximateTokens,
    approximated_by: stats.approximatedBy,
    approximate_messages_by: stats.approximateMessagesBy,
    summary_approximated_by: stats.summaryApproximatedBy ?? null,
    summary_tokens: stats.summaryTokens,
    accepted_count: stats.acceptedCount,
    folded_count: stats.foldedCount,
    evicted_count: stats.evictedCount,
    watermark: stats.watermark ?? null,
    ttl_seconds: stats.ttlSeconds ?? null,
    locked: stats.locked,
    consistent: stats.consistent,
  };
}

/**
 * Creates the `/v1` router (mount behind {@link apiKeyAuth}). Every route validates its path,
 * query and body before it enqueues or changes anything, so a 4xx always means nothing happened.
 * Then, before the enqueue, the tenant limits: a concurrency slot for a waiting call, the
 * message rate (inside `append`/`write`, once the client has validated the messages), and the
 * client's backpressure.
 */
export function createMemoryRoutes(deps: MemoryRoutesDeps): Router {
  const router = Router();
  const limits = deps.limits ?? NO_TENANT_LIMITS;
  const clientOf = (res: Response) => deps.client.forProject(grantOf(res).project);
  /** Counts the messages of an append or write against the request's API key. */
  const messageRate = (res: Response) => ({
    beforeEnqueue: ({ messages }: { readonly messages: number }) =>
      limits.consumeMessages(grantOf(res), messages),
  });
  /**
   * Runs `handle` holding a concurrency slot of `kind` for the request's project (none when
   * `kind` is undefined), released once it settled.
   * @throws RateLimitedError (429) when the project holds its cap already; nothing ran.
   */
  const holding = async (
    res: Response,
    kind: HoldKind | undefined,
    handle: () => Promise<void>,
  ): Promise<void> => {
    const release = limits.hold(grantOf(res).project, kind);
    try {
      await handle();
    } finally {
      release();
    }
  };
  const waitKind = (query: WaitQuery): HoldKind | undefined =>
    query.wait === 'true' ? 'wait' : undefined;
  /**
   * The instance the path names. Resource: declared (404 otherwise). Key: a literal instance key
   * (400 otherwise; a path key is never rendered as a key template).
   */
  const targetOf = (req: Request, res: Response): MemoryTarget => {
    const { resource, key } = req.params as { resource: string; key: string };
    deps.registry.get(resource); // MemoryNotFoundError (404) for an undeclared resource
    res.locals.resource = resource; // for the request log line
    return { resource, key: validateMemoryKey(key, 'key') };
  };

  /**
   * Waits for `receipt` when `?wait=true` (or `force`); otherwise resolves undefined.
   * @throws JobTimeoutError (504 `WAIT_TIMEOUT`) naming the job's status URL when it did not
   *   finish within `timeout_ms`; JobFailedError (500 `JOB_FAILED`) when it failed.
   */
  const maybeWait = async (
    query: WaitQuery,
    client: MemoryClient,
    receipt: JobReceipt,
    force = false,
  ): Promise<{ result: unknown } | undefined> => {
    if (query.wait !== 'true' && !force) return undefined;
    const asked = query.timeout_ms ?? 30_000;
    const timeoutMs = !force && deps.draining?.() ? Math.min(asked, DRAIN_WAIT_MS) : asked;
    try {
      return { result: await client.waitFor<unknown>(receipt, { timeoutMs }) };
    } catch (error) {
      if (error instanceof JobTimeoutError) {
        throw new JobTimeoutError(
          `${receipt.queue} job ${receipt.jobId} did not finish within ${timeoutMs} ms; it goes on (GET /v1/jobs/${receipt.queue}/${receipt.jobId})`,
          {
            details: { queue: receipt.queue, job_id: receipt.jobId, timeout_ms: timeoutMs },
            cause: error,
          },
        );
      }
      throw error;
    }
  };
  const jobRef = (receipt: JobReceipt) => ({ queue: receipt.queue, id: receipt.jobId });
  const accepted = async (
    res: Response,
    query: WaitQuery,
    client: MemoryClient,
    receipt: JobReceipt,
    force = false,
  ) => {
    const waited = await maybeWait(query, client, receipt, force);
    res.status(waited ? 200 : 202).json({ job: jobRef(receipt), ...(waited ?? {}) });
  };

  router.post('/memories/:resource/:key/messages', requireWrite, async (req, res) => {
    const target = targetOf(req, res);
    const query = parse(WaitQuerySchema, req.query, 'query');
    checkSizes(req.body, MAX_MESSAGES_PER_APPEND, deps.maxMessageBytes);
    const body = parse(AppendBodySchema, req.body, 'body');
    const client = clientOf(res);
    await holding(res, waitKind(query), async () => {
      const receipt = await client.append(target, body.messages, messageRate(res));
      const answer = {
        job:
          receipt.jobId === undefined
            ? null
            : { queue: 'memory-append', id: receipt.jobId, entry: receipt.entry },
        message_ids: receipt.messageIds,
        dropped: receipt.dropped,
        not_persisted: receipt.notPersisted,
        redactions: receipt.redactions,
      };
      if (receipt.jobId === undefined) {
        res.status(200).json(answer);
        return;
      }
      const waited = await maybeWait(query, client, {
        queue: 'memory-append',
        jobId: receipt.jobId,
        ref: receipt.ref,
        ...(receipt.entry !== undefined ? { entry: receipt.entry } : {}),
      });
      res.status(waited ? 200 : 202).json({ ...answer, ...(waited ?? {}) });
    });
  });

  router.get('/memories/:resource/:key/messages', async (req, res) => {
    const target = targetOf(req, res);
    const query = parse(ReadQuerySchema, req.query, 'query');
    const window = await clientOf(res).read(target, {
      ...(query.offset !== undefined ? { offset: query.offset } : {}),
      ...(query.limit !== undefined ? { limit: query.limit } : {}),
    });
    const maxTokens = effectiveLimits(deps.registry.get(target.resource)).maxTokens ?? null;
    const used = window.tokenCount + window.estimatedTokens;
    res.json({
      resource: target.resource,
      key: target.key,
      messages:
        query.format === 'messages'
          ? asChatMessages(
              query.offset ? undefined : window.summary,
              window.messages.map((m) => m.message),
            )
          : window.messages.map((m) => ({
              message: m.message,
              tokens: m.tokens ?? null,
              approximated_by: m.approximatedBy ?? null,
            })),
      ...(query.format === 'window' ? { summary: window.summary ?? null } : {}),
      total: window.total,
      offset: window.offset,
      limit: window.limit,
      has_more: window.hasMore,
      token_count: window.tokenCount,
      estimated_tokens: window.estimatedTokens,
      exact: window.exact,
      counted_by: window.countedBy,
      approximate_tokens: window.approximateTokens,
      approximated_by: window.approximatedBy,
      summary_approximated_by: window.summaryApproximatedBy ?? null,
      context_window: {
        max_tokens: maxTokens,
        used_tokens: used,
        used_percent: maxTokens ? Math.round((used / maxTokens) * 10_000) / 100 : null,
      },
    });
  });

  router.put('/memories/:resource/:key/messages', requireWrite, async (req, res) => {
    const target = targetOf(req, res);
    const query = parse(WaitQuerySchema, req.query, 'query');
    checkSizes(req.body, MAX_MESSAGES_PER_WRITE, deps.maxMessageBytes);
    const body = parse(WriteBodySchema, req.body, 'body');
    const client = clientOf(res);
    await holding(res, waitKind(query), async () => {
      await accepted(
        res,
        query,
        client,
        await client.write(target, body.messages, messageRate(res)),
      );
    });
  });

  router.post('/memories/:resource/:key/flush', requireWrite, async (req, res) => {
    const target = targetOf(req, res);
    const query = parse(WaitQuerySchema, req.query, 'query');
    const body = parse(FlushBodySchema, req.body, 'body');
    const client = clientOf(res);
    // A dry run is never deduplicated and always waits: it takes a dry-run slot.
    await holding(res, body.dry_run ? 'dry_run' : waitKind(query), async () => {
      const receipt = await client.flush(target, {
        ...(body.strategy !== undefined ? { strategy: body.strategy } : {}),
        dryRun: body.dry_run,
      });
      await accepted(res, query, client, receipt, body.dry_run);
    });
  });

  router.post('/memories/:resource/:key/clear', requireWrite, async (req, res) => {
    const target = targetOf(req, res);
    const query = parse(WaitQuerySchema, req.query, 'query');
    parse(ClearBodySchema, req.body, 'body');
    const client = clientOf(res);
    await holding(res, waitKind(query), async () => {
      await accepted(res, query, client, await client.clear(target, { confirm: true }));
    });
  });

  router.delete('/memories/:resource/:key', requireWrite, async (req, res) => {
    const target = targetOf(req, res);
    const query = parse(WaitQuerySchema, req.query, 'query');
    parse(EmptyBodySchema, req.body, 'body');
    const client = clientOf(res);
    await holding(res, waitKind(query), async () => {
      await accepted(res, query, client, await client.delete(target));
    });
  });

  router.get('/memories/:resource/:key/health', async (req, res) => {
    const target = targetOf(req, res);
    parse(EmptyQuerySchema, req.query, 'query');
    const health = await clientOf(res).health(target);
    res.json({ ...statsBody(health), healthy: health.healthy });
  });

  router.get('/memories/:resource/:key/stats', async (req, res) => {
    const target = targetOf(req, res);
    const query = parse(StatsQuerySchema, req.query, 'query');
    const deep = query.deep === 'true';
    const stats = await clientOf(res).stats(target, { deep });
    const maxTokens = effectiveLimits(deps.registry.get(target.resource)).maxTokens;
    res.json({
      ...statsBody(stats),
      roles: deep ? (stats.roles ?? {}) : null,
      token_utilization: maxTokens
        ? Math.round(((stats.tokenCount + stats.estimatedTokens) / maxTokens) * 10_000) / 10_000
        : null,
    });
  });

  router.get('/memories/:resource/:key/context', async (req, res) => {
    const target = targetOf(req, res);
    const query = parse(ContextQuerySchema, req.query, 'query');
    const context = await clientOf(res).context(target, {
      ...(query.max_tokens !== undefined ? { maxTokens: query.max_tokens } : {}),
      ...(query.model !== undefined ? { model: query.model } : {}),
    });
    res.json({
      resource: target.resource,
      key: target.key,
      messages: context.messages,
      tokens: context.tokens,
      exact: context.exact,
      omitted: context.omitted,
      summary: context.summary,
      max_tokens: context.maxTokens,
      model: context.model,
      epoch: context.epoch ?? null,
      through_id: context.throughId ?? null,
    });
  });

  router.get('/memories/:resource', async (req, res) => {
    const { resource } = req.params;
    deps.registry.get(resource); // MemoryNotFoundError (404) for an undeclared resource
    res.locals.resource = resource;
    const query = parse(ListQuerySchema, req.query, 'query');
    const page = await clientOf(res).list(resource, {
      ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
      limit: query.limit ?? DEFAULT_LIST_LIMIT,
    });
    res.json({
      items: page.items.map((item) => ({
        key: item.key,
        message_count: item.messageCount,
        tokens: item.tokens,
        exact: item.exact,
        last_activity: new Date(item.lastActivityMs).toISOString(),
      })),
      next_cursor: page.nextCursor ?? null,
    });
  });

  router.get('/memories/:resource/:key/data', async (req, res) => {
    const target = targetOf(req, res);
    parse(EmptyQuerySchema, req.query, 'query');
    res.json({ data: await clientOf(res).getData(target) });
  });

  router.put('/memories/:resource/:key/data', requireWrite, async (req, res) => {
    const target = targetOf(req, res);
    parse(EmptyQuerySchema, req.query, 'query');
    checkDataSizes(req.body);
    const body = parse(DataBodySchema, req.body, 'body');
    // The entries, named by position (DataSchema checks only that `data` is an object).
    sessionDataEntries(body.data);
    const stored = await clientOf(res).putData(target, body.data);
    res.json({ data: stored.data, redactions: stored.redactions, dropped: stored.dropped });
  });

  router.get('/jobs/:queue/:id', async (req, res) => {
    const params = JobParamsSchema.safeParse(req.params);
    if (!params.success) {
      // Path parameters are echoed cut to 64 characters (a path can be kilobytes long).
      const clip = (text: string) => (text.length > 64 ? `${text.slice(0, 64)}...` : text);
      const queue = clip(req.params.queue);
      throw params.error.issues.some((issue) => issue.path[0] === 'queue')
        ? new NotFoundError(`no queue ${JSON.stringify(queue)}`, { queue })
        : new NotFoundError(
            `no ${queue} job ${JSON.stringify(clip(req.params.id))}: memq job ids are ${JOB_ID_SHAPES}`,
            { queue },
          );
    }
    parse(EmptyQuerySchema, req.query, 'query');
    const job = await clientOf(res).job(params.data.queue as QueueName, params.data.id);
    if (!job) {
      throw new NotFoundError(
        `no ${params.data.queue} job ${JSON.stringify(params.data.id)} in this project (unknown, another project's, or removed by retention)`,
        { queue: params.data.queue, id: params.data.id },
      );
    }
    res.json({
      queue: job.queue,
      id: job.id,
      name: job.name,
      state: job.state,
      attempts_made: job.attemptsMade,
      progress: job.progress,
      created_at: job.createdAt,
      ...(job.processedAt !== undefined ? { processed_at: job.processedAt } : {}),
      ...(job.finishedAt !== undefined ? { finished_at: job.finishedAt } : {}),
      ...(job.result !== undefined ? { result: job.result } : {}),
      ...(job.failedReason !== undefined ? { failed_reason: job.failedReason } : {}),
    });
  });

  return router;
}
