import { z } from 'zod';

/**
 * Message roles, as in the OpenAI/Anthropic chat formats. `tool` carries a tool result and must
 * name the call it answers in `tool_call_id`.
 */
export const ROLES = ['system', 'user', 'assistant', 'tool'] as const;

/** One of {@link ROLES}. */
export type Role = (typeof ROLES)[number];

/**
 * Message ids are ULIDs (26 Crockford base32 characters, 48-bit millisecond time + 80 bits of
 * randomness, https://github.com/ulid/spec). They sort lexicographically in creation order, and
 * the log's order is the order of ids, so concurrent workers cannot reorder a conversation.
 */
export const MESSAGE_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/**
 * Longest message content, in UTF-16 characters: 4 Mi (4,194,304). The bound on what one message
 * costs the pipeline: redaction is linear time (RE2) at about 0.5 s per MiB for text dense with
 * matches under every detector (bench:privacy, worst case), so at most ~2 s per message.
 */
export const MAX_CONTENT_CHARS = 4 * 2 ** 20;

/** Metadata values: JSON scalars only, so metadata never nests unbounded structures. */
const MetadataValueSchema = z.union([z.string().max(4096), z.number(), z.boolean(), z.null()]);

/**
 * A message as a producer submits it. `id` and `created_at` are assigned by the client when
 * absent. Unknown fields are rejected.
 */
export const MessageInputSchema = z.strictObject({
  /** ULID; see {@link MESSAGE_ID_PATTERN}. Default: assigned by the producer (monotonic). */
  id: z
    .string()
    .regex(MESSAGE_ID_PATTERN, 'expected a ULID (26 Crockford base32 characters)')
    .optional(),
  /** Who spoke; one of {@link ROLES}. */
  role: z.enum(ROLES),
  /** The text, at most {@link MAX_CONTENT_CHARS}. May be empty (a role-only message still costs tokens). */
  content: z.string().max(MAX_CONTENT_CHARS, {
    error: `expected at most ${MAX_CONTENT_CHARS} characters`,
  }),
  /** Optional participant name (OpenAI `name`), 1-64 characters. */
  name: z.string().min(1).max(64).optional(),
  /** For `role: tool`: the id of the tool call this message answers. */
  tool_call_id: z.string().min(1).max(256).optional(),
  /** Free-form flat metadata (at most 32 entries, string values up to 4 KiB). */
  metadata: z
    .record(z.string().max(128), MetadataValueSchema)
    .refine((m) => Object.keys(m).length <= 32, 'at most 32 metadata entries')
    .optional(),
  /** ISO-8601 creation time. Default: when the producer accepted it. */
  created_at: z.iso.datetime({ offset: true }).optional(),
});

/** A message as submitted (see {@link MessageInputSchema}). */
export type MessageInput = z.input<typeof MessageInputSchema>;

/** A message as stored and returned: `id` and `created_at` always present. */
export const MessageSchema = MessageInputSchema.extend({
  id: z.string().regex(MESSAGE_ID_PATTERN, 'expected a ULID (26 Crockford base32 characters)'),
  created_at: z.iso.datetime({ offset: true }),
});

/** A stored message (see {@link MessageSchema}). */
export type Message = z.output<typeof MessageSchema>;

/**
 * The rolling summary of an instance (docs/architecture.md, "Domain"): stored beside the log, never as a
 * message in it. Messages with ids at or below `covers_through_id` (the watermark) are folded
 * into it.
 */
export const SummarySchema = z.strictObject({
  /** Summary text (built only from redacted content). */
  content: z.string(),
  /** Exact tokens of `content` as a message (see `TokenCounter.countMessage`). */
  tokens: z.number().int().nonnegative(),
  /** The watermark: the newest message id folded into this summary. */
  covers_through_id: z.string().regex(MESSAGE_ID_PATTERN),
  /** Messages folded into this summary over its lifetime. */
  message_count_covered: z.number().int().nonnegative(),
  /** ISO-8601 time of the last update. */
  updated_at: z.iso.datetime({ offset: true }),
});

/** A rolling summary (see {@link SummarySchema}). */
export type Summary = z.output<typeof SummarySchema>;
