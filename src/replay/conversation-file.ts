/**
 * The replay's second source besides e-mail: a file of scripted agent conversations
 * (`memq replay --conversations FILE`, `memq audit --conversations FILE`).
 *
 * The file is one JSON array; each element is one conversation, `{"key": <instance key>,
 * "messages": [<message>, ...]}`, and each message is what a producer submits
 * (`MessageInputSchema`, src/core/message.ts): roles `system`, `developer`, `user`, `assistant`,
 * `tool`; content a string, a list of text and image parts, or null beside `tool_calls`;
 * `tool_call_id`; `name`; `metadata`; `created_at`; `privacy`; optionally `id`. The whole file is
 * read and validated before the replay enqueues anything, so a bad file changes nothing.
 */
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { PayloadError } from '../core/errors.js';
import { MEMORY_KEY_PATTERN } from '../core/memory-key.js';
import { MessageInputSchema, type MessageInput } from '../core/message.js';

/**
 * Largest conversations file, bytes: 64 MiB. The file is read and parsed whole (validation comes
 * before the first enqueue), and a JSON value in V8 takes several times its text, so this bounds
 * the replay's memory at a few hundred MiB; split a larger script into several files.
 */
export const MAX_CONVERSATION_FILE_BYTES = 64 * 2 ** 20;

/** One scripted conversation: the messages one memory instance receives, in order. */
export interface ScriptedConversation {
  /** The instance key the conversation is appended to (`MEMORY_KEY_PATTERN`, not `__`-bounded). */
  readonly key: string;
  /**
   * The messages as the file holds them (each valid under `MessageInputSchema`), in append order.
   * Either every message has an `id` (then ascending) or none has.
   */
  readonly messages: readonly MessageInput[];
}

/** Counts of one {@link loadConversationFile} call. */
export interface ConversationFileStats {
  /** Conversations in the file. */
  readonly conversationsRead: number;
  /** Conversations kept (after the `limit`). */
  readonly conversations: number;
  /** Messages kept (after the `limit`). */
  readonly messages: number;
}

/** A conversation of the file, before the checks across messages. */
const ConversationSchema = z.strictObject({
  /** Instance key; see {@link ScriptedConversation.key}. */
  key: z
    .string()
    .regex(MEMORY_KEY_PATTERN, 'expected 1-256 characters of letters, digits, _ : - @ .')
    .refine((k) => !k.startsWith('__') && !k.endsWith('__'), 'must not start or end with "__"'),
  /** At least one message. */
  messages: z.array(MessageInputSchema).min(1, 'expected at least one message'),
});

/** `a.b[2].c` from a zod issue path. */
function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(the conversation)' : out;
}

/** The PayloadError of a bad file: `--conversations FILE: conversation I: FIELD: problem`. */
function fileError(file: string, conversation: number | undefined, field: string, problem: string) {
  const where = conversation === undefined ? '' : ` conversation ${conversation}:`;
  return new PayloadError(`--conversations ${file}:${where} ${field}: ${problem}`, {
    details: {
      option: '--conversations',
      path: file,
      ...(conversation !== undefined ? { conversation } : {}),
      field,
    },
  });
}

/**
 * Reads and validates a conversations file, then keeps whole conversations in file order up to
 * `limit` messages (the last one cut to hit the cap exactly), as the e-mail sources do.
 *
 * Checked, in this order, before anything is returned: the file exists, is a file and is at most
 * {@link MAX_CONVERSATION_FILE_BYTES}; it is valid JSON; its value is a non-empty array; every
 * element is `{key, messages}` with a valid instance key and at least one message valid under
 * `MessageInputSchema` (unknown fields refused at every level); no key appears twice; in each
 * conversation either every message has an `id` or none has, and given ids ascend strictly
 * (the log is ordered by id, so other ids would store the conversation in another order).
 * @param file Path of the file.
 * @param options `limit`: cap on messages kept, an integer >= 1; default all.
 * @throws PayloadError naming the file, the conversation index (0-based) and the field
 *   (`messages[3].tool_calls[0].id`), for the first problem found (up to 5 schema issues of that
 *   conversation), or for a `limit` that is not an integer >= 1.
 */
export function loadConversationFile(
  file: string,
  options: { readonly limit?: number } = {},
): { conversations: ScriptedConversation[]; stats: ConversationFileStats } {
  const { limit } = options;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw new PayloadError(`replay source: limit: expected an integer >= 1, got ${limit}`, {
      details: { field: 'limit', value: limit },
    });
  }
  let size: number;
  try {
    const stats = statSync(file);
    if (!stats.isFile())
      throw fileError(file, undefined, '(the file)', 'expected a JSON file, found a folder');
    size = stats.size;
  } catch (error) {
    if (error instanceof PayloadError) throw error;
    throw fileError(file, undefined, '(the file)', 'expected a JSON file, found nothing there');
  }
  if (size > MAX_CONVERSATION_FILE_BYTES) {
    throw fileError(
      file,
      undefined,
      '(the file)',
      `${size} bytes, over the ${MAX_CONVERSATION_FILE_BYTES}-byte limit; split it into several files`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw fileError(
      file,
      undefined,
      '(the file)',
      `not valid JSON (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  if (!Array.isArray(value) || value.length === 0) {
    throw fileError(
      file,
      undefined,
      '(the file)',
      'expected a non-empty JSON array of conversations {"key": ..., "messages": [...]}',
    );
  }
  const all: ScriptedConversation[] = [];
  const keys = new Map<string, number>();
  for (const [index, element] of (value as unknown[]).entries()) {
    const parsed = ConversationSchema.safeParse(element);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 5);
      const first = issues[0]!;
      const more = issues
        .slice(1)
        .map((issue) => `; ${pathText(issue.path)}: ${issue.message}`)
        .join('');
      throw fileError(file, index, pathText(first.path), `${first.message}${more}`);
    }
    // The elements as read (not zod's copies): the replay sends them, and their JSON text is
    // part of the derived ids.
    const conversation = element as ScriptedConversation;
    const seen = keys.get(conversation.key);
    if (seen !== undefined) {
      throw fileError(
        file,
        index,
        'key',
        `${JSON.stringify(conversation.key)} is also the key of conversation ${seen}; one conversation per instance`,
      );
    }
    keys.set(conversation.key, index);
    const withIds = conversation.messages.filter((m) => m.id !== undefined).length;
    if (withIds !== 0 && withIds !== conversation.messages.length) {
      const at = conversation.messages.findIndex((m) => m.id === undefined);
      throw fileError(
        file,
        index,
        `messages[${at}].id`,
        'either every message of a conversation has an id or none has (the replay derives them)',
      );
    }
    for (let i = 1; i < conversation.messages.length && withIds > 0; i++) {
      if (conversation.messages[i]!.id! <= conversation.messages[i - 1]!.id!) {
        throw fileError(
          file,
          index,
          `messages[${i}].id`,
          `expected an id above messages[${i - 1}].id (the log is ordered by id)`,
        );
      }
    }
    all.push(conversation);
  }
  const kept: ScriptedConversation[] = [];
  let messages = 0;
  const cap = limit ?? Number.POSITIVE_INFINITY;
  for (const conversation of all) {
    if (messages >= cap) break;
    const slice = conversation.messages.slice(0, cap - messages);
    kept.push(
      slice.length === conversation.messages.length
        ? conversation
        : { key: conversation.key, messages: slice },
    );
    messages += slice.length;
  }
  return {
    conversations: kept,
    stats: { conversationsRead: all.length, conversations: kept.length, messages },
  };
}
