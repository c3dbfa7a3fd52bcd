/**
 * Removes what a reply repeats or what a mailer appends, so an e-mail body keeps only the words
 * its sender wrote. A heuristic tuned on the SpamAssassin ham corpus (2002 mailing lists:
 * mailman, SourceForge, Yahoo! Groups, Outlook, mutt, Ximian Evolution); each rule below names
 * the pattern it removes and every rule has a table test in `test/unit/replay/quoted-text.test.ts`.
 */

/**
 * A quoted line: `>` after optional whitespace, at any depth (`>`, `> >`, `>>`, ` > `).
 * Mailbox-escaped `>From ` body lines are quotes by this rule too, which is harmless here.
 */
const QUOTE_LINE = /^\s*>/;

/**
 * The last line of an attribution: `On <date>, <name> wrote:`, `<name> writes:`,
 * `--- In list@yahoogroups.com, "Name" <a@b> wrote:`, `Once upon a time, X wrote :`, also
 * `said:`, `mentioned:`, `posted:`, `says:`, the German `schrieb:` and French `a écrit :`; a `*`
 * before the colon is a mailer's marker for a rewritten address.
 */
const ATTRIBUTION_TAIL =
  /\b(?:wrote|writes|said|says|mentioned|posted|schrieb|a écrit)\s*(?:\*\s*)?:\s*$/i;

/** `Quoting Name <a@b>:` (Horde IMP). */
const ATTRIBUTION_QUOTING = /^\s*Quoting\s.+:\s*$/i;

/** `[Tim]`: the python-dev convention of naming the quoted speaker in brackets. */
const ATTRIBUTION_BRACKETED = /^\s*\[[A-Z][\w .'-]{0,40}\]\s*$/;

/** First line of a two-line attribution (`On Thu, Aug 22, 2002 at 10:01AM, A Person` + `wrote:`). */
const ATTRIBUTION_HEAD = /^\s*(?:On|At|Am|Le)\s/;

/** A mailing-list footer separator: a long rule of `_` or `-` (mailman prints 47 underscores). */
const FOOTER_RULE = /^\s*(?:_{20,}|-{20,})\s*$/;

/**
 * What follows a {@link FOOTER_RULE} within {@link FOOTER_LOOKAHEAD_LINES} non-blank lines when
 * the rule opens a list footer or a free-mail advert, as opposed to a rule inside the text.
 */
const FOOTER_AFTER_RULE =
  /mailing list|listinfo|\(un\)subscription|unsubscribe|sf\.net email is sponsored|Do You Yahoo!\?|Yahoo! Groups/i;

/** Non-blank lines after a {@link FOOTER_RULE} searched for {@link FOOTER_AFTER_RULE}. */
const FOOTER_LOOKAHEAD_LINES = 3;

/** Lines that open a footer on their own, wherever they occur: everything from them on is cut. */
const FOOTER_START = [
  /Yahoo! Groups Sponsor/i,
  /^\s*To unsubscribe from this group, send an email to:/i,
  /^\s*Your use of Yahoo! Groups is subject to/i,
  /^\s*-+\s*You are receiving this mail because:\s*-+\s*$/i,
] as const;

/**
 * A mailman list URL closing the text (FoRK appends `http://xent.com/mailman/listinfo/fork`,
 * sometimes to the last line of the text itself): what `/\s*https?:\/\/\S+\/mailman\/listinfo\/\S*\s*$/`
 * matches. That expression takes time quadratic in a run of whitespace or of `http://` (a body of
 * 50,000 blank lines: 5 s), so {@link removeTrailingListinfoUrl} finds the same match in one pass.
 */
const LISTINFO_PATH = '/mailman/listinfo/';

/**
 * Outlook's and Outlook Express's separators in front of an unprefixed copy of the message being
 * answered (`-----Original Message-----`, `----- Original Message -----`). The copy is quoted
 * text without `>`, so it is cut with the separator.
 */
const ORIGINAL_MESSAGE = /^\s*-{2,}\s*Original Message\s*-{2,}\s*$/i;

/** The RFC 3676 §4.3 signature separator: dash, dash, space, alone on a line. */
const SIGNATURE_DELIMITER = '-- ';

/**
 * A bare `--` (the separator with its trailing space lost by a mailer or editor) counts as a
 * signature separator only when at most this many non-blank, unquoted lines follow it; a longer
 * tail is more likely text than a signature.
 */
const BARE_SIGNATURE_MAX_LINES = 10;

const PGP_SIGNED_HEADER = '-----BEGIN PGP SIGNED MESSAGE-----';
const PGP_SIGNATURE_BEGIN = '-----BEGIN PGP SIGNATURE-----';
const PGP_SIGNATURE_END = '-----END PGP SIGNATURE-----';

/**
 * Returns the text its sender wrote, with repeated and appended text removed. Rules, in order:
 *
 * 1. PGP clear-signing (RFC 4880 §7): the `BEGIN PGP SIGNED MESSAGE` header and its `Hash:`
 *    lines and the signature block are dropped, dash-escaped lines (`- text`) are unescaped.
 * 2. Everything from the first of these to the end is cut: a signature separator (exactly
 *    `-- `, or a bare `--` followed by at most {@link BARE_SIGNATURE_MAX_LINES} unquoted
 *    lines), an Outlook `-----Original Message-----` separator, a mailing-list footer (a rule of
 *    20+ `_` or `-` followed within 3 lines by `mailing list`, `listinfo`, `unsubscribe`, an
 *    sf.net sponsor or a Yahoo! advert), the Yahoo! Groups sponsor/unsubscribe block and
 *    Bugzilla's `You are receiving this mail because:` block. A mailman `listinfo` URL ending
 *    the text (FoRK's footer) is removed first.
 * 3. Quoted lines (`>` after optional whitespace, any depth) are dropped, and so is the
 *    attribution right before a quote block (blank lines between allowed): a line ending in
 *    `wrote:` / `writes:` / `said:` / ... (also `--- In group@..., X wrote:`), `Quoting X:`,
 *    `[Name]`, and the preceding `On <date>, <name>` line when the attribution spans two lines.
 * 4. Whitespace: trailing spaces are trimmed, runs of blank lines become one, and leading and
 *    trailing blank lines are removed.
 *
 * Known misses: quotes without a `>` prefix other than Outlook's (`| text` in nmh, "X posted:"
 * followed by pasted text) are kept. Line endings may be LF or CRLF; the result uses LF.
 *
 * @param text A plain-text e-mail body.
 * @returns The body without quotes, attributions, signature and footers; `""` when nothing else
 *   is left.
 */
export function stripQuotedText(text: string): string {
  let lines = removeTrailingListinfoUrl(text.replace(/\r\n?/g, '\n')).split('\n');
  lines = removePgpArmor(lines);
  lines = lines.slice(0, findCut(lines));
  lines = removeQuotes(lines);
  return normalizeBlankLines(lines);
}

/**
 * `text` without a trailing mailman listinfo URL (see {@link LISTINFO_PATH}), in time linear in
 * `text`: the URL is the last whitespace-free token, or its tail from the first `http://` or
 * `https://` that has at least one character and then `/mailman/listinfo/` after it; when the URL
 * is the whole token, the whitespace before it goes too.
 */
function removeTrailingListinfoUrl(text: string): string {
  const end = text.trimEnd().length;
  let tokenStart = end;
  while (tokenStart > 0 && !/\s/.test(text[tokenStart - 1]!)) tokenStart -= 1;
  const token = text.slice(tokenStart, end);
  const marker = token.lastIndexOf(LISTINFO_PATH);
  if (marker === -1) return text;
  for (let u = token.indexOf('http'); u !== -1 && u < marker; u = token.indexOf('http', u + 1)) {
    const scheme = token.startsWith('https://', u) ? 8 : token.startsWith('http://', u) ? 7 : 0;
    if (scheme > 0 && marker >= u + scheme + 1) {
      return u > 0 ? text.slice(0, tokenStart + u) : text.slice(0, tokenStart).trimEnd();
    }
  }
  return text;
}

/** Drops clear-signing armour and unescapes dash-escaped lines (RFC 4880 §7.1). */
function removePgpArmor(lines: string[]): string[] {
  if (!lines.some((line) => line.trimEnd() === PGP_SIGNED_HEADER)) return lines;
  const out: string[] = [];
  let state: 'text' | 'armor-headers' | 'signed' | 'signature' = 'text';
  for (const line of lines) {
    const trimmed = line.trimEnd();
    if (state === 'signature') {
      if (trimmed === PGP_SIGNATURE_END) state = 'text';
      continue;
    }
    if (trimmed === PGP_SIGNED_HEADER) {
      state = 'armor-headers';
      continue;
    }
    if (state === 'armor-headers') {
      // Armour headers (`Hash: SHA1`) end at the first blank line.
      if (trimmed === '') state = 'signed';
      continue;
    }
    if (trimmed === PGP_SIGNATURE_BEGIN) {
      state = 'signature';
      continue;
    }
    out.push(state === 'signed' && line.startsWith('- ') ? line.slice(2) : line);
  }
  return out;
}

/** Index of the first line of the signature, footer or original-message block; else length. */
function findCut(lines: readonly string[]): number {
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i] ?? '';
    if (line.trim() === '') continue; // no rule below matches a blank line
    if (line === SIGNATURE_DELIMITER) return i;
    if (line.trimEnd() === '--' && isShortTail(lines, i + 1)) return i;
    if (ORIGINAL_MESSAGE.test(line)) return i;
    if (FOOTER_START.some((pattern) => pattern.test(line))) return i;
    if (FOOTER_RULE.test(line) && opensFooter(lines, i + 1)) return i;
  }
  return lines.length;
}

function isShortTail(lines: readonly string[], from: number): boolean {
  let count = 0;
  for (let i = from; i < lines.length; i += 1) {
    const line = lines[i] ?? '';
    if (line.trim() === '' || QUOTE_LINE.test(line)) continue;
    count += 1;
    if (count > BARE_SIGNATURE_MAX_LINES) return false;
  }
  return true;
}

function opensFooter(lines: readonly string[], from: number): boolean {
  let seen = 0;
  for (let i = from; i < lines.length && seen < FOOTER_LOOKAHEAD_LINES; i += 1) {
    const line = lines[i] ?? '';
    if (line.trim() === '') continue;
    if (FOOTER_AFTER_RULE.test(line)) return true;
    seen += 1;
  }
  return false;
}

function isAttribution(line: string): boolean {
  return (
    ATTRIBUTION_TAIL.test(line) ||
    ATTRIBUTION_QUOTING.test(line) ||
    ATTRIBUTION_BRACKETED.test(line)
  );
}

/** Drops quoted lines and the attribution (one or two lines) right above each quote block. */
function removeQuotes(lines: readonly string[]): string[] {
  const out: string[] = [];
  // Indexes in `out` of its non-blank lines, so finding the last one does not rescan blank runs
  // (quadratic on a body of many short quote blocks between blank lines).
  const nonBlank: number[] = [];
  let inQuote = false;
  for (const line of lines) {
    if (!QUOTE_LINE.test(line)) {
      inQuote = false;
      if (line.trim() !== '') nonBlank.push(out.length);
      out.push(line);
      continue;
    }
    if (inQuote) continue;
    inQuote = true;
    const j = nonBlank.at(-1) ?? -1;
    const candidate = out[j];
    if (candidate !== undefined && isAttribution(candidate)) {
      out.length = isAttributionHead(out[j - 1], candidate) ? j - 1 : j;
      while ((nonBlank.at(-1) ?? -1) >= out.length) nonBlank.pop();
    }
    // A blank line where the quote was keeps the text around it in two paragraphs.
    if (out.length > 0) out.push('');
  }
  return out;
}

/**
 * True when `head` is the first half of a two-line attribution ending in `tail`: it opens with
 * `On`/`At` and contains a digit (the date), does not end a sentence, and `tail` is short.
 */
function isAttributionHead(head: string | undefined, tail: string): boolean {
  return (
    head !== undefined &&
    ATTRIBUTION_HEAD.test(head) &&
    /\d/.test(head) &&
    !/[.!?]\s*$/.test(head) &&
    !ATTRIBUTION_HEAD.test(tail) &&
    tail.trim().length <= 60
  );
}

function normalizeBlankLines(lines: readonly string[]): string {
  const out: string[] = [];
  for (const raw of lines) {
    const line = raw.trimEnd();
    if (line === '' && (out.length === 0 || out[out.length - 1] === '')) continue;
    out.push(line);
  }
  while (out.length > 0 && out[out.length - 1] === '') out.pop();
  return out.join('\n');
}
