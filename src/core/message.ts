import { z } from 'zod';

/**
 * Message roles, as in the OpenAI chat format (https://platform.openai.com/docs/api-reference/chat/create):
 * `developer` is the newer name of `system` for instructions (OpenAI's o-series models); both are
 * pinned (never evicted or folded by a flush). `tool` carries a tool result and names the call it
 * answers in `tool_call_id`.
 */
export const ROLES = ['system', 'developer', 'user', 'assistant', 'tool'] as const;

/** One of {@link ROLES}. */
export type Role = (typeof ROLES)[number];

/** Roles a flush never evicts or folds and a context read always keeps: instructions. */
export const PINNED_ROLES: ReadonlySet<Role> = new Set(['system', 'developer']);

/**
 * Message ids are ULIDs (26 Crockford base32 characters, 48-bit millisecond time + 80 bits of
 * randomness, https://github.com/ulid/spec). They sort lexicographically in creation order, and
 * the log's order is the order of ids, so concurrent workers cannot reorder a conversation.
 */
export const MESSAGE_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/**
 * Longest message content, in UTF-16 characters: 4 Mi (4,194,304), for a string and for the sum
 * of a message's text parts, image URLs and tool-call arguments. The bound on what one message
 * costs the pipeline: redaction is linear time (RE2) at about 0.5 s per MiB for text dense with
 * matches under every detector (bench:privacy, worst case), so at most ~2 s per message.
 */
export const MAX_CONTENT_CHARS = 4 * 2 ** 20;

/** Most content parts in one message. */
export const MAX_CONTENT_PARTS = 256;

/** Most tool calls in one assistant message (OpenAI's parallel tool calls). */
export const MAX_TOOL_CALLS = 128;

/** Longest tool-call id (`tool_calls[].id`, `tool_call_id`), characters. */
export const MAX_TOOL_CALL_ID_CHARS = 256;

/** Metadata values: JSON scalars only, so metadata never nests unbounded structures. */
const MetadataValueSchema = z.union([z.string().max(4096), z.number(), z.boolean(), z.null()]);

/** A text part of a message's content (OpenAI `{type: 'text', text}`). */
export const TextPartSchema = z.strictObject({
  /** Always `text`. */
  type: z.literal('text'),
  /** The text; may be empty. */
  text: z
    .string()
    .max(MAX_CONTENT_CHARS, { error: `expected at most ${MAX_CONTENT_CHARS} characters` }),
});

/** Image detail levels of OpenAI's vision input; `auto` lets the model choose. */
export const IMAGE_DETAILS = ['auto', 'low', 'high'] as const;

/**
 * An image part (OpenAI `{type: 'image_url', image_url: {url, detail?}}`): memq stores the URL
 * (an `https:` URL or a `data:` URL) as given and never fetches it.
 */
export const ImagePartSchema = z.strictObject({
  /** Always `image_url`. */
  type: z.literal('image_url'),
  /** The image reference. */
  image_url: z.strictObject({
    /** `https://...` or `data:image/...;base64,...`; 1..{@link MAX_CONTENT_CHARS} characters. */
    url: z
      .string()
      .min(1)
      .max(MAX_CONTENT_CHARS, { error: `expected at most ${MAX_CONTENT_CHARS} characters` }),
    /** One of {@link IMAGE_DETAILS}; absent means `auto`. */
    detail: z.enum(IMAGE_DETAILS).optional(),
  }),
});

/** One part of a message's content: text or an image. */
export const ContentPartSchema = z.discriminatedUnion('type', [TextPartSchema, ImagePartSchema]);

/** A content part (see {@link ContentPartSchema}). */
export type ContentPart = z.output<typeof ContentPartSchema>;

/**
 * A message's content: a string, a list of parts (at most {@link MAX_CONTENT_PARTS}), or `null`
 * (only on an assistant message that carries `tool_calls`).
 */
export const ContentSchema = z
  .union([
    z
      .string()
      .max(MAX_CONTENT_CHARS, { error: `expected at most ${MAX_CONTENT_CHARS} characters` }),
    z
      .array(ContentPartSchema)
      .max(MAX_CONTENT_PARTS, { error: `expected at most ${MAX_CONTENT_PARTS} parts` }),
  ])
  .nullable();

/** A message's content (see {@link ContentSchema}). */
export type Content = z.output<typeof ContentSchema>;

/**
 * One tool call of an assistant message (OpenAI `tool_calls[]`):
 * `{id, type: 'function', function: {name, arguments}}`.
 */
export const ToolCallSchema = z.strictObject({
  /** The call's id, answered by a `tool` message's `tool_call_id`; 1..256 characters. */
  id: z.string().min(1).max(MAX_TOOL_CALL_ID_CHARS),
  /** Always `function`. */
  type: z.literal('function'),
  /** The function called. */
  function: z.strictObject({
    /** Function name, 1..256 characters. */
    name: z.string().min(1).max(256),
    /**
     * The arguments as the model wrote them: JSON text, stored as given (not parsed, not
     * checked: models sometimes emit invalid JSON, and the caller decides what to do with it).
     */
    arguments: z
      .string()
      .max(MAX_CONTENT_CHARS, { error: `expected at most ${MAX_CONTENT_CHARS} characters` }),
  }),
});

/** A tool call (see {@link ToolCallSchema}). */
export type ToolCall = z.output<typeof ToolCallSchema>;

/**
 * Per-message privacy instructions of a producer (the engine memq succeeds calls this
 * `AppendWithPrivacy`). Applied by the producer before anything is enqueued and never stored.
 */
export const MessagePrivacySchema = z.strictObject({
  /**
   * True: the message is not stored, not enqueued and not logged; the append's receipt counts it
   * (`not_persisted`). Default false.
   */
  do_not_persist: z.boolean().optional(),
  /**
   * Metadata field names whose values are replaced by the policy's replacement (the redaction
   * string, a mask or a pseudonym) whatever the patterns say; a name the message does not carry is
   * ignored. At most 32 names of at most 128 characters. Default none.
   */
  redact_fields: z.array(z.string().min(1).max(128)).max(32).optional(),
});

/** Per-message privacy instructions (see {@link MessagePrivacySchema}). */
export type MessagePrivacy = z.output<typeof MessagePrivacySchema>;

/** The fields every message has, as submitted and as stored (the checks across fields are apart). */
const messageFields = {
  /** Who spoke; one of {@link ROLES}. */
  role: z.enum(ROLES),
  /**
   * A string, a list of parts, or null (assistant with `tool_calls` only); see
   * {@link ContentSchema}. At most {@link MAX_CONTENT_CHARS} characters in all. An empty string is
   * allowed (a role-only message still costs tokens).
   */
  content: ContentSchema,
  /** Optional participant name (OpenAI `name`), 1-64 characters. */
  name: z.string().min(1).max(64).optional(),
  /**
   * Assistant messages only: the tools the model called, 1..{@link MAX_TOOL_CALLS} with distinct
   * ids.
   */
  tool_calls: z.array(ToolCallSchema).min(1).max(MAX_TOOL_CALLS).optional(),
  /**
   * `tool` messages: the id of the tool call this message answers (required on a submitted tool
   * message; stored messages from before tool calls were modelled may lack it). Not checked
   * against the stored calls: appends commit concurrently and in id order, not commit order, so a
   * result may commit before its call (docs/decisions.md, "Messages").
   */
  tool_call_id: z.string().min(1).max(MAX_TOOL_CALL_ID_CHARS).optional(),
  /** Free-form flat metadata (at most 32 entries, string values up to 4 KiB). */
  metadata: z
    .record(z.string().max(128), MetadataValueSchema)
    .refine((m) => Object.keys(m).length <= 32, 'at most 32 metadata entries')
    .optional(),
  /** ISO-8601 creation time. Default: when the producer accepted it. */
  created_at: z.iso.datetime({ offset: true }).optional(),
};

/** The characters a message's content, image URLs and tool-call arguments hold, in all. */
export function contentChars(message: {
  readonly content: Content;
  readonly tool_calls?: readonly ToolCall[] | undefined;
}): number {
  const { content } = message;
  let chars = 0;
  if (typeof content === 'string') chars = content.length;
  else if (content) {
    for (const part of content)
      chars += part.type === 'text' ? part.text.length : part.image_url.url.length;
  }
  for (const call of message.tool_calls ?? []) chars += call.function.arguments.length;
  return chars;
}

/**
 * The text of a message's content: a string as it is, the text parts joined with a newline (image
 * parts left out), `''` for null.
 */
export function contentText(content: Content): string {
  if (typeof content === 'string') return content;
  if (!content) return '';
  return content
    .filter((p) => p.type === 'text')
    .map((p) => p.text)
    .join('\n');
}

/** The checks across fields, shared by the submitted and the stored shape. */
function checkShape(
  m: z.output<z.ZodObject<typeof messageFields>>,
  ctx: z.core.$RefinementCtx,
  submitted: boolean,
): void {
  const issue = (path: PropertyKey[], message: string) =>
    ctx.addIssue({ code: 'custom', path, message });
  if (m.tool_calls !== undefined) {
    if (m.role !== 'assistant')
      issue(
        ['tool_calls'],
        `tool_calls: only an assistant message carries tool calls (role is ${m.role})`,
      );
    const seen = new Set<string>();
    m.tool_calls.forEach((call, i) => {
      if (seen.has(call.id))
        issue(
          ['tool_calls', i, 'id'],
          `duplicate tool call id in one message (tool_calls.${i}.id equals an earlier call's)`,
        );
      seen.add(call.id);
    });
  }
  if (m.content === null && !(m.role === 'assistant' && m.tool_calls !== undefined)) {
    issue(
      ['content'],
      'content: null only on an assistant message with tool_calls; expected a string or a list of parts',
    );
  }
  if (
    submitted &&
    m.role !== 'user' &&
    Array.isArray(m.content) &&
    m.content.some((part) => part.type === 'image_url')
  ) {
    issue(
      ['content'],
      `content: image parts only on a user message (role is ${m.role}); the chat APIs refuse them elsewhere`,
    );
  }
  if (m.tool_call_id !== undefined && m.role !== 'tool') {
    issue(['tool_call_id'], `tool_call_id: only a tool message answers a call (role is ${m.role})`);
  }
  if (submitted && m.role === 'tool' && m.tool_call_id === undefined) {
    issue(['tool_call_id'], 'tool_call_id: a tool message must name the call it answers');
  }
  if (contentChars(m) > MAX_CONTENT_CHARS) {
    issue(
      ['content'],
      `content: expected at most ${MAX_CONTENT_CHARS} characters in all (text, image URLs, tool-call arguments)`,
    );
  }
}

/**
 * A message as a producer submits it. `id` and `created_at` are assigned by the client when
 * absent; `privacy` is applied by the producer and never stored. Unknown fields are rejected.
 */
export const MessageInputSchema = z
  .strictObject({
    /** ULID; see {@link MESSAGE_ID_PATTERN}. Default: assigned by the producer (monotonic). */
    id: z
      .string()
      .regex(MESSAGE_ID_PATTERN, 'expected a ULID (26 Crockford base32 characters)')
      .optional(),
    ...messageFields,
    /** Per-message privacy instructions; see {@link MessagePrivacySchema}. Never stored. */
    privacy: MessagePrivacySchema.optional(),
  })
  .superRefine((m, ctx) => checkShape(m, ctx, true));

/** A message as submitted (see {@link MessageInputSchema}). */
export type MessageInput = z.input<typeof MessageInputSchema>;

/**
 * A message as stored and returned: `id` and `created_at` always present, no `privacy`. Messages
 * stored before content parts and tool calls existed (string content) are valid as they are.
 */
export const MessageSchema = z
  .strictObject({
    ...messageFields,
    /** ULID; see {@link MESSAGE_ID_PATTERN}. */
    id: z.string().regex(MESSAGE_ID_PATTERN, 'expected a ULID (26 Crockford base32 characters)'),
    /** ISO-8601 creation time. */
    created_at: z.iso.datetime({ offset: true }),
  })
  .superRefine((m, ctx) => checkShape(m, ctx, false));

/** A stored message (see {@link MessageSchema}). */
export type Message = z.output<typeof MessageSchema>;

/** The fields {@link toolUnits} reads of a message. */
export interface UnitMessage {
  /** The role. */
  readonly role: Role;
  /** The calls of an assistant message. */
  readonly tool_calls?: readonly { readonly id: string }[] | undefined;
  /** The call a tool message answers. */
  readonly tool_call_id?: string | undefined;
}

/** One unit of {@link toolUnits}: items that are kept, removed or sent together. */
export interface ToolUnit<T> {
  /** The items, in the order given (a contiguous run of the input). */
  readonly items: T[];
  /**
   * Ids of calls made in this unit that no item of the input answers: their results are later
   * than the input (a page of the log) or were never stored.
   */
  readonly unanswered: readonly string[];
}

/**
 * Which call each tool result answers: for each index of a `tool` message with a `tool_call_id`,
 * the index of the nearest assistant message before it holding that call id. A result with no
 * such call before it (its call was dropped by a policy, evicted, or is beyond a partial read) is
 * absent: it never claims a later call, which may be a new turn still waiting for its own result.
 * Matching the nearest earlier call keeps ids that a model reuses across turns (`call_0` every
 * turn) from tying every turn together. O(n log n).
 * @param messageOf How to read an item's message.
 */
export function matchToolResults<T>(
  items: readonly T[],
  messageOf: (item: T) => UnitMessage,
): Map<number, number> {
  /** Call id -> indices of the assistant messages holding it, ascending. */
  const callsAt = new Map<string, number[]>();
  items.forEach((item, i) => {
    const m = messageOf(item);
    if (m.role !== 'assistant') return;
    for (const call of m.tool_calls ?? []) {
      const at = callsAt.get(call.id);
      if (at === undefined) callsAt.set(call.id, [i]);
      else if (at[at.length - 1] !== i) at.push(i);
    }
  });
  const owner = new Map<number, number>();
  items.forEach((item, i) => {
    const m = messageOf(item);
    if (m.role !== 'tool' || m.tool_call_id === undefined) return;
    const at = callsAt.get(m.tool_call_id);
    if (at === undefined) return;
    // The last call index < i (binary search).
    let lo = 0;
    let hi = at.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (at[mid]! < i) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) owner.set(i, at[lo - 1]!);
  });
  return owner;
}

/**
 * Splits a conversation, in log order, into the units a flush or a context read may not split: an
 * assistant message with tool calls, every tool message answering one of its calls (matched by
 * id, not by position: {@link matchToolResults}), and everything between them; runs that overlap
 * are one unit. Every other message is a unit of its own, and so is a tool result whose call is
 * not in the input or comes after it. Pure, O(n log n).
 * @param messageOf How to read an item's message (identity for messages).
 */
export function toolUnits<T>(
  items: readonly T[],
  messageOf: (item: T) => UnitMessage,
): ToolUnit<T>[] {
  /** The last index a unit starting at each index must reach. */
  const reach = items.map((_, i) => i);
  /** `<call index> <call id>` of every answered call. */
  const answered = new Set<string>();
  for (const [result, call] of matchToolResults(items, messageOf)) {
    answered.add(`${call} ${messageOf(items[result]!).tool_call_id}`);
    reach[call] = Math.max(reach[call]!, result);
  }
  const units: ToolUnit<T>[] = [];
  for (let i = 0; i < items.length;) {
    let end = reach[i]!;
    for (let j = i + 1; j <= end; j++) end = Math.max(end, reach[j]!);
    const unanswered: string[] = [];
    for (let j = i; j <= end; j++) {
      const m = messageOf(items[j]!);
      if (m.role === 'assistant')
        for (const call of m.tool_calls ?? [])
          if (!answered.has(`${j} ${call.id}`)) unanswered.push(call.id);
    }
    units.push({ items: items.slice(i, end + 1), unanswered });
    i = end + 1;
  }
  return units;
}

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
