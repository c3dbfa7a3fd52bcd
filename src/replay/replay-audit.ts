/**
 * `memq audit`: an independent check of what a replay left in Redis, reading the source corpus
 * again (issue 9). It reads Redis directly (not through MemoryStore), recounts tokens with
 * js-tiktoken (memq counts with gpt-tokenizer), and finds personal data with its own regular
 * expressions (memq redacts with RE2 patterns), so a bug in memq's own code cannot hide itself.
 *
 * For every thread of the slice it checks that each accepted message is in the log or at/below
 * the summary's watermark, none twice, in the source's order, stored as the privacy policy would
 * store it; that `message_count` and `token_count` equal a recount from scratch (and nothing is
 * left uncounted); and, over every key under the memq and BullMQ prefixes, that no original
 * e-mail address or phone number from the source appears anywhere.
 */
import { Cluster, type Redis } from 'ioredis';
import type { RedisConnection } from '../redis/connection.js';
import { Tiktoken, type TiktokenBPE } from 'js-tiktoken/lite';
import type { MemoryRegistry } from '../config/load-memories.js';
import { applyPrivacy } from '../core/privacy.js';
import { localEncodingFor, TOKENS_PER_MESSAGE, TOKENS_PER_NAME } from '../core/token-counter.js';
import type { EncodingName } from '../core/token-counter.js';
import { memoryKeys, type MemoryRef } from '../redis/keys.js';
import { buildConversations } from './corpus.js';
import { replayMessageIds } from './replay.js';

/** What {@link runAudit} checks. */
export interface AuditOptions {
  /** Memory resource the replay wrote to, e.g. `customer-support`. */
  readonly memory: string;
  /** Project the replay wrote as. */
  readonly project: string;
  /** Corpus groups, as given to the replay; default the replay's default. */
  readonly groups?: readonly string[];
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
 * Audits a replay's memories against the source corpus.
 * @throws MemoryNotFoundError for an undeclared memory; the Redis client's errors.
 */
export async function runAudit(deps: AuditDeps, options: AuditOptions): Promise<AuditReport> {
  const resource = deps.registry.get(options.memory);
  const encoding = localEncodingFor(resource.tokenProvider.provider, resource.tokenProvider.model);
  const encoder = new Tiktoken(await ranks[encoding]());
  const count = (text: string) => encoder.encode(text, [], []).length;
  const { conversations } = await buildConversations({
    ...(options.groups ? { groups: options.groups } : {}),
    ...(options.limit !== undefined ? { limit: options.limit } : {}),
  });
  const violations: AuditViolation[] = [];
  const originals = new Map<string, string>(); // original -> id of a message that held it
  let messages = 0;
  let folded = 0;
  let checked = 0;

  for (const conversation of conversations) {
    const where = conversation.threadId;
    const ref: MemoryRef = { project: options.project, resource: options.memory, key: where };
    const keys = memoryKeys(deps.keyPrefix, ref);
    const ids = replayMessageIds(conversation);
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
      const { kept } = applyPrivacy(resource.privacyPolicy, [source]);
      const expected = kept[0];
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
      let stored: { id?: string; role?: string; content?: string } | undefined;
      try {
        stored = body === undefined ? undefined : (JSON.parse(body) as typeof stored);
      } catch {
        stored = undefined;
      }
      if (
        !stored ||
        stored.id !== id ||
        stored.role !== expected.role ||
        stored.content !== expected.content
      ) {
        violations.push({
          kind: 'content',
          where,
          detail: `message ${id} is not stored as the privacy policy stores its source`,
        });
      }
    }
    for (const id of new Set([...Object.keys(bodies), ...Object.keys(tok)])) {
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
        TOKENS_PER_MESSAGE +
        count(message.role) +
        count(message.content) +
        (message.name !== undefined ? count(message.name) + TOKENS_PER_NAME : 0);
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
