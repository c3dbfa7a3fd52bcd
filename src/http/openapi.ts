/**
 * `/openapi.json`: an OpenAPI 3.1 document generated from the zod schemas the routes validate
 * with (`api-schemas.ts`), via zod 4's own `z.toJSONSchema` (JSON Schema 2020-12, which OpenAPI
 * 3.1 uses as its schema dialect).
 */
import { z } from 'zod';
import {
  AppendBodySchema,
  AppendResponseSchema,
  ClearBodySchema,
  ContextQuerySchema,
  ContextResponseSchema,
  DataBodySchema,
  DataPutResponseSchema,
  DataResponseSchema,
  ErrorResponseSchema,
  FlushBodySchema,
  JOB_ID_PATTERN,
  JOB_ID_SHAPES,
  JobAcceptedSchema,
  JobResponseSchema,
  ListQuerySchema,
  ListResponseSchema,
  ReadQuerySchema,
  ReadResponseSchema,
  StatsQuerySchema,
  StatsResponseSchema,
  WaitQuerySchema,
  WriteBodySchema,
} from './api-schemas.js';
import { QUEUES } from '../../queues/names.js';

const json = (schema: z.ZodType, io: 'input' | 'output') => {
  const converted = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  delete converted.$schema;
  return converted;
};

const content = (schema: z.ZodType, io: 'input' | 'output' = 'output') => ({
  'application/json': { schema: json(schema, io) },
});

/** Query parameters of an object schema, as OpenAPI parameters. */
const queryParameters = (schema: z.ZodObject) =>
  Object.entries(schema.shape).map(([name, field]) => ({
    name,
    in: 'query',
    required: false,
    schema: json(field as z.ZodType, 'input'),
  }));

const memoryParameters = [
  {
    name: 'resource',
    in: 'path',
    required: true,
    description: 'Memory resource id (a file in memories/)',
    schema: { type: 'string' },
  },
  {
    name: 'key',
    in: 'path',
    required: true,
    description:
      'Instance key, 1-256 of [A-Za-z0-9_:-@.], not starting or ending with __; taken literally (never rendered as a key template)',
    schema: { type: 'string' },
  },
];

/** Statuses answered with a `Retry-After` header (whole seconds, RFC 9110 section 10.2.3). */
const RETRY_AFTER_STATUSES = new Set([429, 503]);

const errors = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((status) => [
      String(status),
      {
        description: ERROR_MEANING[status] ?? 'error',
        ...(RETRY_AFTER_STATUSES.has(status)
          ? {
              headers: {
                'Retry-After': {
                  description: 'Seconds to wait before retrying (rounded up, at least 1)',
                  schema: { type: 'integer', minimum: 1 },
                },
              },
            }
          : {}),
        content: content(ErrorResponseSchema),
      },
    ]),
  );

const ERROR_MEANING: Record<number, string> = {
  400: 'invalid path key, query (unknown or repeated parameters included), body or JSON (PAYLOAD_INVALID); nothing was enqueued or changed',
  401: 'missing or unknown API key (UNAUTHENTICATED); checked before the body is read',
  403: 'read-only API key (FORBIDDEN)',
  404: 'unknown memory resource, queue or job, or a job id of a shape memq never produces (MEMORY_NOT_FOUND, NOT_FOUND)',
  409: 'the instance is locked by another operation (LOCK_BUSY); for a context read, the instance changed under the read several times (CONFLICT): read again',
  413: 'body (after Content-Encoding is undone), message text, message count, session-data entries or value over the limit (PAYLOAD_TOO_LARGE)',
  415: 'a body that is not application/json in UTF-8, or a Content-Encoding other than identity, gzip, deflate or br (UNSUPPORTED_MEDIA_TYPE)',
  422: 'the privacy policy could not be applied; nothing stored (POLICY_FAILED)',
  429: "BACKPRESSURE: the backlog is at or over its high-water mark in messages, or the project's messages or bytes or everyone's bytes over their bound (details.bound); RATE_LIMITED: the API key is over its request or message rate, or the project has its most concurrent ?wait=true calls or dry-run flushes running (details.limit). Nothing was enqueued; retry after Retry-After (details.retry_after_ms)",
  503: 'Redis unreachable (REDIS_UNAVAILABLE); see Retry-After',
  504: '?wait=true timed out (WAIT_TIMEOUT); the job goes on',
};

const WRITE_ERRORS = [400, 401, 403, 404, 409, 413, 415, 422, 429, 503, 504];
const READ_ERRORS = [400, 401, 404, 415, 429, 503];

/** The OpenAPI 3.1 document served at `/openapi.json`. */
export function openApiDocument(): Record<string, unknown> {
  const wait = queryParameters(WaitQuerySchema);
  const accepted = {
    '202': { description: 'enqueued', content: content(JobAcceptedSchema) },
    '200': { description: 'finished (?wait=true)', content: content(JobAcceptedSchema) },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'memq',
      version: '0.1.0',
      description:
        "Queue-driven memory for LLM agents: Compozy's eight memory operations, context reads, instance lists and session data over BullMQ and Redis.",
    },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } },
    },
    security: [{ apiKey: [] }],
    paths: {
      '/v1/memories/{resource}/{key}/messages': {
        parameters: memoryParameters,
        post: {
          summary: 'Append messages (202 with the job; ?wait=true answers after the commit)',
          parameters: wait,
          requestBody: { required: true, content: content(AppendBodySchema, 'input') },
          responses: {
            '202': { description: 'enqueued', content: content(AppendResponseSchema) },
            '200': {
              description: 'committed (?wait=true), or every message dropped by policy',
              content: content(AppendResponseSchema),
            },
            ...errors(...WRITE_ERRORS),
          },
        },
        get: {
          summary: 'Read a page with the summary, counts and context-window use',
          parameters: queryParameters(ReadQuerySchema),
          responses: {
            '200': { description: 'the page', content: content(ReadResponseSchema) },
            ...errors(...READ_ERRORS),
          },
        },
        put: {
          summary: 'Replace the log (write)',
          parameters: wait,
          requestBody: { required: true, content: content(WriteBodySchema, 'input') },
          responses: { ...accepted, ...errors(...WRITE_ERRORS) },
        },
      },
      '/v1/memories/{resource}/{key}/flush': {
        parameters: memoryParameters,
        post: {
          summary: 'Flush now (strategy override; dry_run answers with the plan)',
          parameters: wait,
          requestBody: { required: false, content: content(FlushBodySchema, 'input') },
          responses: { ...accepted, ...errors(...WRITE_ERRORS) },
        },
      },
      '/v1/memories/{resource}/{key}/clear': {
        parameters: memoryParameters,
        post: {
          summary: 'Remove every message and the summary (confirm: true)',
          parameters: wait,
          requestBody: { required: true, content: content(ClearBodySchema, 'input') },
          responses: { ...accepted, ...errors(...WRITE_ERRORS) },
        },
      },
      '/v1/memories/{resource}/{key}': {
        parameters: memoryParameters,
        delete: {
          summary:
            'Delete the instance: its messages, summary, counters and session data, and its index entries; session data put after the delete was requested (while it waited in the queue) is kept, and the instance stays listed with it',
          parameters: wait,
          responses: { ...accepted, ...errors(...WRITE_ERRORS) },
        },
      },
      '/v1/memories/{resource}/{key}/health': {
        parameters: memoryParameters,
        get: {
          summary: 'Health: exists, counters consistent, lock, TTL (no query parameters)',
          responses: {
            '200': { description: 'health', content: content(StatsResponseSchema) },
            ...errors(...READ_ERRORS),
          },
        },
      },
      '/v1/memories/{resource}/{key}/stats': {
        parameters: memoryParameters,
        get: {
          summary:
            'Stats: token utilization and accounting from counters (O(1)); ?deep=true also reads every message for the role distribution and the token-sum check (O(messages))',
          parameters: queryParameters(StatsQuerySchema),
          responses: {
            '200': { description: 'stats', content: content(StatsResponseSchema) },
            ...errors(...READ_ERRORS),
          },
        },
      },
      '/v1/memories/{resource}/{key}/context': {
        parameters: memoryParameters,
        get: {
          summary:
            'What to send to the model: the summary and the newest messages that fit max_tokens (instructions kept, a tool call never split from its results), counted for model',
          parameters: queryParameters(ContextQuerySchema),
          responses: {
            '200': { description: 'the context', content: content(ContextResponseSchema) },
            ...errors(...READ_ERRORS, 409),
          },
        },
      },
      '/v1/memories/{resource}/{key}/data': {
        parameters: memoryParameters,
        get: {
          summary: "The instance's session data (string keys to string values; {} when none)",
          responses: {
            '200': { description: 'the data', content: content(DataResponseSchema) },
            ...errors(...READ_ERRORS),
          },
        },
        put: {
          summary:
            "Replace the instance's session data (limits on the data as sent; the resource's privacy policy applies to values; a key it matches is refused; errors name entries by position, data[3]). Activity: the instance's TTL restarts, never past its expiration, which a put that creates the instance starts",
          requestBody: { required: true, content: content(DataBodySchema, 'input') },
          responses: {
            '200': { description: 'stored', content: content(DataPutResponseSchema) },
            ...errors(400, 401, 403, 404, 413, 415, 422, 429, 503),
          },
        },
      },
      '/v1/memories/{resource}': {
        parameters: [memoryParameters[0]],
        get: {
          summary:
            "The API key's project's instances of the resource, most recently active first (cursor pagination)",
          parameters: queryParameters(ListQuerySchema),
          responses: {
            '200': { description: 'one page', content: content(ListResponseSchema) },
            ...errors(...READ_ERRORS),
          },
        },
      },
      '/v1/jobs/{queue}/{id}': {
        parameters: [
          {
            name: 'queue',
            in: 'path',
            required: true,
            schema: { type: 'string', enum: Object.values(QUEUES) },
          },
          {
            name: 'id',
            in: 'path',
            required: true,
            description: `The job id from a 202 answer: ${JOB_ID_SHAPES}`,
            schema: { type: 'string', pattern: JOB_ID_PATTERN.source },
          },
        ],
        get: {
          summary: "A job of the caller's project: state, progress, result or failure reason",
          responses: {
            '200': { description: 'the job', content: content(JobResponseSchema) },
            ...errors(400, 401, 404, 415, 429, 503),
          },
        },
      },
    },
  };
}
