/**
 * `memq audit`: an independent check of what a replay left in Redis, reading the source again
 * with its own redactor and token counter, independent of memq's privacy and id code.
 *
 * For every thread of the slice it checks that each accepted message is in the log or at/below
 * the summary's watermark, none twice, in the source's order, stored as the privacy policy should
 * store it (every field: id, role, content, metadata keys and values, created_at, and nothing
 * else); that `message_count` and `token_count` equal a recount from scratch (and nothing is left
 * uncounted); and, over every key under the memq and BullMQ prefixes, that no original e-mail
 * address or phone number from the source appears anywhere.
 *
 * Computed here, not taken from memq:
 * - what the policy should leave of each field: `audit-redactor.ts` (JavaScript RegExp, the RE2
 *   patterns translated, the detectors restated; memq uses re2js and src/core/privacy.ts);
 * - message ids: {@link auditMessageIds} implements the rule documented on `replayMessageIds`
 *   (src/replay/replay.ts) from that description;
 * - key names: {@link auditKeys}, from docs/storage.md's key table;
 * - token counts: its own byte-pair encoder (`audit-tokens.ts`) over js-tiktoken's rank files
 *   (memq counts with gpt-tokenizer), with the chat framing of OpenAI's cookbook ("How to count
 *   tokens with tiktoken": 3 tokens per message, 1 more for a name);
 * - personal data: its own JavaScript patterns over every stored value.
 *
 * Still shared with memq, and why:
 * - the source: loading, parsing, quote stripping and threading (corpus.ts, mail-sources.ts,
 *   quoted-text.ts). The audit checks what memq stored against what the replay meant to send;
 *   deciding what an e-mail says is the replay's job, not memq's, and a second parser would audit
 *   the parsers rather than memq. A defect there (an e-mail lost before it is sent) is invisible.
 * - the memory resource as memq's loader resolves it (patterns, detectors, action, redaction
 *   string, non-persistable roles, hash key variable, model): the audit checks that memq applies
 *   its configuration, not that the configuration says what the operator meant.
 * - the storage format (the fields of a stored message and of `meta`): it is what is audited.
 *
 * Assumed of the privacy policy: it applies to `content`, `name`, `tool_call_id`, metadata keys
 * and metadata string values; `id`, `role` and `created_at` are stored as sent. The replay sends
 * only `role`, `content`, `metadata` (strings only: subject, date, message_id, thread_id,
 * corpus_id), `id` and `created_at` (the e-mail's Date when usable, else the producer's clock).
 */
import { createHash } from 'node:crypto';
import { Cluster, type Redis } from 'ioredis';
import type { RedisConnection } from '../redis/connection.js';
import { getEncodingNameForModel, type TiktokenBPE } from 'js-tiktoken/lite';
import { createTokenCount } from './audit-tokens.js';
import type { MemoryRegistry } from '../config/load-memories.js';
import { compileAuditPolicy, redactText, type AuditRedactor } from './audit-redactor.js';
import {
  buildConversations,
  sourceOptions,
  type Conversation,
  type ReplayMessage,
} from './corpus.js';

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
  /** Message cap, as given to the replay; default all. */
  readonly limit?: number;
  /** Called after each 100 threads checked (progress on long audits). */
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
] as const;

/** One thing the audit found wrong. Never carries message content or the personal data itself. */
export interface AuditViolation {
  /** What is wrong (see {@link AUDIT_VIOLATION_KINDS}). */
  readonly kind: (typeof AUDIT_VIOLATION_KINDS)[number];
  /** The thread key (`thread:<hex>`), or the Redis key for `personal_data`. */
  readonly where: string;
  /** Ids, counts and expectations; no content. */
  readonly detail: string;
}

/** Outcome of {@link runAudit}. */
export interface AuditReport {
  /** Thread memories checked. */
  readonly memories: number;
  /** Accepted source messages checked. */
  readonly messages: number;
  /** Messages found folded into summaries (at/below a watermark). */
  readonly folded: number;
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
 * Chat framing of OpenAI's cookbook "How to count tokens with tiktoken" (`num_tokens_from_messages`,
 * gpt-4o / gpt-4 family): every message costs 3 tokens on top of its role and content, and a
 * `name` costs 1 more on top of its own tokens.
 */
const FRAME_TOKENS_PER_MESSAGE = 3;
/** See {@link FRAME_TOKENS_PER_MESSAGE}. */
const FRAME_TOKENS_PER_NAME = 1;

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
 * What the policy should store of `message`, or undefined when it should not be stored (a
 * non-persistable role, or a match under action `drop`).
 */
function expectedMessage(
  redactor: AuditRedactor,
  message: ReplayMessage & { name?: string; tool_call_id?: string },
): Record<string, unknown> | undefined {
  if (redactor.nonPersistable.has(message.role)) return undefined;
  let matches = 0;
  const redact = (text: string): string => {
    const result = redactText(redactor, text);
    matches += result.matches;
    return result.text;
  };
  const expected: Record<string, unknown> = {
    role: message.role,
    content: redact(message.content),
  };
  if (message.name !== undefined) expected.name = redact(message.name);
  if (message.tool_call_id !== undefined) expected.tool_call_id = redact(message.tool_call_id);
  expected.metadata = Object.fromEntries(
    Object.entries(message.metadata as Record<string, unknown>).map(([key, value]) => [
      redact(key),
      typeof value === 'string' ? redact(value) : value,
    ]),
  );
  return redactor.drops && matches > 0 ? undefined : expected;
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
    if (field === 'metadata') {
      const have = stored.metadata;
      const want = value as Record<string, unknown>;
      const same =
        typeof have === 'object' &&
        have !== null &&
        Object.keys(have).length === Object.keys(want).length &&
        Object.entries(want).every(([k, v]) => (have as Record<string, unknown>)[k] === v);
      if (!same) differs.push('metadata');
    } else if (stored[field] !== value) differs.push(field);
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

/**
 * Audits a replay's memories against the source.
 * @throws MemoryNotFoundError for an undeclared memory; AuditPolicyError when the audit cannot
 *   check the memory's privacy policy (before reading Redis); PayloadError as the replay's
 *   source options do; the Redis client's errors.
 */
export async function runAudit(deps: AuditDeps, options: AuditOptions): Promise<AuditReport> {
  const resource = deps.registry.get(options.memory);
  const policy = resource.privacyPolicy;
  const redactor = compileAuditPolicy(
    policy ?? { redactPatterns: [], nonPersistableMessageTypes: [], defaultRedactionString: '' },
    deps.env,
  );
  const count = createTokenCount(await ranks[auditEncoding(resource.tokenProvider.model)]());
  const { conversations } = await buildConversations(sourceOptions(options));
  const violations: AuditViolation[] = [];
  const originals = new Map<string, string>(); // original -> id of a message that held it
  let messages = 0;
  let folded = 0;
  let checked = 0;

  for (const conversation of conversations) {
    const where = conversation.threadId;
    const keys = auditKeys(deps.keyPrefix, options.project, options.memory, where);
    const ids = auditMessageIds(conversation);
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
    let lastPosition = -1;
    for (const [index, source] of conversation.messages.entries()) {
      for (const text of [source.content, ...Object.values(source.metadata).map(String)]) {
        for (const found of [...(text.match(EMAIL) ?? []), ...(text.match(PHONE) ?? [])]) {
          if (!originals.has(found)) originals.set(found, ids[index]!);
        }
      }
      const expected = expectedMessage(redactor, source);
      if (!expected) continue; // not accepted: the policy drops it
      const id = ids[index]!;
      expectedIds.add(id);
      messages += 1;
      const at = position.get(id);
      if (at === undefined) {
        if (watermark !== '' && id <= watermark) folded += 1;
        else
          violations.push({
            kind: 'missing',
            where,
            detail: `message ${id} is neither in the log nor at/below the watermark`,
          });
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
          ? differingFields(stored as Record<string, unknown>, expected, id, source.metadata.date)
          : ['the whole message (no parseable body)'];
      if (differs.length > 0) {
        violations.push({
          kind: 'content',
          where,
          detail: `message ${id}: ${differs.join(', ')} not as the privacy policy should store the source`,
        });
      }
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
          detail: `message ${id} in the log is not from this thread's source`,
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
      const message = bodies[id]
        ? (JSON.parse(bodies[id]) as { role: string; content: string; name?: string })
        : undefined;
      if (!message) continue;
      const tokens =
        FRAME_TOKENS_PER_MESSAGE +
        count(message.role) +
        count(message.content) +
        (message.name !== undefined ? count(message.name) + FRAME_TOKENS_PER_NAME : 0);
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
    if (checked % 100 === 0) options.onProgress?.(checked, conversations.length);
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
  options.onProgress?.(conversations.length, conversations.length);
  return {
    memories: conversations.length,
    messages,
    folded,
    keysScanned,
    originals: originals.size,
    violations,
  };
}

/** The audit's last line: `audit: <memories> memories, <messages> messages, <n> violations`. */
export function auditSummaryLine(report: AuditReport): string {
  return `audit: ${report.memories} memories, ${report.messages} messages, ${report.violations.length} violations`;
}
