/**
 * Mapping between LangChain.js messages (`@langchain/core/messages`) and memq messages
 * (`MessageInputSchema`, src/core/message.ts), both ways. memq stores text with a role, an
 * optional `name`, `tool_call_id` and flat `metadata`; what else a LangChain message carries is
 * either kept in one of those fields or refused with a {@link PayloadError}, never lost silently
 * (see {@link toMemqMessage}).
 */
import {
  AIMessage,
  HumanMessage,
  SystemMessage,
  ToolMessage,
  type BaseMessage,
  type ToolCall,
} from '@langchain/core/messages';
import { PayloadError } from '../core/errors.js';
import type { Message, MessageInput, Role, Summary } from '../core/message.js';

/**
 * Metadata entry holding an AI message's tool calls as JSON (`[{ id, name, args }]`): memq has no
 * tool-call field, and metadata values are flat strings of at most 4 KiB (`MessageInputSchema`).
 */
export const TOOL_CALLS_METADATA_KEY = 'lc_tool_calls';

/** Metadata entry holding a tool message's `status` (`success` or `error`) when it has one. */
export const TOOL_STATUS_METADATA_KEY = 'lc_tool_status';

/** Longest metadata string memq accepts, characters (`MessageInputSchema`, src/core/message.ts). */
const MAX_METADATA_STRING = 4096;

/**
 * Content block types of an AI message that are dropped rather than refused: `tool_use` /
 * `tool_call` duplicate the message's `tool_calls` (kept in {@link TOOL_CALLS_METADATA_KEY}), and
 * `reasoning` / `thinking` / `redacted_thinking` are the model's own working, not conversation.
 */
const DROPPED_AI_BLOCKS: ReadonlySet<string> = new Set([
  'tool_use',
  'tool_call',
  'reasoning',
  'thinking',
  'redacted_thinking',
]);

/** `ChatMessage.role` values accepted, and the memq role each stands for. */
const CHAT_ROLES: Readonly<Record<string, Role>> = {
  user: 'user',
  human: 'user',
  assistant: 'assistant',
  ai: 'assistant',
  system: 'system',
};

/**
 * The text of `message.content`: a string as it is; an array of content blocks as its text
 * blocks joined without separator (LangChain's `message.text`).
 * @throws PayloadError when the array holds a block memq cannot store as text (image, audio,
 *   file, ...), except the AI-message blocks of {@link DROPPED_AI_BLOCKS}.
 */
function textOf(message: BaseMessage, where: string): string {
  const content: unknown = message.content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) {
    throw new PayloadError(`${where}.content: expected a string or an array of content blocks`, {
      details: { field: `${where}.content` },
    });
  }
  let text = '';
  for (const [i, block] of (content as unknown[]).entries()) {
    if (typeof block === 'string') {
      text += block;
      continue;
    }
    const type = (block as { type?: unknown } | null)?.type;
    if (type === 'text') {
      const value = (block as { text?: unknown }).text;
      text += typeof value === 'string' ? value : '';
      continue;
    }
    if (message.type === 'ai' && typeof type === 'string' && DROPPED_AI_BLOCKS.has(type)) continue;
    throw new PayloadError(
      `${where}.content[${i}]: memq stores text only; a ${JSON.stringify(type ?? typeof block)} content block cannot be stored (keep it elsewhere and store a text reference)`,
      { details: { field: `${where}.content[${i}]` } },
    );
  }
  return text;
}

/** The tool calls of an AI message as {@link TOOL_CALLS_METADATA_KEY} metadata, or nothing. */
function toolCallsMetadata(
  message: BaseMessage,
  where: string,
): Record<string, string> | undefined {
  const calls = (message as AIMessage).tool_calls ?? [];
  if (calls.length === 0) return undefined;
  const json = JSON.stringify(calls.map((c) => ({ id: c.id, name: c.name, args: c.args })));
  if (json.length > MAX_METADATA_STRING) {
    throw new PayloadError(
      `${where}.tool_calls: ${json.length} characters as JSON; memq keeps tool calls in metadata.${TOOL_CALLS_METADATA_KEY}, at most ${MAX_METADATA_STRING} characters`,
      { details: { field: `${where}.tool_calls` } },
    );
  }
  return { [TOOL_CALLS_METADATA_KEY]: json };
}

/**
 * A LangChain message as the memq message to append. `HumanMessage` -> `user`, `AIMessage` ->
 * `assistant` (its `tool_calls` as JSON in `metadata.lc_tool_calls`), `SystemMessage` ->
 * `system`, `ToolMessage` -> `tool` with its `tool_call_id`, `ChatMessage` by its role (`user`,
 * `human`, `assistant`, `ai`, `system`). `name` is kept; `id`, `additional_kwargs`,
 * `response_metadata`, `usage_metadata` and a tool message's `artifact` are not
 * stored (memq assigns its own ULID ids). Content must be text or text blocks (see `textOf`).
 * @param where Names the message in errors, e.g. `messages[2]`.
 * @throws PayloadError, naming the field (`<where>.<field>`), for a message type memq has no
 *   role for (function, remove, a `ChatMessage` with another role), non-text content, tool calls
 *   longer than 4 KiB as JSON, an AI message with `invalid_tool_calls` (tool calls LangChain could
 *   not parse: memq has no field for them, so they are refused rather than dropped), or a
 *   `ToolMessage` whose `tool_call_id` is empty. The other field limits (`name` 1-64 characters,
 *   `tool_call_id` at most 256, content 4 Mi) are checked by memq's own validation when the
 *   message is appended.
 */
export function toMemqMessage(message: BaseMessage, where = 'message'): MessageInput {
  const type = message.type;
  let role: Role;
  let extra: Pick<MessageInput, 'tool_call_id' | 'metadata'> = {};
  switch (type) {
    case 'human':
      role = 'user';
      break;
    case 'ai': {
      role = 'assistant';
      const invalid = (message as AIMessage).invalid_tool_calls ?? [];
      if (invalid.length > 0) {
        throw new PayloadError(
          `${where}.invalid_tool_calls: ${invalid.length} tool call(s) the model produced but LangChain could not parse; memq does not store them and will not drop them silently (repair them into tool_calls, or remove them, before storing the message)`,
          { details: { field: `${where}.invalid_tool_calls` } },
        );
      }
      const metadata = toolCallsMetadata(message, where);
      if (metadata) extra = { metadata };
      break;
    }
    case 'system':
      role = 'system';
      break;
    case 'tool': {
      role = 'tool';
      const { tool_call_id, status } = message as ToolMessage;
      if (typeof tool_call_id !== 'string' || tool_call_id === '') {
        throw new PayloadError(
          `${where}.tool_call_id: expected the id of the tool call this message answers (1-256 characters), got ${JSON.stringify(tool_call_id ?? null)}`,
          { details: { field: `${where}.tool_call_id` } },
        );
      }
      extra = {
        tool_call_id,
        ...(status !== undefined ? { metadata: { [TOOL_STATUS_METADATA_KEY]: status } } : {}),
      };
      break;
    }
    case 'generic': {
      const chatRole = (message as BaseMessage & { role?: unknown }).role;
      const mapped = typeof chatRole === 'string' ? CHAT_ROLES[chatRole] : undefined;
      if (mapped === undefined) {
        throw new PayloadError(
          `${where}: a ChatMessage with role ${JSON.stringify(chatRole)} has no memq role; expected one of ${Object.keys(CHAT_ROLES).join(', ')} (use ToolMessage for tool results)`,
          { details: { field: `${where}.role` } },
        );
      }
      role = mapped;
      break;
    }
    default:
      throw new PayloadError(
        `${where}: a ${JSON.stringify(type)} message has no memq role; memq stores human, ai, system and tool messages (use ToolMessage for function results)`,
        { details: { field: `${where}.type` } },
      );
  }
  return {
    role,
    content: textOf(message, where),
    ...(message.name !== undefined && message.name !== '' ? { name: message.name } : {}),
    ...extra,
  };
}

/** The tool calls kept in `metadata.lc_tool_calls`, or none when absent or not a valid list. */
function toolCallsOf(message: Message): ToolCall[] {
  const json = message.metadata?.[TOOL_CALLS_METADATA_KEY];
  if (typeof json !== 'string') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return []; // a redact pattern may have rewritten the JSON; the text content still stands
  }
  if (!Array.isArray(parsed)) return [];
  const calls: ToolCall[] = [];
  for (const item of parsed as unknown[]) {
    const { id, name, args } = (item ?? {}) as { id?: unknown; name?: unknown; args?: unknown };
    if (typeof name !== 'string' || args === null || typeof args !== 'object') continue;
    calls.push({
      type: 'tool_call',
      name,
      args: args as Record<string, unknown>,
      ...(typeof id === 'string' ? { id } : {}),
    });
  }
  return calls;
}

/**
 * A stored memq message as a LangChain message: `user` -> `HumanMessage`, `assistant` ->
 * `AIMessage` (tool calls from `metadata.lc_tool_calls`), `system` -> `SystemMessage`, `tool` ->
 * `ToolMessage` (`tool_call_id` as stored, `''` when the message has none; `status` from
 * `metadata.lc_tool_status`). The LangChain `id` is
 * memq's message id (a ULID); `name` is kept.
 */
export function fromMemqMessage(message: Message): BaseMessage {
  const common = {
    // OpenAI-format parts are LangChain content blocks as they are; null (an assistant message
    // with tool calls only) is LangChain's empty string.
    content: (message.content ?? '') as string,
    id: message.id,
    ...(message.name !== undefined ? { name: message.name } : {}),
  };
  switch (message.role) {
    case 'user':
      return new HumanMessage(common);
    case 'assistant': {
      const toolCalls = toolCallsOf(message);
      return new AIMessage(toolCalls.length > 0 ? { ...common, tool_calls: toolCalls } : common);
    }
    case 'system':
    case 'developer':
      return new SystemMessage(common);
    case 'tool': {
      const status = message.metadata?.[TOOL_STATUS_METADATA_KEY];
      return new ToolMessage({
        ...common,
        tool_call_id: message.tool_call_id ?? '',
        ...(status === 'success' || status === 'error' ? { status } : {}),
      });
    }
  }
}

/**
 * memq's rolling summary as the leading `SystemMessage` of a history: `content` is the summary
 * text; `response_metadata.memq_summary` holds `covers_through_id` (the watermark),
 * `message_count_covered` and `updated_at`, so callers can tell it from a stored system message.
 * It has no `id` (the summary is not a message of the log).
 */
export function summaryMessage(summary: Summary): SystemMessage {
  return new SystemMessage({
    content: summary.content,
    response_metadata: {
      memq_summary: {
        covers_through_id: summary.covers_through_id,
        message_count_covered: summary.message_count_covered,
        updated_at: summary.updated_at,
      },
    },
  });
}
