/**
 * `memq audit`: an independent check of what a replay left in Redis, reading the source again
 * with its own redactor and token counter, independent of memq's privacy, id and tool-call code.
 *
 * For every memory of the slice (an e-mail thread, or a conversation of a conversations file) it
 * checks that each accepted message is in the log, folded into the summary (at/below the
 * watermark) or evicted (counted in `evicted_count`), none twice, in the source's order, stored as
 * the privacy policy should store it (every field: id, role, content with its parts, name,
 * tool_calls, tool_call_id, metadata keys and values, created_at, and nothing else); that a
 * message marked `privacy.do_not_persist` is stored nowhere; that no tool call is in the log
 * without each of its accepted results, and no result without its call (see
 * {@link toolPairViolations}); that `message_count` and `token_count` equal a recount from
 * scratch (and nothing is left uncounted) and the messages missing from the log are as many as
 * `folded_count + evicted_count`; and, over every key under the memq and BullMQ prefixes, that no
 * original e-mail address or phone number from the source appears anywhere.
 *
 * Computed here, not taken from memq:
 * - what the policy should leave of each field: `audit-redactor.ts` (JavaScript RegExp, the RE2
 *   patterns translated, the detectors restated; memq uses re2js and src/core/privacy.ts);
 * - message ids: {@link auditMessageIds} and {@link auditScriptedIds} implement the rules
 *   documented on `replayMessageIds` and `scriptedMessageIds` (src/replay/replay.ts) from those
 *   descriptions;
 * - key names: {@link auditKeys}, from docs/storage.md's key table;
 * - token counts: `audit-tokens.ts` (`createMessageCount`), its own byte-pair encoder over
 *   js-tiktoken's rank files (memq counts with gpt-tokenizer) and its own restatement of the
 *   counting rules (chat framing, text parts, images, tool calls, tool_call_id);
 * - which tool results belong to which call: restated in {@link toolPairViolations} (memq's
 *   `toolUnits`, src/core/message.ts, is not used);
 * - personal data: its own JavaScript patterns over every stored value.
 *
 * Still shared with memq, and why:
 * - the source: loading, parsing, quote stripping and threading of e-mail (corpus.ts,
 *   mail-sources.ts, quoted-text.ts), and reading and validating a conversations file
 *   (conversation-file.ts, with memq's `MessageInputSchema`). The audit checks what memq stored
 *   against what the replay meant to send; deciding what the source says is the replay's job,
 *   not memq's, and a second parser would audit the parsers rather than memq. A defect there
 *   (a message lost before it is sent) is invisible.
 * - the memory resource as memq's loader resolves it (patterns, detectors, action, redaction
 *   string, non-persistable roles, hash key variable, model): the audit checks that memq applies
 *   its configuration, not that the configuration says what the operator meant.
 * - the storage format (the fields of a stored message and of `meta`): it is what is audited.
 *
 * What the privacy policy should leave of each message is `expectStored` (audit-redactor.ts),
 * restated from the documented rules of memq's policy: `privacy.do_not_persist` and
 * non-persistable roles are not stored, `privacy.redact_fields` replace whole metadata values,
 * every other string at any depth is redacted except the schema's own names and values,
 * tool-call arguments are redacted as JSON leaves when they parse and then as text, `id`, `role` and `created_at`
 * are stored as sent and `privacy` never. The e-mail replay sends only `role`, `content`,
 * `metadata` (strings only: subject, date, message_id, thread_id, corpus_id), `id` and
 * `created_at` (the e-mail's Date when usable, else the producer's clock); a conversations file
 * sends its messages as written, with the replay's ids.
 */
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { Cluster, type Redis } from 'ioredis';
import type { RedisConnection } from '../redis/connection.js';
import { getEncodingNameForModel, type TiktokenBPE } from 'js-tiktoken/lite';
import { createMessageCount, type AuditMessage } from './audit-tokens.js';
import type { MemoryRegistry } from '../config/load-memories.js';
import {
  compileAuditPolicy,
  expectStored,
  redactText,
  type AuditRedactor,
  type AuditSubmittedMessage,
} from './audit-redactor.js';
import {
  buildConversations,
  requireOneSource,
  sourceOptions,
  type Conversation,
} from './corpus.js';
import { loadConversationFile, type ScriptedConversation } from './conversation-file.js';

/** What {@link runAudit} checks. */
export interface AuditOptions {
  /** Memory resource the replay wrote to, e.g. `customer-support`. */
  readonly memory: string;
  /** Project the replay wrote as. */
  readonly project: string;
  /** Corpus groups, as given to the replay; default the replay's default. */
  readonly groups?: readonly string[];
  /** The replay's mbox file, when it replayed one. */
  readonly mbox?: string;
  /** The replay's `.eml` folder, when it replayed one. */
  readonly eml?: string;
  /** The replay's conversations file, when it replayed one (src/replay/conversation-file.ts). */
  readonly conversations?: string;
  /** Message cap, as given to the replay; default all. */
  readonly limit?: number;
  /** Called after each 100 memories checked (progress on long audits). */
  readonly onProgress?: (checked: number, total: number) => void;
}

/** Where {@link runAudit} reads. */
export interface AuditDeps {
  /** A connection to the Redis the replay wrote to. */
  readonly redis: RedisConnection;
  /** memq key prefix, e.g. `memq:`. */
  readonly keyPrefix: string;
  /** BullMQ prefix, e.g. `{memq}`. */
  readonly queuePrefix: string;
  /** Declared resources (the memory's privacy policy and model). */
  readonly registry: MemoryRegistry;
  /**
   * Where a `hash` policy's key is read (the variable the policy names): `process.env`, passed by
   * the CLI, or a plain record in tests.
   */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Kinds of violation. */
export const AUDIT_VIOLATION_KINDS = [
  'missing',
  'duplicate',
  'order',
  'content',
  'unexpected',
  'uncounted',
  'message_count',
  'token_count',
  'personal_data',
  'tool_pairing',
] as const;

/** One thing the audit found wrong. Never carries message content or the personal data itself. */
export interface AuditViolation {
  /** What is wrong (see {@link AUDIT_VIOLATION_KINDS}). */
  readonly kind: (typeof AUDIT_VIOLATION_KINDS)[number];
  /**
   * The memory's key (`thread:<hex>` for e-mail, the conversation's `key`), or the Redis key for
   * `personal_data`.
   */
  readonly where: string;
  /** Ids, counts and expectations; no content. */
  readonly detail: string;
}

/** Outcome of {@link runAudit}. */
export interface AuditReport {
  /** Memories checked (threads, or conversations). */
  readonly memories: number;
  /** Accepted source messages checked. */
  readonly messages: number;
  /** Messages found folded into summaries (absent from the log, at/below a watermark). */
  readonly folded: number;
  /**
   * Messages found evicted (absent from the log, above the watermark, within the instance's
   * `evicted_count`). `messages = in the log + folded + evicted` when nothing is missing.
   */
  readonly evicted: number;
  /** Source messages marked `privacy.do_not_persist`, checked to be stored nowhere. */
  readonly notPersisted: number;
  /** Tool calls of accepted assistant messages checked against their results. */
  readonly toolCalls: number;
  /** Redis keys scanned for personal data. */
  readonly keysScanned: number;
  /** Original e-mail addresses and phone numbers searched for. */
  readonly originals: number;
  /** Everything found wrong. */
  readonly violations: readonly AuditViolation[];
}

/**
 * The audit's own personal-data patterns: independent of the privacy policy's RE2 patterns (these
 * are JavaScript regular expressions, written separately), so they catch a policy that misses.
 */
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
const PHONE = /\+\d{1,3}[\s.-]?\(?\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4}\b/g;

/**
 * Every e-mail-shaped substring of one {@link EMAIL} match: an original glued to other address
 * characters (`Xjohn@example.com`, `john@example.com.evil`) is still in the value, but the greedy
 * match is longer than the original. Starts at each local-part character, ends at the end or
 * before each `.` of the domain: O(length^2) per match, and matches are short.
 */
function embeddedAddresses(match: string): string[] {
  const at = match.indexOf('@');
  const ends = [match.length];
  for (let i = match.length - 1; i > at; i--) if (match[i] === '.') ends.push(i);
  const out: string[] = [];
  for (let start = 0; start < at; start++)
    for (const end of ends) out.push(match.slice(start, end));
  return out;
}

/** BPE encodings js-tiktoken ships. */
type EncodingName = 'o200k_base' | 'cl100k_base' | 'p50k_base' | 'p50k_edit' | 'r50k_base' | 'gpt2';

/**
 * Model-name prefixes of dated or variant models js-tiktoken's exact table may not list, from
 * openai/tiktoken `tiktoken/model.py` (`MODEL_PREFIX_TO_ENCODING`); longest prefix wins.
 */
const PREFIX_ENCODINGS: ReadonlyArray<readonly [string, EncodingName]> = [
  ['chatgpt-4o-', 'o200k_base'],
  ['gpt-4o-', 'o200k_base'],
  ['gpt-4.1-', 'o200k_base'],
  ['gpt-4.5-', 'o200k_base'],
  ['gpt-5-', 'o200k_base'],
  ['o1-', 'o200k_base'],
  ['o3-', 'o200k_base'],
  ['o4-', 'o200k_base'],
  ['gpt-4-', 'cl100k_base'],
  ['gpt-3.5-turbo-', 'cl100k_base'],
  ['gpt-35-turbo-', 'cl100k_base'],
];

/**
 * The encoding to recount with: js-tiktoken's table for the model, else the longest matching
 * {@link PREFIX_ENCODINGS} entry, else (a model no OpenAI table knows, e.g. a Claude model)
 * `o200k_base`, the encoding memq documents for counting such models locally. Remote counts
 * (Anthropic's or Google's counting APIs) cannot be recounted: they show as `token_count`.
 */
function auditEncoding(model: string): EncodingName {
  try {
    return getEncodingNameForModel(model as Parameters<typeof getEncodingNameForModel>[0]);
  } catch {
    const prefix = PREFIX_ENCODINGS.filter(([p]) => model.startsWith(p)).sort(
      (a, b) => b[0].length - a[0].length,
    )[0];
    return prefix?.[1] ?? 'o200k_base';
  }
}

/** Crockford's base32 digits, the ULID alphabet (https://github.com/ulid/spec). */
const BASE32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** Base time of a thread without a usable date: 2002-01-01T00:00:00.000Z. */
const UNDATED_MS = Date.UTC(2002, 0, 1);

/**
 * The ids a replay gives a conversation's messages, by the rule documented on
 * `replayMessageIds` (src/replay/replay.ts): base time T = the first message's (thread order)
 * `metadata.date` that has one, else 2002-01-01T00:00:00Z, also when T + (n - 1) leaves
 * 0 .. 2^48 - 1; message i: 10 base-32 digits of T + i (most significant first), then for
 * k = 0..15 the digit (byte 15 - k of SHA-256(UTF-8 `metadata.message_id`)) mod 32.
 */
export function auditMessageIds(conversation: Conversation): string[] {
  const n = conversation.messages.length;
  let base = UNDATED_MS;
  for (const message of conversation.messages) {
    if (message.metadata.date === undefined) continue;
    const t = new Date(message.metadata.date).getTime();
    if (Number.isNaN(t)) continue;
    if (t >= 0 && t + n - 1 <= 2 ** 48 - 1) base = t;
    break;
  }
  return conversation.messages.map((message, i) => {
    const digits: string[] = [];
    let t = BigInt(base + i);
    for (let k = 0; k < 10; k++) {
      digits.unshift(BASE32[Number(t % 32n)]!);
      t /= 32n;
    }
    const digest = createHash('sha256').update(message.metadata.message_id, 'utf8').digest();
    for (let k = 0; k < 16; k++) digits.push(BASE32[digest[15 - k]! % 32]!);
    return digits.join('');
  });
}

/** Base time of a scripted conversation without a usable `created_at`: 2025-01-01T00:00:00.000Z. */
const UNDATED_SCRIPT_MS = Date.UTC(2025, 0, 1);

/**
 * The ids a replay gives a scripted conversation's messages, by the rule documented on
 * `scriptedMessageIds` (src/replay/replay.ts): the messages' own ids when they all have one;
 * otherwise base time T = the first message's (file order) `created_at` that has one, else
 * 2025-01-01T00:00:00Z, also when T + (n - 1) leaves 0 .. 2^48 - 1; message i: 10 base-32 digits
 * of T + i (most significant first), then for k = 0..15 the digit (byte 15 - k of
 * SHA-256(UTF-8 `JSON.stringify([key, i, message])`)) mod 32.
 */
export function auditScriptedIds(conversation: ScriptedConversation): string[] {
  const { messages, key } = conversation;
  const given = messages.map((m) => m.id);
  if (given.length > 0 && given.every((id) => id !== undefined)) return given;
  const n = messages.length;
  let base = UNDATED_SCRIPT_MS;
  for (const message of messages) {
    if (message.created_at === undefined) continue;
    const t = new Date(message.created_at).getTime();
    if (Number.isNaN(t)) continue;
    if (t >= 0 && t + n - 1 <= 2 ** 48 - 1) base = t;
    break;
  }
  return messages.map((message, i) => {
    const digits: string[] = [];
    let t = BigInt(base + i);
    for (let k = 0; k < 10; k++) {
      digits.unshift(BASE32[Number(t % 32n)]!);
      t /= 32n;
    }
    const digest = createHash('sha256')
      .update(JSON.stringify([key, i, message]), 'utf8')
      .digest();
    for (let k = 0; k < 16; k++) digits.push(BASE32[digest[15 - k]! % 32]!);
    return digits.join('');
  });
}

/**
 * Key names of one memory instance, as docs/storage.md lays them out: `<prefix>m:{<mid>}:<family>`
 * where `<mid>` is `<project>/<resource>/<key>` with `%`, `{`, `}` and `/` in each part written
 * as `%` and two uppercase hex digits.
 */
export function auditKeys(
  prefix: string,
  project: string,
  resource: string,
  key: string,
): { ord: string; msg: string; tok: string; unc: string; meta: string } {
  const part = (text: string) =>
    text.replace(
      /[%{}/]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`,
    );
  const base = `${prefix}m:{${[project, resource, key].map(part).join('/')}}:`;
  return {
    ord: `${base}ord`,
    msg: `${base}msg`,
    tok: `${base}tok`,
    unc: `${base}unc`,
    meta: `${base}meta`,
  };
}

/**
 * A source message as the audit reads it: an e-mail turned into a message (role, content,
 * metadata, created_at the e-mail's Date), or a message of a conversations file as written.
 */
export type SourceMessage = AuditSubmittedMessage;

/**
 * What the policy should store of `message` (`expectStored`, audit-redactor.ts: the replay
 * appends one message per call, so each message is a batch of its own), or undefined when it
 * should not be stored: a non-persistable role, `privacy.do_not_persist`, or a match anywhere
 * under action `drop`.
 */
export function expectedMessage(
  redactor: AuditRedactor,
  message: SourceMessage,
): Record<string, unknown> | undefined {
  return expectStored(redactor, [message])[0]!.stored;
}

/** Names of the fields where `stored` differs from `expected` (plus id and created_at). */
function differingFields(
  stored: Record<string, unknown>,
  expected: Record<string, unknown>,
  id: string,
  createdAt: string | undefined,
): string[] {
  const differs: string[] = [];
  if (stored.id !== id) differs.push('id');
  for (const [field, value] of Object.entries(expected)) {
    if (!isDeepStrictEqual(stored[field], value)) differs.push(field);
  }
  const created = stored.created_at;
  if (
    typeof created !== 'string' ||
    Number.isNaN(Date.parse(created)) ||
    (createdAt !== undefined && created !== createdAt)
  ) {
    differs.push('created_at');
  }
  const known = new Set(['id', 'created_at', ...Object.keys(expected)]);
  for (const field of Object.keys(stored))
    if (!known.has(field)) differs.push(`extra field ${field}`);
  return differs;
}

/** The message fields the tool-pairing check reads. */
export interface PairingMessage {
  /** The message id. */
  readonly id: string;
  /** The role. */
  readonly role: string;
  /** Calls of an assistant message (their ids). */
  readonly tool_calls?: readonly { readonly id: string }[] | undefined;
  /** The call a tool message answers. */
  readonly tool_call_id?: string | undefined;
}

/** A tool call and a result that were kept apart (ids and positions only, no content). */
export interface ToolPairViolation {
  /** Id of the assistant message making the call. */
  readonly callMessageId: string;
  /** Index of the call in that message's `tool_calls`. */
  readonly callIndex: number;
  /** Id of the tool message answering it. */
  readonly resultId: string;
  /** Which of the two is in the log. */
  readonly present: 'call' | 'result';
}

/**
 * The audit's tool-call rule, restated (not memq's `toolUnits`): a tool result belongs to the
 * latest accepted assistant message before it in the conversation that made a call with the id its
 * `tool_call_id` names (ids as the source sent them, before the privacy policy); a model may reuse
 * an id in every turn, and each turn's result answers that turn's call. For
 * each such pair, the call's message and the result are both in the log or both out of it (folded
 * or evicted): a call kept without one of its accepted results, or a result kept whose call was
 * removed, is a violation. A result whose call was never accepted, and a call whose results were
 * never accepted, pair with nothing. O(messages + calls).
 * @param accepted The accepted source messages of one memory, in source order.
 * @param present Ids in the memory's log.
 */
export function toolPairViolations(
  accepted: readonly PairingMessage[],
  present: ReadonlySet<string>,
): ToolPairViolation[] {
  /** Call id -> the latest call made with it so far, in conversation order. */
  const latest = new Map<string, { message: string; index: number }>();
  const found: ToolPairViolation[] = [];
  for (const message of accepted) {
    if (message.role === 'assistant') {
      message.tool_calls?.forEach((call, index) => {
        if (latest.get(call.id)?.message !== message.id)
          latest.set(call.id, { message: message.id, index });
      });
      continue;
    }
    if (message.role !== 'tool' || message.tool_call_id === undefined) continue;
    const owner = latest.get(message.tool_call_id);
    for (const call of owner ? [owner] : []) {
      const callIn = present.has(call.message);
      const resultIn = present.has(message.id);
      if (callIn === resultIn) continue;
      found.push({
        callMessageId: call.message,
        callIndex: call.index,
        resultId: message.id,
        present: callIn ? 'call' : 'result',
      });
    }
  }
  return found;
}

const ranks: Record<EncodingName, () => Promise<TiktokenBPE>> = {
  o200k_base: async () => (await import('js-tiktoken/ranks/o200k_base')).default,
  cl100k_base: async () => (await import('js-tiktoken/ranks/cl100k_base')).default,
  p50k_base: async () => (await import('js-tiktoken/ranks/p50k_base')).default,
  p50k_edit: async () => (await import('js-tiktoken/ranks/p50k_edit')).default,
  r50k_base: async () => (await import('js-tiktoken/ranks/r50k_base')).default,
  gpt2: async () => (await import('js-tiktoken/ranks/gpt2')).default,
};

/**
 * Every value under `pattern`, as text (strings, hashes, sets, zsets, lists, streams). On a
 * Redis Cluster every master is scanned (SCAN covers one node).
 */
async function* valuesUnder(
  connection: RedisConnection,
  pattern: string,
): AsyncGenerator<{ key: string; text: string }> {
  const nodes = connection instanceof Cluster ? connection.nodes('master') : [connection];
  for (const node of nodes) yield* nodeValuesUnder(node, connection, pattern);
}

async function* nodeValuesUnder(
  node: Redis,
  redis: RedisConnection,
  pattern: string,
): AsyncGenerator<{ key: string; text: string }> {
  let cursor = '0';
  do {
    const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      let parts: string[] = [];
      if (type === 'string') parts = [(await redis.get(key)) ?? ''];
      else if (type === 'hash') parts = Object.entries(await redis.hgetall(key)).flat();
      else if (type === 'zset') parts = await redis.zrange(key, '0', '-1');
      else if (type === 'set') parts = await redis.smembers(key);
      else if (type === 'list') parts = await redis.lrange(key, '0', '-1');
      else if (type === 'stream') {
        const entries = await redis.xrange(key, '-', '+');
        parts = entries.flatMap(([, fields]) => fields);
      }
      yield { key, text: `${key}\n${parts.join('\n')}` };
    }
  } while (cursor !== '0');
}

/** One memory of the source: its key, its messages in order and their ids. */
interface AuditItem {
  /** The instance key. */
  readonly key: string;
  /** The messages, in source order. */
  readonly messages: readonly SourceMessage[];
  /** Their ids ({@link auditMessageIds} or {@link auditScriptedIds}). */
  readonly ids: readonly string[];
}

/**
 * The source the replay read, as audit items.
 * @throws PayloadError as the replay's source options do.
 */
async function auditSource(options: AuditOptions): Promise<AuditItem[]> {
  const file = options.conversations;
  requireOneSource({
    ...sourceOptions(options),
    ...(file !== undefined ? { conversations: file } : {}),
  });
  if (file !== undefined) {
    const { conversations } = loadConversationFile(
      file,
      options.limit !== undefined ? { limit: options.limit } : {},
    );
    return conversations.map((conversation) => ({
      key: conversation.key,
      messages: conversation.messages,
      ids: auditScriptedIds(conversation),
    }));
  }
  const { conversations } = await buildConversations(sourceOptions(options));
  return conversations.map((conversation) => ({
    key: conversation.threadId,
    messages: conversation.messages.map((m) => ({
      ...m,
      ...(m.metadata.date !== undefined ? { created_at: m.metadata.date } : {}),
    })),
    ids: auditMessageIds(conversation),
  }));
}

/** Every string of `value` at any depth (object keys included). */
function stringsOf(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const item of value) stringsOf(item, out);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      out.push(key);
      stringsOf(item, out);
    }
  }
  return out;
}

/**
 * Audits a replay's memories against the source.
 * @throws MemoryNotFoundError for an undeclared memory; AuditPolicyError when the audit cannot
 *   check the memory's privacy policy (before reading Redis); PayloadError as the replay's
 *   source options do; the Redis client's errors.
 */
export async function runAudit(deps: AuditDeps, options: AuditOptions): Promise<AuditReport> {
  const resource = deps.registry.get(options.memory);
  const policy = resource.privacyPolicy;
  const redactor = compileAuditPolicy(policy, deps.env);
  const count = createMessageCount(await ranks[auditEncoding(resource.tokenProvider.model)]());
  const items = await auditSource(options);
  const violations: AuditViolation[] = [];
  const originals = new Map<string, string>(); // original -> id of a message that held it
  let messages = 0;
  let folded = 0;
  let evicted = 0;
  let notPersisted = 0;
  let toolCalls = 0;
  let checked = 0;

  for (const item of items) {
    const where = item.key;
    const keys = auditKeys(deps.keyPrefix, options.project, options.memory, where);
    const { ids } = item;
    const [ord, bodies, tok, unc, meta] = await Promise.all([
      deps.redis.zrange(keys.ord, '0', '-1'),
      deps.redis.hgetall(keys.msg),
      deps.redis.hgetall(keys.tok),
      deps.redis.zcard(keys.unc),
      deps.redis.hgetall(keys.meta),
    ]);
    const watermark = meta.watermark ?? '';
    const summary = meta.summary ? (JSON.parse(meta.summary) as { tokens?: number }) : undefined;
    const position = new Map(ord.map((id, i) => [id, i]));
    if (position.size !== ord.length) {
      violations.push({ kind: 'duplicate', where, detail: 'an id appears twice in the log' });
    }
    const expectedIds = new Set<string>();
    const accepted: PairingMessage[] = [];
    /** Accepted messages absent from the log and above the watermark: evicted, or lost. */
    const absentAbove: string[] = [];
    let absentBelow = 0;
    let lastPosition = -1;
    for (const [index, source] of item.messages.entries()) {
      const id = ids[index]!;
      for (const text of stringsOf({ ...source, privacy: undefined })) {
        for (const found of [...(text.match(EMAIL) ?? []), ...(text.match(PHONE) ?? [])]) {
          // Only what the policy removes is searched for: without a policy, or with one that
          // leaves addresses or phone numbers alone, storing them is what the resource asks for.
          if (originals.has(found) || redactText(redactor, found).text === found) continue;
          originals.set(found, id);
        }
      }
      const expected = expectedMessage(redactor, source);
      if (!expected) {
        // not accepted: the policy drops it, or the producer must not persist it
        if (source.privacy?.do_not_persist === true) {
          notPersisted += 1;
          if (position.has(id) || bodies[id] !== undefined || tok[id] !== undefined) {
            violations.push({
              kind: 'unexpected',
              where,
              detail: `message ${id} is marked do_not_persist but is stored`,
            });
          }
        }
        continue;
      }
      expectedIds.add(id);
      messages += 1;
      accepted.push({
        id,
        role: source.role,
        tool_calls: source.tool_calls,
        tool_call_id: source.tool_call_id,
      });
      if (source.role === 'assistant') toolCalls += source.tool_calls?.length ?? 0;
      const at = position.get(id);
      if (at === undefined) {
        if (watermark !== '' && id <= watermark) absentBelow += 1;
        else absentAbove.push(id);
        continue;
      }
      if (at < lastPosition) {
        violations.push({
          kind: 'order',
          where,
          detail: `message ${id} is stored before an earlier source message`,
        });
      }
      lastPosition = at;
      const body = bodies[id];
      let stored: unknown;
      try {
        stored = body === undefined ? undefined : JSON.parse(body);
      } catch {
        stored = undefined;
      }
      const differs =
        typeof stored === 'object' && stored !== null
          ? differingFields(stored as Record<string, unknown>, expected, id, source.created_at)
          : ['the whole message (no parseable body)'];
      if (differs.length > 0) {
        violations.push({
          kind: 'content',
          where,
          detail: `message ${id}: ${differs.join(', ')} not as the privacy policy should store the source`,
        });
      }
    }
    // Absent above the watermark: evicted by a flush as long as evicted_count covers them.
    const evictedCount = Number(meta.evicted_count ?? 0);
    if (absentAbove.length > evictedCount) {
      for (const id of absentAbove) {
        violations.push({
          kind: 'missing',
          where,
          detail:
            evictedCount === 0
              ? `message ${id} is neither in the log nor at/below the watermark`
              : `message ${id} is neither in the log nor at/below the watermark, and evicted_count ${evictedCount} does not cover the ${absentAbove.length} such messages`,
        });
      }
    } else evicted += absentAbove.length;
    folded += absentBelow;
    const removed = absentBelow + absentAbove.length;
    const removedCounted = Number(meta.folded_count ?? 0) + evictedCount;
    if (removed !== removedCounted) {
      violations.push({
        kind: 'message_count',
        where,
        detail: `${removed} accepted message(s) are not in the log, folded_count + evicted_count is ${removedCounted}`,
      });
    }
    for (const split of toolPairViolations(accepted, new Set(ord))) {
      violations.push({
        kind: 'tool_pairing',
        where,
        detail:
          split.present === 'call'
            ? `tool call ${split.callIndex} of message ${split.callMessageId} is in the log without its result ${split.resultId}`
            : `result ${split.resultId} is in the log without message ${split.callMessageId}, which made its call (tool call ${split.callIndex})`,
      });
    }
    // `~<id>` fields of `tok` name how an approximate count was made; they are not messages.
    const tokIds = Object.keys(tok).filter((field) => !field.startsWith('~'));
    for (const id of new Set([...Object.keys(bodies), ...tokIds])) {
      if (!position.has(id)) {
        violations.push({
          kind: 'unexpected',
          where,
          detail: `message ${id} has a stored body or token count but is not in the log`,
        });
      }
    }
    for (const id of ord) {
      if (!expectedIds.has(id)) {
        violations.push({
          kind: 'unexpected',
          where,
          detail: `message ${id} in the log is not from this memory's source`,
        });
      }
    }
    if (unc > 0) {
      violations.push({
        kind: 'uncounted',
        where,
        detail: `${unc} message(s) still have no exact token count`,
      });
    }
    if (Number(meta.message_count ?? 0) !== ord.length) {
      violations.push({
        kind: 'message_count',
        where,
        detail: `message_count ${meta.message_count ?? 'absent'}, the log holds ${ord.length}`,
      });
    }
    let recount = summary?.tokens ?? 0;
    for (const id of ord) {
      let tokens: number;
      try {
        const body = bodies[id];
        if (body === undefined) continue;
        tokens = count(JSON.parse(body) as AuditMessage);
      } catch {
        continue; // not a message the audit can read: reported above as a content violation
      }
      recount += tokens;
      if (tok[id] !== undefined && Number(tok[id]) !== tokens) {
        violations.push({
          kind: 'token_count',
          where,
          detail: `message ${id} is counted ${tok[id]} tokens, a recount gives ${tokens}`,
        });
      }
    }
    if (Number(meta.token_count ?? 0) !== recount) {
      violations.push({
        kind: 'token_count',
        where,
        detail: `token_count ${meta.token_count ?? 'absent'}, a recount from scratch gives ${recount}`,
      });
    }
    checked += 1;
    if (checked % 100 === 0) options.onProgress?.(checked, items.length);
  }

  // Every e-mail- or phone-shaped span of every stored value, looked up among the originals:
  // linear in what is stored (a substring search per original would be originals x bytes).
  let keysScanned = 0;
  for (const pattern of [`${deps.keyPrefix}*`, `${deps.queuePrefix}*`]) {
    for await (const { key, text } of valuesUnder(deps.redis, pattern)) {
      keysScanned += 1;
      const seen = new Set<string>();
      for (const found of [
        ...(text.match(EMAIL) ?? []).flatMap(embeddedAddresses),
        ...(text.match(PHONE) ?? []),
      ]) {
        if (seen.has(found) || !originals.has(found)) continue;
        seen.add(found);
        const kind = found.includes('@') ? 'an e-mail address' : 'a phone number';
        violations.push({
          kind: 'personal_data',
          where: key,
          detail: `${kind} from message ${originals.get(found)} is in this key`,
        });
      }
    }
  }
  options.onProgress?.(items.length, items.length);
  return {
    memories: items.length,
    messages,
    folded,
    evicted,
    notPersisted,
    toolCalls,
    keysScanned,
    originals: originals.size,
    violations,
  };
}

/** The audit's last line: `audit: <memories> memories, <messages> messages, <n> violations`. */
export function auditSummaryLine(report: AuditReport): string {
  return `audit: ${report.memories} memories, ${report.messages} messages, ${report.violations.length} violations`;
}
