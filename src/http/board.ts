/**
 * Bull Board at `/admin/queues` (DESIGN.md section 9): all four queues, behind its own basic-auth
 * credentials, job data shown through the resource's privacy policy.
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Router, type RequestHandler } from 'express';
import type { MemoryRegistry } from '../config/load-memories.js';
import { applyPrivacy } from '../core/privacy.js';
import type { MemoryQueues } from '../../queues/memory-queues.js';
import { QUEUES } from '../../queues/names.js';
import { basicAuth } from './auth.js';

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
  /** Hide retry, remove, clean, pause and promote (`MEMQ_BOARD_READ_ONLY`). Default false. */
  readonly readOnly?: boolean;
}

/** Placeholder shown instead of a message the policy would not store, or cannot vouch for. */
const HIDDEN = '[hidden by memq: not stored under the privacy policy]';

/**
 * Job data as Bull Board shows it: every message of an append or write job passed through its
 * resource's privacy policy again (a job a producer enqueued around `MemoryClient` must not show
 * raw content either); messages of an unknown resource, or whose policy fails, are hidden.
 */
export function boardJobData(registry: MemoryRegistry, data: unknown): unknown {
  const job = data as { ref?: { resource?: unknown }; messages?: unknown } | null;
  if (!job || !Array.isArray(job.messages)) return data;
  const resourceId = typeof job.ref?.resource === 'string' ? job.ref.resource : undefined;
  const resource = registry.list().find((r) => r.id === resourceId);
  const known = resource !== undefined;
  const policy = resource?.privacyPolicy;
  return {
    ...job,
    messages: job.messages.map((m: unknown) => {
      const message = m as { role?: unknown; content?: unknown } | null;
      if (!known || !message || typeof message.content !== 'string') {
        return { ...(message ?? {}), content: HIDDEN };
      }
      try {
        const { kept } = applyPrivacy(policy, [message as Parameters<typeof applyPrivacy>[1][0]]);
        return kept[0] ?? { ...message, content: HIDDEN };
      } catch {
        return { ...message, content: HIDDEN };
      }
    }),
  };
}

/** Refuses Bull Board's routes that write job data (add a job, edit a job's data): 403. */
const refuseDataWrites: RequestHandler = (req, res, next) => {
  if (
    (req.method === 'POST' && /^\/api\/queues\/[^/]+\/add\/?$/.test(req.path)) ||
    (req.method === 'PUT' && /\/update-data\/?$/.test(req.path))
  ) {
    res.status(403).json({
      error: {
        code: 'FORBIDDEN',
        message:
          'memq jobs carry redacted data and are created only through MemoryClient or the /v1 API',
        details: {},
      },
    });
    return;
  }
  next();
};

/** Creates the router to mount at {@link BOARD_PATH}. */
export function createBoardRouter(options: BoardOptions): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  const adapters = Object.values(QUEUES).map((name) => {
    const adapter = new BullMQAdapter(options.queues.byName(name), {
      readOnlyMode: options.readOnly ?? false,
      allowRetries: !(options.readOnly ?? false),
    });
    adapter.setFormatter('data', (data: unknown) => boardJobData(options.registry, data));
    return adapter;
  });
  createBullBoard({
    queues: adapters,
    serverAdapter,
    options: { uiConfig: { boardTitle: 'memq' } },
  });
  const router = Router();
  router.use(basicAuth(options.user, options.password, 'memq board'));
  router.use(refuseDataWrites);
  router.use(serverAdapter.getRouter() as RequestHandler);
  return router;
}
