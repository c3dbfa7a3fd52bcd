/**
 * Mapping between LangChain.js messages (`@langchain/core/messages`) and memq messages
 * (`MessageInputSchema`, src/core/message.ts), both ways, without loss: roles, `name`, content
 * (text and image parts), an AI message's tool calls (arguments text kept as written) and a tool
 * message's `tool_call_id` and `status`. What a LangChain message carries beyond that is either
 * documented as not stored or refused with a {@link PayloadError}, never lost silently (see
 * {@link toMemqMessage}).
 */
import {
  AIMessage,
  HumanMessage,
  SystemMessage,
  ToolMessage,
  type BaseMessage,
  type InvalidToolCall,
  type ToolCall as LangChainToolCall,
} from '@langchain/core/messages';
import { PayloadError } from '../core/errors.js';
import {
  IMAGE_DETAILS,
  type ContentPart,
  type Message,
  type MessageInput,
  type Role,
  type Summary,
  type ToolCall,
} from '../core/message.js';

/**
 * Metadata entry where messages stored before memq modelled tool calls hold an AI message's tool
 * calls as JSON (`[{ id, name, args }]`). Read only: {@link fromMemqMessage} restores them when the
 * message has no `tool_calls`; {@link toMemqMessage} writes `tool_calls`.
 */
export const TOOL_CALLS_METADATA_KEY = 'lc_tool_calls';

/** Metadata entry holding a tool message's `status` (`success` or `error`) when it has one. */
export const TOOL_STATUS_METADATA_KEY = 'lc_tool_status';

/**
 * The `additional_kwargs` entry LangChain uses to mark a `SystemMessage` as OpenAI's `developer`
 * role (`coerceMessageLikeToMessage` in @langchain/core builds `["developer", ...]` that way, and
 * @langchain/openai reads a streamed `developer` delta into it).
 */
export const OPENAI_ROLE_KWARG = '__openai_role__';

/** The `error` of an invalid tool call {@link fromMemqMessage} makes of unparseable arguments. */
export const UNPARSEABLE_ARGUMENTS_ERROR = 'memq: the arguments are not a JSON object';

/**
 * Content block types of an AI message that are dropped rather than refused: `tool_use` /
 * `tool_call` duplicate the message's `tool_calls` (stored as memq `tool_calls`), and
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
  developer: 'developer',
};

/** A {@link PayloadError} naming `field`. */
const refuse = (field: string, message: string) =>
  new PayloadError(`${field}: ${message}`, { details: { field } });

/**
 * `message.content` as memq content: a string as it is; an array of blocks as a list of parts, in
 * order: a string or `{type: 'text', text}` block -> a text part (other fields of the block, such
 * as Anthropic's `cache_control`, are not stored); an OpenAI-style `{type: 'image_url',
 * image_url: url | {url, detail?}}` block -> an image part (`detail` one of `auto`, `low`,
 * `high`). An AI message's {@link DROPPED_AI_BLOCKS} are left out.
 * @throws PayloadError for any other block (image in another format, audio, file, ...), an image
 *   block without a URL or with another `detail`, naming `<where>.content[<i>]`.
 */
function contentOf(message: BaseMessage, where: string): string | ContentPart[] {
  const content: unknown = message.content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) {
    throw refuse(`${where}.content`, 'expected a string or an array of content blocks');
  }
  const parts: ContentPart[] = [];
  for (const [i, block] of (content as unknown[]).entries()) {
    const field = `${where}.content[${i}]`;
    if (typeof block === 'string') {
      parts.push({ type: 'text', text: block });
      continue;
    }
    const type = (block as { type?: unknown } | null)?.type;
    if (type === 'text') {
      const text = (block as { text?: unknown }).text;
      if (typeof text !== 'string') throw refuse(`${field}.text`, 'expected a string');
      parts.push({ type: 'text', text });
      continue;
    }
    if (type === 'image_url') {
      parts.push(imagePartOf((block as { image_url?: unknown }).image_url, `${field}.image_url`));
      continue;
    }
    if (message.type === 'ai' && typeof type === 'string' && DROPPED_AI_BLOCKS.has(type)) continue;
    throw refuse(
      field,
      `memq stores text and OpenAI-style image_url blocks; a ${JSON.stringify(type ?? typeof block)} content block cannot be stored (keep it elsewhere and store a text reference, or send an image as {type: "image_url", image_url: {url}})`,
    );
  }
  return parts;
}

/** An `image_url` block's value (a URL string or `{url, detail?}`) as a memq image part. */
function imagePartOf(value: unknown, field: string): ContentPart {
  const { url, detail } = (typeof value === 'string' ? { url: value } : (value ?? {})) as {
    url?: unknown;
    detail?: unknown;
  };
  if (typeof url !== 'string' || url === '') {
    throw refuse(`${field}.url`, 'expected the image URL (https: or data:), a non-empty string');
  }
  if (detail !== undefined && !(IMAGE_DETAILS as readonly unknown[]).includes(detail)) {
    throw refuse(
      `${field}.detail`,
      `expected one of ${IMAGE_DETAILS.join(', ')}, got ${JSON.stringify(detail)}`,
    );
  }
  return {
    type: 'image_url',
    image_url: {
      url,
      ...(detail !== undefined ? { detail: detail as (typeof IMAGE_DETAILS)[number] } : {}),
    },
  };
}

/** True when `a` and `b` are the same JSON value (object keys in any order). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every(
    (k) =>
      Object.prototype.hasOwnProperty.call(b, k) &&
      sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]),
  );
}

/** `additional_kwargs.tool_calls` of a message, the OpenAI-format calls by id (ill-formed ones ignored). */
function rawCallsOf(message: BaseMessage): Map<string, { name: unknown; arguments: unknown }> {
  const raw = (message.additional_kwargs as { tool_calls?: unknown } | undefined)?.tool_calls;
  const byId = new Map<string, { name: unknown; arguments: unknown }>();
  if (!Array.isArray(raw)) return byId;
  for (const call of raw as unknown[]) {
    const { id, function: fn } = (call ?? {}) as { id?: unknown; function?: unknown };
    if (typeof id !== 'string' || fn === null || typeof fn !== 'object') continue;
    const { name, arguments: args } = fn as { name?: unknown; arguments?: unknown };
    byId.set(id, { name, arguments: args });
  }
  return byId;
}

/**
 * An AI message's `tool_calls` and `invalid_tool_calls` as memq tool calls
 * (`{id, type: 'function', function: {name, arguments}}`): a parsed call's `arguments` is the
 * text in `additional_kwargs.tool_calls` for the same id when that text still parses to the same
 * `args` (so the model's own text, spacing included, survives a round trip), else
 * `JSON.stringify(args)`; an invalid call's `arguments` is its unparsed `args` text (`''` when
 * absent). Order: that of `additional_kwargs.tool_calls` when it lists exactly these ids, else the
 * parsed calls, then the invalid ones. Undefined when there are none.
 * @throws PayloadError naming `<where>.tool_calls[<i>]` / `<where>.invalid_tool_calls[<i>]` for a
 *   call without an id (a tool result names its call by id) or a name, or with `args` that are
 *   not JSON (a BigInt, a cycle).
 */
function toolCallsOf(message: AIMessage, where: string): ToolCall[] | undefined {
  const raw = rawCallsOf(message);
  const calls: ToolCall[] = [];
  const need = (value: unknown, field: string, what: string): string => {
    if (typeof value !== 'string' || value === '') throw refuse(field, what);
    return value;
  };
  for (const [i, call] of (message.tool_calls ?? ([] as LangChainToolCall[])).entries()) {
    const field = `${where}.tool_calls[${i}]`;
    const id = need(
      call.id,
      `${field}.id`,
      'expected the call id (a tool result names its call by it)',
    );
    const name = need(call.name, `${field}.name`, 'expected the function name');
    const text = raw.get(id)?.arguments;
    let args: string;
    if (typeof text === 'string' && parsesTo(text, call.args)) args = text;
    else {
      try {
        args = JSON.stringify(call.args ?? {});
      } catch (error) {
        throw refuse(
          `${field}.args`,
          `not JSON-serialisable (${error instanceof Error ? error.message : String(error)})`,
        );
      }
    }
    calls.push({ id, type: 'function', function: { name, arguments: args } });
  }
  for (const [i, call] of (message.invalid_tool_calls ?? ([] as InvalidToolCall[])).entries()) {
    const field = `${where}.invalid_tool_calls[${i}]`;
    const id = need(
      call.id,
      `${field}.id`,
      'expected the call id (memq stores a call with unparseable arguments as written, but needs its id)',
    );
    const name = need(call.name, `${field}.name`, 'expected the function name');
    calls.push({ id, type: 'function', function: { name, arguments: call.args ?? '' } });
  }
  if (calls.length === 0) return undefined;
  const order = [...raw.keys()];
  if (order.length === calls.length && calls.every((c) => raw.has(c.id))) {
    const at = new Map(order.map((id, i) => [id, i]));
    calls.sort((a, b) => at.get(a.id)! - at.get(b.id)!);
  }
  return calls;
}

/** True when `text` is JSON whose value is `args`. */
function parsesTo(text: string, args: unknown): boolean {
  try {
    return sameJson(JSON.parse(text), args);
  } catch {
    return false;
  }
}

/**
 * A LangChain message as the memq message to append:
 * - `HumanMessage` -> `user`; `SystemMessage` -> `system`, or `developer` when
 *   `additional_kwargs.__openai_role__` is `developer` ({@link OPENAI_ROLE_KWARG});
 *   `ChatMessage` by its role (`user`, `human`, `assistant`, `ai`, `system`, `developer`);
 * - `AIMessage` -> `assistant` with its `tool_calls` and `invalid_tool_calls` as memq `tool_calls`
 *   (see `toolCallsOf`: `{id, name, args}` -> `{id, type: 'function', function: {name,
 *   arguments}}`); with calls, empty content (`''` or no blocks left) is stored as `null`, as
 *   OpenAI returns a tool-call-only message;
 * - `ToolMessage` -> `tool` with its `tool_call_id` (`status` in `metadata.lc_tool_status`).
 * Content: see `contentOf` (text and OpenAI-style image blocks, as parts). `name` is kept; `id`,
 * the rest of `additional_kwargs`, `response_metadata`, `usage_metadata` and a tool message's
 * `artifact` are not stored (memq assigns its own ULID ids).
 * @param where Names the message in errors, e.g. `messages[2]`.
 * @throws PayloadError, naming the field (`<where>.<field>`), for a message type memq has no role
 *   for (function, remove, a `ChatMessage` with another role), a content block memq does not
 *   store, a tool call without id or name, or a `ToolMessage` whose `tool_call_id` is empty. The
 *   other limits (`name` 1-64 characters, ids at most 256, content 4 Mi, 256 parts, 128 calls)
 *   are checked by memq's own validation when the message is appended.
 */
export function toMemqMessage(message: BaseMessage, where = 'message'): MessageInput {
  const type = message.type;
  let role: Role;
  let extra: Pick<MessageInput, 'tool_call_id' | 'metadata' | 'tool_calls'> = {};
  let content: MessageInput['content'] = contentOf(message, where);
  switch (type) {
    case 'human':
      role = 'user';
      break;
    case 'ai': {
      role = 'assistant';
      const calls = toolCallsOf(message as AIMessage, where);
      if (calls) {
        extra = { tool_calls: calls };
        if (content === '' || (Array.isArray(content) && content.length === 0)) content = null;
      }
      break;
    }
    case 'system':
      role =
        (message.additional_kwargs as Record<string, unknown> | undefined)?.[OPENAI_ROLE_KWARG] ===
        'developer'
          ? 'developer'
          : 'system';
      break;
    case 'tool': {
      role = 'tool';
      const { tool_call_id, status } = message as ToolMessage;
      if (typeof tool_call_id !== 'string' || tool_call_id === '') {
        throw refuse(
          `${where}.tool_call_id`,
          `expected the id of the tool call this message answers (1-256 characters), got ${JSON.stringify(tool_call_id ?? null)}`,
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
    content,
    ...(message.name !== undefined && message.name !== '' ? { name: message.name } : {}),
    ...extra,
  };
}

/**
 * The tool calls of a message stored before memq modelled them, from `metadata.lc_tool_calls`, as
 * LangChain tool calls, as that message's writer gave them; none when absent, not a valid list (a
 * redact pattern may have rewritten the JSON; the text content still stands), or a call lacks a
 * name or object `args`.
 */
function legacyToolCalls(message: Message): LangChainToolCall[] {
  const json = message.metadata?.[TOOL_CALLS_METADATA_KEY];
  if (typeof json !== 'string') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  const calls: LangChainToolCall[] = [];
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
 * A stored memq message as a LangChain message: `user` -> `HumanMessage`; `assistant` ->
 * `AIMessage`; `system` -> `SystemMessage`; `developer` -> `SystemMessage` with
 * `additional_kwargs.__openai_role__: 'developer'`; `tool` -> `ToolMessage` (`tool_call_id` as
 * stored, `''` when the message has none; `status` from `metadata.lc_tool_status`). Content: a
 * string as it is, parts as LangChain blocks of the same shape (`{type: 'text', text}`,
 * `{type: 'image_url', image_url: {url, detail?}}`), `null` as `''`. An assistant's tool calls
 * (`tool_calls`, or for older messages `metadata.lc_tool_calls`): arguments that parse to a JSON
 * object -> `tool_calls` (`{id, name, args, type: 'tool_call'}`), others -> `invalid_tool_calls`
 * (`args` the text, `error` {@link UNPARSEABLE_ARGUMENTS_ERROR}); when some call parses, the calls
 * as stored are also in `additional_kwargs.tool_calls` (OpenAI's format, as @langchain/openai sets
 * it), which keeps their arguments text and order for {@link toMemqMessage}. The LangChain `id` is memq's message
 * id (a ULID); `name` is kept.
 */
export function fromMemqMessage(message: Message): BaseMessage {
  const { content } = message;
  const common = {
    content:
      content === null
        ? ''
        : typeof content === 'string'
          ? content
          : content.map((part) =>
              part.type === 'text'
                ? { type: 'text' as const, text: part.text }
                : { type: 'image_url' as const, image_url: { ...part.image_url } },
            ),
    id: message.id,
    ...(message.name !== undefined ? { name: message.name } : {}),
  };
  switch (message.role) {
    case 'user':
      return new HumanMessage(common);
    case 'assistant': {
      if (message.tool_calls === undefined) {
        const legacy = legacyToolCalls(message);
        return new AIMessage(legacy.length > 0 ? { ...common, tool_calls: legacy } : common);
      }
      const toolCalls: LangChainToolCall[] = [];
      const invalid: InvalidToolCall[] = [];
      for (const call of message.tool_calls) {
        const { name, arguments: text } = call.function;
        let args: unknown;
        try {
          args = JSON.parse(text);
        } catch {
          args = undefined;
        }
        if (args !== null && typeof args === 'object' && !Array.isArray(args)) {
          toolCalls.push({
            type: 'tool_call',
            id: call.id,
            name,
            args: args as Record<string, unknown>,
          });
        } else {
          invalid.push({
            type: 'invalid_tool_call',
            id: call.id,
            name,
            args: text,
            error: UNPARSEABLE_ARGUMENTS_ERROR,
          });
        }
      }
      return new AIMessage({
        ...common,
        tool_calls: toolCalls,
        invalid_tool_calls: invalid,
        // Without a parsed call, the invalid ones hold their text and order themselves (and
        // LangChain warns of "new packages" when raw calls come without parsed ones).
        ...(toolCalls.length > 0
          ? {
              additional_kwargs: {
                tool_calls: message.tool_calls.map((c) => ({
                  id: c.id,
                  type: 'function' as const,
                  function: { name: c.function.name, arguments: c.function.arguments },
                })),
              },
            }
          : {}),
      });
    }
    case 'system':
      return new SystemMessage(common);
    case 'developer':
      return new SystemMessage({
        ...common,
        additional_kwargs: { [OPENAI_ROLE_KWARG]: 'developer' },
      });
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
