/**
 * The HTTP server (docs/architecture.md, "HTTP API"): the `/v1` API behind API keys, Bull Board behind its own
 * credentials, `/metrics`, `/healthz`, `/readyz` and `/openapi.json`, on one port.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import express, { type Express, type RequestHandler, type Router } from 'express';
import type { RedisConnection } from '../redis/connection.js';
import type { Logger } from 'pino';
import type { ApiKeyGrant } from '../config/env.js';
import type { MemoryRegistry } from '../config/load-memories.js';
import type { MemqMetrics } from '../metrics/metrics.js';
import { loadScripts } from '../redis/scripts.js';
import type { MemoryClient } from '../../queues/memory-client.js';
import type { MemoryQueues } from '../../queues/memory-queues.js';
import { apiKeyAuth } from './auth.js';
import { BOARD_PATH, createBoardRouter } from './board.js';
import { errorHandler, NotFoundError, UnsupportedMediaTypeError } from './http-errors.js';
import { createMemoryRoutes } from './memory-routes.js';
import { openApiDocument } from './openapi.js';
import { createTenantLimits, type TenantLimitSettings } from './rate-limit.js';

/** Dependencies and settings of {@link createHttpApp}. */
export interface HttpAppOptions {
  /** The process's producer client (requests use `forProject`). */
  readonly client: MemoryClient;
  /** Queues shown on Bull Board. */
  readonly queues: MemoryQueues;
  /** Declared resources. */
  readonly registry: MemoryRegistry;
  /** Producer connection: `/readyz` pings it and loads the scripts on it. */
  readonly redis: RedisConnection;
  /** Instruments; `/metrics` serves `metrics.registry`. */
  readonly metrics: MemqMetrics;
  /** Request log (request id, method, route, status, duration, project; never bodies). */
  readonly log: Logger;
  /** API key -> grant. */
  readonly apiKeys: ReadonlyMap<string, ApiKeyGrant>;
  /** Bull Board credentials and mode. */
  readonly board: { readonly user: string; readonly password: string; readonly readOnly: boolean };
  /** Largest request body, bytes (`MEMQ_MAX_BODY_BYTES`). */
  readonly maxBodyBytes: number;
  /** Largest message content, UTF-8 bytes (`MEMQ_MAX_MESSAGE_BYTES`). */
  readonly maxMessageBytes: number;
  /** `/readyz`'s bound on the canary job's round trip, ms. Default 2 000. */
  readonly readyTimeoutMs?: number;
  /** How long a `/readyz` answer is reused after its probe finished, ms. Default {@link READY_CACHE_MS}. */
  readonly readyCacheMs?: number;
  /**
   * True once the process has begun to shut down: from then on `/readyz` answers 503
   * `{"status":"draining"}` without probing, so load balancers stop sending while the server
   * still answers (`/healthz` stays 200). Default: never.
   */
  readonly draining?: () => boolean;
  /**
   * Per-tenant limits (request and message rates per API key, counted on `redis`; concurrent
   * waits and dry runs per project); absent = none (src/http/rate-limit.ts).
   */
  readonly limits?: TenantLimitSettings;
}

/**
 * How long a `/readyz` answer is reused after its probe finished, ms: 1 000. Probes are
 * single-flight (concurrent callers share the one running) and each costs a canary job, so an
 * anonymous caller gets at most one canary per probe time + 1 s out of a process, whatever its
 * request rate; orchestrators probe every few seconds, so 1 s old is fresh enough.
 */
export const READY_CACHE_MS = 1_000;

/** A `/readyz` answer: ready, and each check's outcome. */
interface Readiness {
  readonly ready: boolean;
  readonly checks: Record<string, unknown>;
}

/**
 * Refuses a request body that is not `application/json` in UTF-8 (415) before any parser reads
 * it: the JSON parser skips other media types, which would leave a route to act on an empty
 * body, and would decode UTF-16 or UTF-7 (JSON between systems is UTF-8, RFC 8259 section 8.1).
 */
const jsonBodiesOnly: RequestHandler = (req, _res, next) => {
  const length = req.headers['content-length'];
  const hasBody =
    req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  if (!hasBody) {
    next();
    return;
  }
  const type = req.headers['content-type'];
  if (!req.is('application/json')) {
    throw new UnsupportedMediaTypeError(
      `Content-Type: expected application/json for a request body, got ${type === undefined ? 'none' : JSON.stringify(type.slice(0, 64))}`,
      { header: 'content-type' },
    );
  }
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(type ?? '')?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new UnsupportedMediaTypeError(
      `Content-Type: expected charset utf-8 (RFC 8259 section 8.1), got ${JSON.stringify(charset.slice(0, 64))}`,
      { header: 'content-type' },
    );
  }
  next();
};

/** Routes logged at debug when they succeed (health probes and metric scrapes). */
const PROBE_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/** The header carrying a request's id, in both directions. */
export const REQUEST_ID_HEADER = 'X-Request-Id';

/**
 * A caller's `X-Request-Id` memq keeps: 1 to 128 token characters (RFC 9110 section 5.6.2
 * `tchar`: letters, digits and ``!#$%&'*+-.^_`|~``). 128 holds a UUID (36), a ULID (26), a W3C
 * trace id (32) or a cloud load balancer's trace header; anything else (longer, empty, with spaces,
 * control characters, quotes, commas or non-ASCII) is replaced, so a log line never carries it.
 */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/;

/**
 * The request's id: its `X-Request-Id` when it matches {@link REQUEST_ID_PATTERN}, else a new
 * random UUID (v4). A header sent twice arrives joined with `, ` and is replaced.
 */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && REQUEST_ID_PATTERN.test(header) ? header : randomUUID();
}

/**
 * A route pattern split into segments: a lower-cased literal (Express matches case-insensitively)
 * or `undefined` for a parameter (one non-empty segment).
 */
interface RouteMatcher {
  readonly pattern: string;
  readonly segments: ReadonlyArray<string | undefined>;
}

/**
 * Matchers of `router`'s routes (`router.get(...)` and the like), their patterns prefixed with
 * `prefix` (the router's mount path).
 * @throws Error when a pattern has anything but literal and `:param` segments (a wildcard, an
 *   optional part): the route label could not be told from the path alone.
 */
function routeMatchers(router: Router, prefix: string): RouteMatcher[] {
  const matchers: RouteMatcher[] = [];
  for (const layer of router.stack) {
    const path = layer.route?.path;
    if (typeof path !== 'string') continue;
    const pattern = `${prefix}${path}`;
    if (!/^(\/(:[A-Za-z_][A-Za-z0-9_]*|[A-Za-z0-9._~-]+))+$/.test(pattern)) {
      throw new Error(
        `route ${JSON.stringify(pattern)}: expected literal and :param segments only (the route label of memq_http_requests_total is read from the path)`,
      );
    }
    const segments = pattern
      .split('/')
      .slice(1)
      .map((segment) => (segment.startsWith(':') ? undefined : segment.toLowerCase()));
    matchers.push({ pattern, segments });
  }
  return matchers;
}

/**
 * The route label of a request path (docs/architecture.md, "Observability"): the pattern of the
 * route the path belongs to, e.g. `/v1/memories/:resource/:key/messages`, whatever answered it
 * (the route with any status, its errors included, such as a 429 `BACKPRESSURE` or a 503; or a
 * 401, 413, 415 or 429 `RATE_LIMITED` from a middleware before it), so that one route has one
 * label; {@link BOARD_PATH} for Bull Board; `unmatched` for anything else. Read from the full path
 * before any router runs: `req.route.path` and `req.baseUrl` of a request whose error left the
 * `/v1` router give `/memories/...` without the mount path. Bounded: the patterns are the app's
 * own.
 */
function routeLabel(matchers: readonly RouteMatcher[], path: string): string {
  const parts = path.replace(/\/$/, '').split('/').slice(1);
  for (const { pattern, segments } of matchers) {
    if (
      segments.length === parts.length &&
      segments.every((literal, i) =>
        literal === undefined ? parts[i] !== '' : literal === parts[i]!.toLowerCase(),
      )
    ) {
      return pattern;
    }
  }
  if (path === BOARD_PATH || path.startsWith(`${BOARD_PATH}/`)) return BOARD_PATH;
  return 'unmatched';
}

/** Creates the express app (no listening: see {@link listen}). */
export function createHttpApp(options: HttpAppOptions): Express {
  const { metrics, log } = options;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  const loopDelay = monitorEventLoopDelay({ resolution: 20 });
  loopDelay.enable();

  /** Every route's matcher, filled in once every route is registered (end of this function). */
  const matchers: RouteMatcher[] = [];
  // First of all: every answer, errors and Bull Board's included, carries the request id, and
  // the route label is known before any middleware can refuse the request.
  const observe: RequestHandler = (req, res, next) => {
    const started = performance.now();
    const requestId = requestIdOf(req.headers['x-request-id']);
    const route = routeLabel(matchers, req.path);
    res.locals.requestId = requestId;
    res.locals.route = route;
    res.set(REQUEST_ID_HEADER, requestId);
    res.on('finish', () => {
      const seconds = (performance.now() - started) / 1000;
      metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
      metrics.httpDuration.observe({ method: req.method, route }, seconds);
      const grant = res.locals.grant as ApiKeyGrant | undefined;
      // Probes and scrapes every few seconds would drown the API's own lines at info.
      const level = PROBE_ROUTES.has(route) && res.statusCode < 400 ? 'debug' : 'info';
      log[level](
        {
          requestId,
          method: req.method,
          route,
          status: res.statusCode,
          ms: Math.round(seconds * 1000),
          ...(grant ? { project: grant.project } : {}),
          ...(typeof res.locals.resource === 'string' ? { resource: res.locals.resource } : {}),
        },
        'http request',
      );
    });
    next();
  };
  app.use(observe);

  app.get('/healthz', (_req, res) => {
    res.json({
      status: 'ok',
      uptime_seconds: Math.round(process.uptime()),
      event_loop_delay_p99_ms: Math.round(loopDelay.percentile(99) / 1e4) / 100,
    });
  });

  const probe = async (): Promise<Readiness> => {
    const checks: Record<string, unknown> = {};
    let ready = true;
    const check = async (name: string, run: () => Promise<unknown>) => {
      try {
        checks[name] = { ok: true, ...((await run()) as object) };
      } catch (error) {
        ready = false;
        checks[name] = { ok: false, error: error instanceof Error ? error.message : String(error) };
      }
    };
    await check('redis', async () => ({ reply: await options.redis.ping() }));
    await check('scripts', async () => ({ loaded: await loadScripts(options.redis) }));
    await check('canary', async () => ({
      round_trip_ms: await options.client.canary({ timeoutMs: options.readyTimeoutMs ?? 2_000 }),
    }));
    return { ready, checks };
  };
  let lastProbe: { readonly at: number; readonly answer: Readiness } | undefined;
  let probing: Promise<Readiness> | undefined;
  const readiness = (): Promise<Readiness> => {
    if (lastProbe && Date.now() - lastProbe.at < (options.readyCacheMs ?? READY_CACHE_MS)) {
      return Promise.resolve(lastProbe.answer);
    }
    probing ??= probe()
      .then((answer) => {
        lastProbe = { at: Date.now(), answer };
        return answer;
      })
      .finally(() => {
        probing = undefined;
      });
    return probing;
  };

  const draining = options.draining ?? (() => false);
  app.get('/readyz', async (_req, res) => {
    // Checked before and after the probe: one that was running when the shutdown began must
    // not answer 200 after it.
    if (!draining()) {
      const { ready, checks } = await readiness();
      if (!draining()) {
        res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
        return;
      }
    }
    res.status(503).json({ status: 'draining', checks: {} });
  });

  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  });

  app.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });

  app.use(
    BOARD_PATH,
    createBoardRouter({
      queues: options.queues,
      registry: options.registry,
      user: options.board.user,
      password: options.board.password,
      readOnly: options.board.readOnly,
    }),
  );

  const limits = createTenantLimits({
    ...(options.limits ? { settings: options.limits } : {}),
    redis: options.redis,
    apiKeys: options.apiKeys,
    metrics,
  });
  // Authentication first: a caller without a valid key gets its 401 before any body is
  // inflated or parsed (Node discards an unread body once the answer is sent). The request rate
  // next: a key over it costs no body parsing, and requests that fail validation count too.
  const memoryRoutes = createMemoryRoutes({
    client: options.client,
    registry: options.registry,
    maxMessageBytes: options.maxMessageBytes,
    limits,
    draining,
  });
  app.use(
    '/v1',
    apiKeyAuth(options.apiKeys),
    limits.requests,
    jsonBodiesOnly,
    express.json({ limit: options.maxBodyBytes }),
    memoryRoutes,
  );

  app.use((req) => {
    throw new NotFoundError(`no route ${req.method} ${req.path}`, { method: req.method });
  });
  app.use(errorHandler(log));
  matchers.push(...routeMatchers(app.router, ''), ...routeMatchers(memoryRoutes, '/v1'));
  return app;
}

/** A listening server. */
export interface HttpServer {
  /** The port it listens on (useful with port 0). */
  readonly port: number;
  /** The address it listens on, e.g. `127.0.0.1` (the default) or `0.0.0.0`. */
  readonly host: string;
  /** Stops accepting connections and closes idle ones; resolves when all are closed. Idempotent. */
  close(): Promise<void>;
  /**
   * For a shutdown past its deadline: closes every connection at once, requests in progress
   * included (their callers get no answer), so no socket keeps the process alive. Never throws.
   */
  abandon(): void;
}

/**
 * Listens on `port` (0 = any free port) on `host`, default `127.0.0.1` (loopback only: exposing
 * the API, Bull Board and `/metrics` to a network is an explicit choice, e.g. `0.0.0.0`).
 * @throws the listen error (e.g. EADDRINUSE, EADDRNOTAVAIL for a host not on this machine).
 */
export async function listen(app: Express, port: number, host?: string): Promise<HttpServer> {
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(port, host ?? '127.0.0.1', (error?: Error) =>
      error ? reject(error) : resolve(s),
    );
  });
  const address = server.address();
  let closing: Promise<void> | undefined;
  const bound = typeof address === 'object' && address ? address : undefined;
  return {
    port: bound?.port ?? port,
    host: bound?.address ?? host ?? '127.0.0.1',
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      return closing;
    },
    abandon() {
      server.closeAllConnections();
    },
  };
}
