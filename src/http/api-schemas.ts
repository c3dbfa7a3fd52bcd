/**
 * Zod schemas of the HTTP API's requests and responses: requests are validated with them at the
 * edge (docs/architecture.md, "Validation"), and `/openapi.json` is generated from the same schemas, so the
 * document cannot drift from the code.
 */
import { z } from 'zod';
import {
  ContentSchema,
  MAX_TOOL_CALL_ID_CHARS,
  MESSAGE_ID_PATTERN,
  MessageInputSchema,
  ROLES,
  SummarySchema,
  ToolCallSchema,
} from '../core/message.js';
import { FLUSH_STRATEGIES } from '../core/memory-resource.js';
import { MAX_MESSAGES_PER_APPEND, MAX_MESSAGES_PER_WRITE } from '../../queues/job-contracts.js';
import { QUEUES } from '../../queues/names.js';
import {
  MAX_DATA_ENTRIES,
  MAX_DATA_KEY_CHARS,
  MAX_DATA_VALUE_BYTES,
  MAX_LIST_LIMIT,
  MAX_PAGE_SIZE,
} from '../store/memory-store.js';
import { MAX_CONTEXT_TOKENS, MODEL_NAME_PATTERN } from '../../queues/memory-client.js';

/**
 * A submitted message ({@link MessageInputSchema}) with the rules across its fields written out
 * for `/openapi.json`: JSON Schema cannot state them, so the generated schema carries them as its
 * description.
 */
const SubmittedMessageSchema = MessageInputSchema.meta({
  description:
    'A chat message in the OpenAI format. Rules across fields: content null only on an assistant message with tool_calls; tool_calls only on an assistant message, ids distinct; tool_call_id on every tool message and only there; at most 4,194,304 characters of text in all (string content or text parts, image URLs, tool-call arguments). privacy: applied before anything is enqueued, never stored (do_not_persist: the message is not stored and counts in not_persisted).',
});

/** `POST .../messages` (append): 1..100 messages; ids and `created_at` assigned when absent. */
export const AppendBodySchema = z.strictObject({
  /** The messages, oldest first (see the Message schema). */
  messages: z.array(SubmittedMessageSchema).min(1).max(MAX_MESSAGES_PER_APPEND),
});

/** `PUT .../messages` (write): replaces the whole log with 0..1000 messages. */
export const WriteBodySchema = z.strictObject({
  /** The new log. */
  messages: z.array(SubmittedMessageSchema).max(MAX_MESSAGES_PER_WRITE),
});

/** `POST .../flush`: strategy override and dry run. */
export const FlushBodySchema = z.strictObject({
  /** Strategy for this flush; default the resource's `flushing.type`. */
  strategy: z.enum(FLUSH_STRATEGIES).optional(),
  /** Plan only and return the plan (the call waits for it); change nothing. Default false. */
  dry_run: z.boolean().default(false),
});

/** `POST .../clear`: must confirm (Compozy's rule for destructive calls). */
export const ClearBodySchema = z.strictObject({
  /** Must be `true`. */
  confirm: z.literal(true, {
    error: 'expected true (clear removes every message and the summary)',
  }),
});

/** `DELETE .../:key` and any body-less call: no body, or an empty JSON object. */
export const EmptyBodySchema = z.strictObject({});

const integerQuery = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, { error: `expected an integer in ${min}-${max}` })
    .transform(Number)
    .refine((n) => n >= min && n <= max, { error: `expected an integer in ${min}-${max}` });

/**
 * `GET .../messages` query. Like every query schema here it is strict: an unknown parameter is
 * a 400, not ignored (`?wiat=true` must not enqueue and answer 202 to a caller who meant to
 * wait), and so is a repeated one.
 */
export const ReadQuerySchema = z.strictObject({
  /** First message by position in id order; default 0. */
  offset: integerQuery(0, 1e9).optional(),
  /** Page size, 1..1000; default 100. */
  limit: integerQuery(1, MAX_PAGE_SIZE).optional(),
  /**
   * `window` (default): messages with tokens, the summary as its own field. `messages`: chat
   * messages, the summary as one leading system message (Compozy's shape).
   */
  format: z.enum(['window', 'messages']).default('window'),
});

/**
 * `?wait=true` on mutating calls (append, write, flush, clear, delete): answer after the job
 * finished (default: 202 once enqueued). Validated before anything is enqueued.
 */
export const WaitQuerySchema = z.strictObject({
  /** `true`: wait for the job's result. Default `false`. */
  wait: z.enum(['true', 'false']).default('false'),
  /** How long to wait, 1-60 000 ms; past it, 504 and the job goes on. Default 30 000. */
  timeout_ms: integerQuery(1, 60_000).optional(),
});

/** {@link WaitQuerySchema}'s parsed value. */
export type WaitQuery = z.output<typeof WaitQuerySchema>;

/** `GET .../stats` query. */
export const StatsQuerySchema = z.strictObject({
  /**
   * `true`: also read every message, for `roles` and a `consistent` that checks the token sum
   * (O(messages)). Default `false`: counters only (O(1)), `roles` null.
   */
  deep: z.enum(['true', 'false']).default('false'),
});

/** Routes without query parameters (`GET .../health`, `GET /v1/jobs/...`). */
export const EmptyQuerySchema = z.strictObject({});

/**
 * The job ids memq produces, and nothing else, so an id can only name a job hash (never a
 * queue's `events`, `meta`, `id`, `wait`... key): BullMQ's numeric ids, 1-16 digits without a
 * leading zero (INCR of the queue's `id` key: write, flush, clear, delete, token-count), or an
 * append job id, `<first message ULID>-<8 lowercase hex>` (`appendJobId` in
 * queues/memory-client.ts). Deduplicated jobs keep BullMQ's numeric ids.
 */
export const JOB_ID_PATTERN = new RegExp(
  `^(?:[1-9][0-9]{0,15}|${MESSAGE_ID_PATTERN.source.slice(1, -1)}-[0-9a-f]{8})$`,
);

/** {@link JOB_ID_PATTERN} in words, for error messages. */
export const JOB_ID_SHAPES =
  'numbers of 1-16 digits, or <26-character ULID>-<8 lowercase hex> for appends';

/** Path parameters of `/v1/jobs/:queue/:id`. */
export const JobParamsSchema = z.object({
  /** One of memq's four queues. */
  queue: z.enum(Object.values(QUEUES) as [string, ...string[]]),
  /** The job id from a 202 response; see {@link JOB_ID_PATTERN}. */
  id: z.string().regex(JOB_ID_PATTERN, { error: `expected ${JOB_ID_SHAPES}` }),
});

/** Where a job went: pass to `GET /v1/jobs/:queue/:id`. */
export const JobRefSchema = z.object({
  /** Queue name. */
  queue: z.string(),
  /** Job id. */
  id: z.string(),
  /**
   * Append jobs only: this append's index in the job's `entries` (appends that arrive together
   * share one job, group commit); `GET /v1/jobs/memory-append/:id` reports every entry's result
   * under `result.entries` when the job has more than one.
   */
  entry: z.number().int().nonnegative().optional(),
});

/** 202 (or 200 with `?wait=true`) answer of an append. */
export const AppendResponseSchema = z.object({
  /** The append job; null when the privacy policy dropped every message (nothing enqueued). */
  job: JobRefSchema.nullable(),
  /** Ids of the messages enqueued, in order. */
  message_ids: z.array(z.string()),
  /** Messages the privacy policy dropped (non-persistable role, or `action: drop`). */
  dropped: z.number().int(),
  /**
   * Messages the caller marked `privacy.do_not_persist`: not stored, not enqueued, not logged
   * (not counted in `dropped`).
   */
  not_persisted: z.number().int(),
  /** Matches the privacy policy redacted before enqueueing. */
  redactions: z.number().int(),
  /** With `?wait=true`: this append's `{ added, duplicates }` (its entry of the committed job). */
  result: z.unknown().optional(),
});

/** 202 (or 200 with `?wait=true`) answer of write, flush, clear and delete. */
export const JobAcceptedSchema = z.object({
  /** The job. */
  job: JobRefSchema,
  /** With `?wait=true` (and always for a dry-run flush): the job's result. */
  result: z.unknown().optional(),
});

/** The context-window view of a read: how full the memory is against its token limit. */
export const ContextWindowSchema = z.object({
  /** The effective token limit (`max_tokens`, or context window x `max_context_ratio`); null when not token-limited. */
  max_tokens: z.number().int().nullable(),
  /** Tokens now: exact counts, estimates of uncounted messages, and the summary. */
  used_tokens: z.number().int(),
  /** `used_tokens / max_tokens x 100`, two decimals; null when not token-limited. */
  used_percent: z.number().nullable(),
});

/** Messages of the log by kind of token count (`CountedBy`, src/store/memory-store.ts). */
export const CountedBySchema = z.object({
  /** Messages with an exact count. */
  exact: z.number().int(),
  /** Messages with an approximate count (another model's tokenizer stood in: `approximated_by`). */
  approximate: z.number().int(),
  /** Messages not counted yet (their append-time estimate is in `estimated_tokens`). */
  estimated: z.number().int(),
});

/** `GET .../messages` answer. */
export const ReadResponseSchema = z.object({
  /** Resource id. */
  resource: z.string(),
  /** Instance key. */
  key: z.string(),
  /** format=window: `{ message, tokens }` per message; format=messages: chat messages. */
  messages: z.array(z.unknown()),
  /** The rolling summary (format=window only; null without one). */
  summary: SummarySchema.nullable().optional(),
  /** Messages in the log. */
  total: z.number().int(),
  /** Page start. */
  offset: z.number().int(),
  /** Page size. */
  limit: z.number().int(),
  /** More messages after this page. */
  has_more: z.boolean(),
  /** Exact tokens of counted messages plus the summary. */
  token_count: z.number().int(),
  /** Estimates of messages not counted yet. */
  estimated_tokens: z.number().int(),
  /** True when every message is counted and every count, the summary's included, is exact. */
  exact: z.boolean(),
  /** Messages by kind of count. */
  counted_by: CountedBySchema,
  /** Tokens of `token_count` counted by an approximation. */
  approximate_tokens: z.number().int(),
  /** Names of the approximations used, e.g. `o200k_base (approximation for claude-sonnet-4-5)`. */
  approximated_by: z.array(z.string()),
  /** The approximation the summary was counted with; null when exact or absent. */
  summary_approximated_by: z.string().nullable(),
  /** Fill level against the token limit. */
  context_window: ContextWindowSchema,
});

/** `GET .../stats` and `GET .../health` answer (snake_case `MemoryStats`). */
export const StatsResponseSchema = z.object({
  /** Whether any key of the instance exists. */
  exists: z.boolean(),
  /** Messages in the log. */
  message_count: z.number().int(),
  /** Exact tokens plus the summary's. */
  token_count: z.number().int(),
  /** Estimates of uncounted messages. */
  estimated_tokens: z.number().int(),
  /** Messages waiting for an exact count. */
  uncounted_messages: z.number().int(),
  /** True when every message is counted and every count, the summary's included, is exact. */
  exact: z.boolean(),
  /** Messages by kind of count. */
  counted_by: CountedBySchema,
  /** Tokens of `token_count` counted by an approximation. */
  approximate_tokens: z.number().int(),
  /** Names of the approximations used. */
  approximated_by: z.array(z.string()),
  /** Approximate messages per approximation name. */
  approximate_messages_by: z.record(z.string(), z.number().int()),
  /** The approximation the summary was counted with; null when exact or absent. */
  summary_approximated_by: z.string().nullable(),
  /** Tokens of the summary. */
  summary_tokens: z.number().int(),
  /** Accepted since the last write/clear (= present + folded + evicted). */
  accepted_count: z.number().int(),
  /** Folded into the summary. */
  folded_count: z.number().int(),
  /** Evicted by strategies. */
  evicted_count: z.number().int(),
  /** Newest folded id. */
  watermark: z.string().nullable(),
  /** Seconds to expiry; -1 never; null when absent. */
  ttl_seconds: z.number().int().nullable(),
  /** Some operation holds the instance lock now. */
  locked: z.boolean(),
  /**
   * Counters agree with the log (message and accepted counts; with stats `?deep=true` also the
   * token sum).
   */
  consistent: z.boolean(),
  /** Stats only: messages per role with `?deep=true`; null without it. */
  roles: z.record(z.enum(ROLES), z.number().int()).nullable().optional(),
  /** Stats only: `token_count / max_tokens` (0..1+); null when not token-limited. */
  token_utilization: z.number().nullable().optional(),
  /** Health only: exists or empty, and consistent. */
  healthy: z.boolean().optional(),
});

/** `GET .../context` query. */
export const ContextQuerySchema = z.strictObject({
  /**
   * Token budget of the answer, 1..{@link MAX_CONTEXT_TOKENS}. Default: the resource's token
   * limit (`max_tokens`, or context window x `max_context_ratio`), at most the context window of
   * `model` when `model` is given (e.g. 8,192 for `gpt-4`); without a limit, the context window of
   * `model` (or of the resource's model); 400 when neither is known.
   */
  max_tokens: integerQuery(1, MAX_CONTEXT_TOKENS).optional(),
  /**
   * Count with this model's tokenizer instead of the resource's stored counts; default the
   * resource's `token_provider.model`. Exact with the model's tiktoken encoding; approximated
   * with `o200k_base` (`exact: false`) for a model whose context window memq knows but whose
   * tokenizer is not published (claude-*, gemini-*); any other model is a 400.
   */
  model: z
    .string()
    .regex(MODEL_NAME_PATTERN, {
      error: 'expected a model name: 1-200 of letters, digits and . _ - : /',
    })
    .optional(),
});

/** A message as a chat request takes it (`ChatMessage`, src/flush/summary.ts). */
export const ChatMessageSchema = z.object({
  /** Who spoke. */
  role: z.enum(ROLES),
  /** A string, a list of parts (text, image_url), or null (assistant with tool calls). */
  content: ContentSchema,
  /** Participant name, when the message has one. */
  name: z.string().optional(),
  /** An assistant message's tool calls. */
  tool_calls: z.array(ToolCallSchema).optional(),
  /** For `tool` messages: the call answered. */
  tool_call_id: z.string().max(MAX_TOOL_CALL_ID_CHARS).optional(),
});

/** `GET .../context` answer: what to send to the model, within the budget. */
export const ContextResponseSchema = z.object({
  /** Resource id. */
  resource: z.string(),
  /** Instance key. */
  key: z.string(),
  /**
   * Chat messages, oldest first: the rolling summary (when there is one) as a leading system
   * message, then the newest messages that fit. Instructions (system, developer) are always
   * kept, and an assistant message with tool calls comes with every tool result answering it or
   * not at all.
   */
  messages: z.array(ChatMessageSchema),
  /**
   * Tokens of `messages` as one request: each message's count (chat framing included), the
   * summary's, and the 3 tokens that prime the reply; 0 when nothing is sent. Above `max_tokens`
   * only when the instructions alone are.
   */
  tokens: z.number().int(),
  /**
   * True when every count behind `tokens` is exact for `model`: none estimated (a message not
   * counted yet, tool calls, images of unknown size) or approximated (another model's tokenizer).
   */
  exact: z.boolean(),
  /**
   * The log's messages not sent, and their tokens by the stored counts (not recounted for
   * `model`): those older than the messages sent (they did not fit), and tool results whose call
   * is not sent (a chat API refuses a tool result without its call). Pinned messages (system,
   * developer) are always sent, so never counted here.
   */
  omitted: z.object({
    /** Messages left out. */
    messages: z.number().int(),
    /** Their tokens. */
    tokens: z.number().int(),
  }),
  /** True when `messages` starts with the rolling summary. */
  summary: z.boolean(),
  /** The budget applied (the query's `max_tokens`, or its default). */
  max_tokens: z.number().int(),
  /** The model whose tokenizer the counts are for. */
  model: z.string(),
  /**
   * Opaque generation of the instance: changes with every flush, write and clear and when the
   * instance is created again; compare two reads' values for equality only. Null until the
   * instance has had messages (it does not exist, or holds only session data); a cleared
   * instance, empty again, keeps one.
   */
  epoch: z.string().nullable(),
  /**
   * The newest message id in the log at the read: every message up to it is in `messages`, in
   * `omitted` or folded into the summary. Null for an empty log.
   */
  through_id: z.string().nullable(),
});

/** `GET /v1/memories/:resource` query. */
export const ListQuerySchema = z.strictObject({
  /** Where to go on: the `next_cursor` of the previous page; absent for the first page. */
  cursor: z.string().min(1).max(1024).optional(),
  /** Instances per page, 1..{@link MAX_LIST_LIMIT}; default 20. */
  limit: integerQuery(1, MAX_LIST_LIMIT).optional(),
});

/** One instance of a list. */
export const ListItemSchema = z.object({
  /** Instance key (pass as `:key`). */
  key: z.string(),
  /** Messages in the log. */
  message_count: z.number().int(),
  /** Tokens: exact counts, estimates of uncounted messages, and the summary. */
  tokens: z.number().int(),
  /** True when every count behind `tokens` is exact. */
  exact: z.boolean(),
  /** Last recorded activity of the instance (its time in the activity index), ISO-8601. */
  last_activity: z.string(),
});

/** `GET /v1/memories/:resource` answer: the API key's project's instances of the resource. */
export const ListResponseSchema = z.object({
  /** Instances, most recently active first. */
  items: z.array(ListItemSchema),
  /** Pass as `cursor` for the next page; null on the last page. */
  next_cursor: z.string().nullable(),
});

/**
 * Session data: string keys to string values. The schema checks only that it is a JSON object
 * and passes that object on as it is: its entries are checked by `sessionDataEntries`
 * (src/store/session-data.ts, called by the route before the client), whose errors name an entry
 * by its position (`data[3]`), never by its key. A zod record would echo keys in its issues
 * (`data.jane.doe@example.com: ...`, a key is data too) and would silently drop a `__proto__`
 * key, which memq stores like any other. The JSON Schema of `/openapi.json` states the bounds
 * (UTF-8 bytes are in the description: JSON Schema counts characters).
 */
export const DataSchema = z
  .custom<Record<string, string>>(
    (value) => typeof value === 'object' && value !== null && !Array.isArray(value),
    { error: 'expected an object of string values' },
  )
  .meta({
    type: 'object',
    maxProperties: MAX_DATA_ENTRIES,
    propertyNames: { type: 'string', minLength: 1, maxLength: MAX_DATA_KEY_CHARS },
    additionalProperties: { type: 'string', maxLength: MAX_DATA_VALUE_BYTES },
    description: `String keys (1-${MAX_DATA_KEY_CHARS} characters) to string values (at most ${MAX_DATA_VALUE_BYTES} UTF-8 bytes), at most ${MAX_DATA_ENTRIES} entries. The limits apply to the data as sent: a value the privacy policy makes longer is stored longer. Errors name an entry by its position, from 0 (data[3]): JSON order, except that keys which are array indexes (such as "7") come first, ascending; never by its key.`,
  });

/** `PUT .../data` body. */
export const DataBodySchema = z.strictObject({
  /** The instance's session data (see {@link DataSchema}). */
  data: DataSchema,
});

/** `GET .../data` answer. */
export const DataResponseSchema = z.object({
  /** The stored session data; `{}` when there is none. */
  data: z.record(z.string(), z.string()),
});

/** `PUT .../data` answer. */
export const DataPutResponseSchema = DataResponseSchema.extend({
  /** Matches the privacy policy replaced in the values. */
  redactions: z.number().int(),
  /** Entries not stored because a value matched a policy with action `drop`. */
  dropped: z.number().int(),
});

/** `GET /v1/jobs/:queue/:id` answer. */
export const JobResponseSchema = z.object({
  queue: z.string(),
  id: z.string(),
  name: z.string(),
  /** waiting, active, delayed, prioritized, completed, failed. */
  state: z.string(),
  attempts_made: z.number().int(),
  progress: z.unknown(),
  created_at: z.number().int(),
  processed_at: z.number().int().optional(),
  finished_at: z.number().int().optional(),
  result: z.unknown().optional(),
  failed_reason: z.string().optional(),
});

/** Every error answer. */
export const ErrorResponseSchema = z.object({
  error: z.object({
    /** Stable code, e.g. PAYLOAD_INVALID, UNAUTHENTICATED, NOT_FOUND, BACKPRESSURE, RATE_LIMITED. */
    code: z.string(),
    /** What, where, and what is allowed. */
    message: z.string(),
    /** Machine-readable context. */
    details: z.record(z.string(), z.unknown()),
  }),
});
