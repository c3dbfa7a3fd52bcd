/**
 * Bull Board at `/admin/queues` (docs/architecture.md, "HTTP API"): all four queues, behind its own basic-auth
 * credentials, job data shown through the resource's privacy policy, and only the routes memq
 * allows (reads, and retry/promote/clean/pause/resume unless read-only) reachable.
 */
import { createBullBoard } from '@bull-board/api';
import { STATUSES } from '@bull-board/api/constants/statuses';
import type { BeforeHookResult, HookContext } from '@bull-board/api/dist/types.js';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Router, type RequestHandler } from 'express';
import type { MemoryRegistry } from '../config/load-memories.js';
import { MemoryRefSchema } from '../core/memory-key.js';
import { MESSAGE_ID_PATTERN, ROLES } from '../core/message.js';
import { applyPrivacy } from '../core/privacy.js';
import { ErasedJobSchema } from '../../queues/job-contracts.js';
import type { MemoryQueues } from '../../queues/memory-queues.js';
import { QUEUES } from '../../queues/names.js';
import { basicAuth } from './auth.js';
import { ForbiddenError } from './http-errors.js';

/** Where Bull Board is mounted. */
export const BOARD_PATH = '/admin/queues';

/** Options of {@link createBoardRouter}. */
export interface BoardOptions {
  /** The queues to show (all four). */
  readonly queues: MemoryQueues;
  /** Declared resources: their privacy policies are applied to the job data shown. */
  readonly registry: MemoryRegistry;
  /** Basic-auth user (`MEMQ_BOARD_USER`). */
  readonly user: string;
  /** Basic-auth password (`MEMQ_BOARD_PASSWORD`). */
  readonly password: string;
  /**
   * Hide retry, remove, clean, pause and promote, and refuse their routes (403)
   * (`MEMQ_BOARD_READ_ONLY`). Default false.
   */
  readonly readOnly?: boolean;
}

/** Placeholder shown instead of a message the policy would not store, or cannot vouch for. */
const HIDDEN = '[hidden by memq: not stored under the privacy policy]';

/** True for a JSON object (not an array, not a class instance). */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A message shown hidden: its `id` and `role` when they have their format (a ULID, one of
 * `ROLES`: neither can carry free text), and `content` {@link HIDDEN}; every other field (name,
 * tool calls, metadata, ...) is left out, since the policy could not vouch for it.
 */
function hiddenMessage(message: unknown): Record<string, unknown> {
  const m = isPlainObject(message) ? message : {};
  return {
    ...(typeof m.id === 'string' && MESSAGE_ID_PATTERN.test(m.id) ? { id: m.id } : {}),
    ...(typeof m.role === 'string' && (ROLES as readonly string[]).includes(m.role)
      ? { role: m.role }
      : {}),
    content: HIDDEN,
  };
}

/**
 * One instance's messages as Bull Board shows them: `job` (`{ ref, messages, ... }`: a write
 * job, an append job of before group commit, or an entry of an append job) with every message
 * passed through its resource's privacy policy (see {@link boardJobData}); anything without a
 * `messages` array is returned as it is.
 */
function boardMessages(registry: MemoryRegistry, data: unknown): unknown {
  const job = data as { ref?: { resource?: unknown }; messages?: unknown } | null;
  if (!job || !Array.isArray(job.messages)) return data;
  const resourceId = typeof job.ref?.resource === 'string' ? job.ref.resource : undefined;
  const resource = registry.list().find((r) => r.id === resourceId);
  const policy = resource?.privacyPolicy;
  // the instance, for pseudonyms scoped to it (privacy_scope: session); a job whose ref does not
  // parse is shown with its messages hidden when its policy needs the instance
  const ref = MemoryRefSchema.safeParse(job.ref).data;
  return {
    ...job,
    messages: job.messages.map((message: unknown) => {
      if (resource === undefined || !isPlainObject(message)) return hiddenMessage(message);
      try {
        const { kept } = applyPrivacy(
          policy,
          [message as Parameters<typeof applyPrivacy>[1][0]],
          ref,
        );
        return kept[0] ?? hiddenMessage(message);
      } catch {
        return hiddenMessage(message);
      }
    }),
  };
}

/**
 * An entry of an append job as Bull Board shows it. An entry of messages (`{ ref, messages }`)
 * shows its messages through its own resource's policy and its own `ref` (see
 * {@link boardMessages}); an erased entry (`ErasedJobSchema`, its ids ULIDs: no content) as it
 * is. Anything else the job contract does not allow in an entry (another field, a `ref` that is
 * not a memory instance, ids that are not ULIDs, another shape) cannot be vouched for: its
 * value is shown as {@link HIDDEN}, keeping only the field names.
 */
function boardEntry(registry: MemoryRegistry, entry: unknown): unknown {
  if (!isPlainObject(entry)) return HIDDEN;
  const erased = ErasedJobSchema.safeParse(entry);
  if (erased.success && erased.data.erased_ids.every((id) => MESSAGE_ID_PATTERN.test(id))) {
    return entry;
  }
  const ref = MemoryRefSchema.safeParse(entry.ref);
  const messages = Array.isArray(entry.messages);
  const shown = messages ? (boardMessages(registry, entry) as Record<string, unknown>) : entry;
  return Object.fromEntries(
    Object.entries(shown).map(([field, value]) =>
      (field === 'ref' && ref.success) || (field === 'messages' && messages)
        ? [field, value]
        : [field, HIDDEN],
    ),
  );
}

/**
 * Job data as Bull Board shows it: every message of an append or write job passed through its
 * resource's privacy policy again (`applyPrivacy`: every string of the message at any depth, so
 * string content, text parts, image URLs, tool-call arguments, names and metadata alike), as a
 * job a producer enqueued around `MemoryClient` must not show raw text either. An append job of
 * several appends (`{ entries: [...] }`, group commit) shows each entry through its own
 * resource's policy and instance ({@link boardEntry}; erased entries as they are; a field beside
 * `entries` as {@link HIDDEN}). A message of
 * an unknown resource, one that is not a JSON object, one the policy would not store (a
 * non-persistable role, action `drop`) or one whose policy fails is shown as
 * {@link hiddenMessage}: its id and role only.
 */
export function boardJobData(registry: MemoryRegistry, data: unknown): unknown {
  if (isPlainObject(data) && Array.isArray(data.entries)) {
    // An append job is `{ entries }` only: another field is not the producer's, so not shown.
    const others = Object.keys(data).filter((field) => field !== 'entries');
    return {
      ...Object.fromEntries(others.map((field) => [field, HIDDEN])),
      entries: data.entries.map((entry: unknown) => boardEntry(registry, entry)),
    };
  }
  return boardMessages(registry, data);
}

/**
 * Job states Bull Board puts in `retry/:queueStatus` and `clean/:queueStatus` (`STATUSES` of
 * `@bull-board/api/constants/statuses`, 9.10.1). Only these values pass, so an allowed bulk action's
 * path can never also be read as another route's `:jobId/<action>`.
 */
const QUEUE_STATUSES: ReadonlySet<string> = new Set(Object.values(STATUSES));

/**
 * The paths memq lets through with GET (and HEAD), deny by default: path patterns relative to
 * {@link BOARD_PATH}, as `@bull-board/api` 9.10.1 registers them (`dist/routes.js`; the express
 * adapter adds `/static/*`). A `:param` matches one non-empty segment; `:queueStatus` only a
 * {@link QUEUE_STATUSES} value; `*` any rest. Everything bull-board registers beyond these is
 * refused: adding or duplicating a job (`add`), editing its data, delay or priority, running or
 * editing a job scheduler (which creates jobs from a template), removing a flow's children, queue
 * settings (`concurrency`, `rate-limit`), `empty` and `obliterate`.
 */
export const BOARD_READ_ROUTES: readonly string[] = [
  // The UI's pages (one HTML entry point) and its assets.
  '/',
  '/metrics-history',
  '/job-schedulers',
  '/queue/:queueName',
  '/queue/:queueName/:jobId',
  '/static/*',
  // The API's GET routes: all read (job data through the privacy formatter).
  '/api/redis/stats',
  '/api/queues',
  '/api/job-schedulers',
  '/api/queues/:queueName/metrics',
  '/api/queues/:queueName/default-job-options',
  '/api/queues/:queueName/workers',
  '/api/queues/:queueName/rate-limit',
  '/api/queues/:queueName/job-data-schema',
  '/api/queues/:queueName/:jobId/logs',
  '/api/queues/:queueName/:jobId/flow',
  '/api/queues/:queueName/:jobId',
];

/**
 * The job actions memq allows on a writable board (all `PUT`; none when `readOnly`): retry,
 * promote and remove (`clean`) one job or every job in a state, pause and resume one queue or all.
 * None of them writes job data (a retried append is idempotent by message id).
 */
export const BOARD_ACTION_ROUTES: readonly string[] = [
  '/api/queues/pause',
  '/api/queues/resume',
  '/api/queues/:queueName/retry/:queueStatus',
  '/api/queues/:queueName/promote',
  '/api/queues/:queueName/clean/:queueStatus',
  '/api/queues/:queueName/pause',
  '/api/queues/:queueName/resume',
  '/api/queues/:queueName/:jobId/retry',
  '/api/queues/:queueName/:jobId/clean',
  '/api/queues/:queueName/:jobId/promote',
];

/**
 * Whether `segments` (a decoded path, split on `/`) has the shape of `pattern`. Literal segments
 * compare case-insensitively, as express routes them.
 */
function matchesPattern(pattern: string, segments: readonly string[]): boolean {
  const parts = pattern.split('/');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === '*') return i < segments.length;
    const segment = segments[i];
    if (segment === undefined) return false;
    if (part === ':queueStatus') {
      if (!QUEUE_STATUSES.has(segment)) return false;
      // Retrying every completed job would re-run completed clears, deletes and writes (a
      // clear would then erase appends accepted after it): only failed jobs are retried in bulk.
      if (parts[i - 1] === 'retry' && segment.toLowerCase() !== 'failed') return false;
    } else if (part.startsWith(':')) {
      if (segment === '') return false;
    } else if (part.toLowerCase() !== segment.toLowerCase()) {
      return false;
    }
  }
  return parts.length === segments.length;
}

/**
 * The board path as the routes see it: split on `/` before percent-decoding (so `%2F` stays inside
 * its segment), each segment decoded, trailing slashes dropped.
 * @returns The segments (the first is the empty string before the leading `/`), or undefined when
 *   a segment is not valid percent-encoding.
 */
export function boardPathSegments(path: string): string[] | undefined {
  const segments = path.split('/');
  while (segments.length > 2 && segments[segments.length - 1] === '') segments.pop();
  try {
    return segments.map((s) => decodeURIComponent(s));
  } catch {
    return undefined;
  }
}

/**
 * Whether memq lets `method` on `path` (relative to {@link BOARD_PATH}) through: GET and HEAD on a
 * {@link BOARD_READ_ROUTES} path, PUT on a {@link BOARD_ACTION_ROUTES} path unless `readOnly`.
 * Anything else (other methods, other paths, malformed encoding) is refused.
 */
export function boardAllows(method: string, path: string, readOnly: boolean): boolean {
  const segments = boardPathSegments(path);
  if (!segments) return false;
  const verb = method.toUpperCase();
  const routes =
    verb === 'GET' || verb === 'HEAD'
      ? BOARD_READ_ROUTES
      : verb === 'PUT' && !readOnly
        ? BOARD_ACTION_ROUTES
        : [];
  return routes.some((pattern) => matchesPattern(pattern, segments));
}

/** Why a board request was refused, and what the board allows. */
function refusal(method: string, readOnly: boolean): ForbiddenError {
  return new ForbiddenError(
    `Bull Board: ${method} on this path is not allowed; memq jobs carry redacted data and are ` +
      'created or edited only through MemoryClient or the /v1 API. The board allows reading ' +
      (readOnly
        ? 'queues and jobs only (MEMQ_BOARD_READ_ONLY=true)'
        : 'queues and jobs, and retry, promote, clean (remove), pause and resume'),
  );
}

/**
 * The board's write guard, in front of Bull Board's express routes: deny by default (see
 * {@link boardAllows}).
 * @throws ForbiddenError (403) for a request outside the allowlist.
 */
function boardGuard(readOnly: boolean): RequestHandler {
  return (req, _res, next) => {
    if (!boardAllows(req.method, req.path, readOnly)) throw refusal(req.method, readOnly);
    next();
  };
}

/**
 * Second check, inside Bull Board (`handlerHooks.before`): it sees the route pattern bull-board
 * actually matched (`put /api/queues/:queueName/:jobId/retry`), so no spelling of a path can reach
 * a handler outside the allowlist even if express and {@link boardAllows} ever read a path
 * differently.
 */
export function boardRouteHook(
  readOnly: boolean,
): (context: Pick<HookContext, 'method' | 'route'>) => BeforeHookResult {
  const allowed = new Set([
    ...BOARD_READ_ROUTES.map((r) => `get ${r}`),
    ...(readOnly ? [] : BOARD_ACTION_ROUTES.map((r) => `put ${r}`)),
  ]);
  return ({ method, route }) => {
    if (allowed.has(`${method.toLowerCase()} ${route}`)) return undefined;
    return {
      allow: false,
      status: 403,
      message: refusal(method.toUpperCase(), readOnly).message,
    };
  };
}

/** Creates the router to mount at {@link BOARD_PATH}. */
export function createBoardRouter(options: BoardOptions): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  const readOnly = options.readOnly ?? false;
  const adapters = Object.values(QUEUES).map((name) => {
    const adapter = new BullMQAdapter(options.queues.byName(name), {
      readOnlyMode: readOnly,
      allowRetries: !readOnly,
    });
    adapter.setFormatter('data', (data: unknown) => boardJobData(options.registry, data));
    return adapter;
  });
  createBullBoard({
    queues: adapters,
    serverAdapter,
    options: {
      uiConfig: { boardTitle: 'memq' },
      handlerHooks: { before: boardRouteHook(readOnly) },
    },
  });
  const router = Router();
  router.use(basicAuth(options.user, options.password, 'memq board'));
  router.use(boardGuard(readOnly));
  router.use(serverAdapter.getRouter() as RequestHandler);
  return router;
}
