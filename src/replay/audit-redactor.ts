/**
 * `memq audit`'s own redactor: what a privacy policy should leave of a text, computed without
 * memq's privacy code (src/core/privacy.ts) so a defect there shows up as a difference.
 *
 * - A separate engine: JavaScript's RegExp with the `u` flag (backtracking, V8), not RE2 (re2js).
 * - The policy's `redact_patterns` are RE2 syntax; {@link translateRe2} rewrites the RE2
 *   constructs whose meaning differs in JavaScript and refuses what it cannot rewrite exactly.
 * - The built-in detectors are restated here from their documentation (the README's
 *   `privacy_policy.detectors` row and the sources cited on {@link AUDIT_DETECTORS}), not imported.
 * - The matching and replacement rules are restated from the policy's documented behaviour:
 *   rules are tried as one alternation `p0|p1|...` (the user's patterns in order, then the
 *   detectors in a fixed order): the leftmost match wins, at one position the first rule wins
 *   with its own extent; a detector match its check rejects is no match (the other rules, and the
 *   same rule one character further on, may still match there). Each match is replaced by the
 *   action's text: `redact` the redaction string; `mask` `*` for every character but the last 4
 *   (all of them for 8 or fewer); `hash` `pii_` + the first 16 hex digits of HMAC-SHA256(key,
 *   match), an existing pseudonym left alone; `drop` drops the whole message.
 * - What of a message goes through the policy is restated in {@link expectStored} from the
 *   documented rules of `applyPrivacy` and `applyInputPrivacy` (docs/decisions.md, "Privacy"):
 *   the schema's own names and values stay, tool-call arguments are redacted as JSON leaves and
 *   then as a whole text,
 *   tool-call ids stay distinct per append, per-message `privacy` instructions apply first.
 */
import { createHmac } from 'node:crypto';
import { AppError } from '../core/errors.js';

/** The audit cannot check a policy (a pattern it cannot translate, a missing hash key). */
export class AuditPolicyError extends AppError {
  /**
   * @param message What cannot be checked, where, and what is supported.
   * @param details The rule and construct, never message content.
   */
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('AUDIT_POLICY_UNSUPPORTED', message, false, { details });
  }
}

/** ASCII word characters: what RE2's `\w` and `\b` use (RE2 syntax documentation). */
const WORD = '0-9A-Za-z_';
/** RE2's `\s`: tab, newline, form feed, carriage return, space (no vertical tab, no Unicode). */
const SPACE = '\\t\\n\\f\\r ';
/** RE2's `\b` (ASCII word boundary), as lookarounds. */
const BOUNDARY = `(?:(?<=[${WORD}])(?![${WORD}])|(?<![${WORD}])(?=[${WORD}]))`;
/** RE2's `\B`. */
const NOT_BOUNDARY = `(?:(?<=[${WORD}])(?=[${WORD}])|(?<![${WORD}])(?![${WORD}]))`;
/** Characters JavaScript's `u` mode lets a backslash escape (SyntaxCharacter and `/`). */
const JS_ESCAPABLE = new Set('^$\\.*+?()[]{}|/');

/**
 * Rewrites an RE2 pattern as a JavaScript `u`-mode pattern with the same matches.
 *
 * Rewritten: `\d \D \w \W \s \S` (ASCII classes in RE2; `\s` has no vertical tab or Unicode
 * spaces), `\b \B` (ASCII boundaries even under `(?i)`), `.` (anything but `\n`), `\A` `\z`,
 * `\a`, `\x{h...}`, `\Q...\E`, escaped punctuation, `(?P<name>`, a `{` or `}` that is not a
 * repeat (a literal in RE2, an error in `u` mode), `]` first in a class, `(?i)` at the start of
 * the pattern or of a group, and `(?i:...)`. Kept as they are: literals, `[...]` classes with
 * ranges, groups, `|`, `^` `$` (start and end of text: no `m` flag either side), `* + ? {n,m}`
 * and their lazy forms.
 * Refused: other flags (`m`, `s`, `U`, `-i`), `(?i)` elsewhere, `\p`/`\P` classes, POSIX
 * `[[:alpha:]]` classes, `\D \W \S` inside a class, octal and back-references, `\C`, `\z`-like
 * escapes RE2 does not have, lookarounds (RE2 has none).
 *
 * @param source The RE2 pattern.
 * @param where What error messages call it, e.g. `privacy_policy.redact_patterns[0]`.
 * @returns JavaScript pattern source, to compile with the `u` flag (and `g`).
 * @throws AuditPolicyError naming the construct when the pattern cannot be rewritten exactly.
 */
export function translateRe2(source: string, where: string): string {
  const refuse = (construct: string): never => {
    throw new AuditPolicyError(
      `memq audit: ${where}: cannot check this pattern: ${construct} has no exact JavaScript equivalent in the audit's translator (supported: literals, classes with ranges, \\d \\w \\s \\b and their negations, ., groups, (?i) at the start of a group, |, ^, $, repeats)`,
      { rule: where, construct },
    );
  };
  const chars = [...source];
  let i = 0;
  let out = '';
  /** Per open group: was `(?i)` opened inside it (so a `)` must close it first)? */
  const groups: boolean[] = [];
  let foldDepth = 0; // open (?i:...) groups, for \b
  /** Case-insensitive groups among `groups`, by index, to know when folding ends. */
  const folding: boolean[] = [];
  let atGroupStart = true;

  const escapeLiteral = (c: string): string => (JS_ESCAPABLE.has(c) || c === '-' ? `\\${c}` : c);
  const literalOutside = (c: string): string => (JS_ESCAPABLE.has(c) ? `\\${c}` : c);
  const boundary = (pattern: string) => (foldDepth > 0 ? `(?-i:${pattern})` : pattern);

  const readHexEscape = (): string => {
    // after `\x`
    if (chars[i] === '{') {
      const close = chars.indexOf('}', i);
      const hex = close === -1 ? '' : chars.slice(i + 1, close).join('');
      if (!/^[0-9A-Fa-f]{1,6}$/.test(hex) || Number.parseInt(hex, 16) > 0x10ffff) {
        return refuse('a malformed \\x{...} escape');
      }
      i = close + 1;
      return `\\u{${hex}}`;
    }
    const hex = chars.slice(i, i + 2).join('');
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return refuse('a malformed \\x escape');
    i += 2;
    return `\\x${hex}`;
  };

  /** A `{n}`, `{n,}` or `{n,m}` at `i`, or undefined (then `{` is a literal in RE2). */
  const readRepeat = (): string | undefined => {
    const match = /^\{(\d+)(,(\d*))?\}/.exec(chars.slice(i, i + 24).join(''));
    if (!match) return undefined;
    i += [...match[0]].length;
    return match[0];
  };

  const readClass = (): string => {
    // at `[`
    i += 1;
    let body = '';
    let negated = false;
    if (chars[i] === '^') {
      negated = true;
      i += 1;
    }
    let first = true;
    for (;;) {
      const c = chars[i];
      if (c === undefined) return refuse('an unterminated [ class');
      if (c === ']' && !first) {
        i += 1;
        break;
      }
      first = false;
      if (c === '[' && chars[i + 1] === ':') return refuse('a POSIX [[:class:]]');
      if (c === '\\') {
        const e = chars[i + 1];
        i += 2;
        if (e === undefined) return refuse('a trailing backslash');
        if (e === 'd') body += '0-9';
        else if (e === 'w') body += WORD;
        else if (e === 's') body += SPACE;
        else if (e === 'D' || e === 'W' || e === 'S') return refuse(`\\${e} inside a class`);
        else if (e === 'p' || e === 'P') return refuse(`\\${e} Unicode classes`);
        else if (e === 'x') body += readHexEscape();
        else if (e === 't' || e === 'n' || e === 'r' || e === 'f' || e === 'v') body += `\\${e}`;
        else if (e === 'a') body += '\\x07';
        else if (/[0-9A-Za-z]/.test(e)) return refuse(`the escape \\${e} inside a class`);
        else body += escapeLiteral(e);
        continue;
      }
      i += 1;
      // A `-` between two class items is a range; elsewhere a literal.
      if (c === '-' && body !== '' && chars[i] !== ']' && chars[i] !== undefined) body += '-';
      else body += escapeLiteral(c);
    }
    return `[${negated ? '^' : ''}${body}]`;
  };

  while (i < chars.length) {
    const c = chars[i]!;
    const wasGroupStart = atGroupStart;
    atGroupStart = false;
    if (c === '\\') {
      const e = chars[i + 1];
      i += 2;
      if (e === undefined) return refuse('a trailing backslash');
      if (e === 'd') out += '[0-9]';
      else if (e === 'D') out += '[^0-9]';
      else if (e === 'w') out += `[${WORD}]`;
      else if (e === 'W') out += `[^${WORD}]`;
      else if (e === 's') out += `[${SPACE}]`;
      else if (e === 'S') out += `[^${SPACE}]`;
      else if (e === 'b') out += boundary(BOUNDARY);
      else if (e === 'B') out += boundary(NOT_BOUNDARY);
      else if (e === 'A') out += '^';
      else if (e === 'z') out += '$';
      else if (e === 'x') out += readHexEscape();
      else if (e === 't' || e === 'n' || e === 'r' || e === 'f' || e === 'v') out += `\\${e}`;
      else if (e === 'a') out += '\\x07';
      else if (e === 'Q') {
        const end = chars.indexOf('\\', i);
        const stop = end !== -1 && chars[end + 1] === 'E' ? end : chars.length;
        out += chars.slice(i, stop).map(literalOutside).join('');
        i = stop === chars.length ? stop : stop + 2;
      } else if (e === 'p' || e === 'P') return refuse(`\\${e} Unicode classes`);
      else if (/[0-9]/.test(e)) return refuse(`the escape \\${e} (octal or back-reference)`);
      else if (/[A-Za-z]/.test(e)) return refuse(`the escape \\${e}`);
      else out += literalOutside(e);
      continue;
    }
    if (c === '[') {
      out += readClass();
      continue;
    }
    if (c === '.') {
      out += '[^\\n]';
      i += 1;
      continue;
    }
    if (c === '(') {
      const rest = chars.slice(i, i + 4).join('');
      if (rest.startsWith('(?i)')) {
        if (!wasGroupStart) return refuse('(?i) after the start of the pattern or group');
        i += 4;
        out += '(?i:';
        groups.push(true);
        folding.push(true);
        foldDepth += 1;
        atGroupStart = true;
        continue;
      }
      if (rest.startsWith('(?i:')) {
        i += 4;
        out += '(?i:';
        groups.push(false);
        folding.push(true);
        foldDepth += 1;
        atGroupStart = true;
        continue;
      }
      if (rest.startsWith('(?:')) {
        i += 3;
        out += '(?:';
        groups.push(false);
        folding.push(false);
        atGroupStart = true;
        continue;
      }
      if (rest.startsWith('(?P<') || (rest.startsWith('(?<') && !/^\(\?<[=!]/.test(rest))) {
        const open = chars.indexOf('<', i);
        const close = chars.indexOf('>', open);
        const name = close === -1 ? '' : chars.slice(open + 1, close).join('');
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return refuse('a malformed group name');
        i = close + 1;
        out += `(?<${name}>`;
        groups.push(false);
        folding.push(false);
        atGroupStart = true;
        continue;
      }
      if (rest.startsWith('(?')) return refuse(`the group ${rest.slice(0, 3)}...`);
      i += 1;
      out += '(';
      groups.push(false);
      folding.push(false);
      atGroupStart = true;
      continue;
    }
    if (c === ')') {
      const flagGroup = groups.pop();
      if (flagGroup === undefined) return refuse('an unmatched )');
      if (flagGroup) {
        // `(?i)` opened a `(?i:` that ends with the group around it.
        out += ')';
        folding.pop();
        foldDepth -= 1;
        const outer = groups.pop();
        if (outer === undefined) return refuse('an unmatched )');
        if (folding.pop() === true) foldDepth -= 1;
      } else if (folding.pop() === true) foldDepth -= 1;
      out += ')';
      i += 1;
      continue;
    }
    if (c === '|') {
      out += '|';
      i += 1;
      atGroupStart = false;
      continue;
    }
    if (c === '{') {
      const repeat = readRepeat();
      if (repeat !== undefined) {
        out += repeat;
        continue;
      }
      out += '\\{';
      i += 1;
      continue;
    }
    if (c === '}' || c === ']') {
      out += `\\${c}`;
      i += 1;
      continue;
    }
    out += c; // literals, ^ $ * + ? (and a lazy ?)
    i += 1;
  }
  // A leading `(?i)` at the top level folds to the end of the pattern.
  while (groups.length > 0) {
    const flagGroup = groups.pop();
    folding.pop();
    if (!flagGroup) return refuse('an unclosed (');
    out += ')';
  }
  try {
    new RegExp(out, 'gu');
  } catch (error) {
    return refuse(`a construct JavaScript rejects (${(error as Error).message})`);
  }
  return out;
}

/** Luhn checksum (ISO/IEC 7812-1) over the digits of a 13-19 digit card number. */
function luhn(candidate: string): boolean {
  const digits = candidate.replace(/[ -]/g, '');
  if (digits.length < 13 || digits.length > 19 || /\D/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    const d = Number(digits[digits.length - 1 - i]);
    const doubled = i % 2 === 1 ? d * 2 : d;
    sum += doubled > 9 ? doubled - 9 : doubled;
  }
  return sum % 10 === 0;
}

/** One rule of the audit's redactor. */
export interface AuditRule {
  /** `redact_patterns[i]` or the detector's name. */
  readonly name: string;
  /** Global, `u`-mode expression. */
  readonly regex: RegExp;
  /** For detectors: a match this rejects is no match. */
  readonly check?: (match: string) => boolean;
}

const b = BOUNDARY;
const hex = '[0-9A-Fa-f]';
const octet = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';

/**
 * The built-in detectors, restated from their documentation, in the order memq applies them
 * (after the user's patterns, whatever the configured order): `credit_card` (13-19 digits,
 * optionally separated by one space or dash, Luhn-valid), `us_ssn` (`AAA-GG-SSSS`; the SSA never
 * issues area 000, 666 or 900-999, group 00 or serial 0000), `api_key` (OpenAI/Stripe `sk-`,
 * `pk_`, `rk_` keys of 16+ characters after an optional word and separator, `Bearer` tokens of
 * 16+ characters with trailing `=`, GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` tokens of 30+, AWS
 * `AKIA` + 16, Slack `xoxa-`/`xoxb-`/`xoxp-`/`xoxr-`/`xoxs-` + 10), `ipv6` (8 groups, or `::`
 * compression, at least 2 groups), `ipv4` (dotted quad of 0-255 without leading zeros), `email`
 * and `phone` (as in the shipped customer-support policy). Word boundaries are ASCII.
 */
export const AUDIT_DETECTORS: readonly AuditRule[] = [
  {
    name: 'credit_card',
    regex: new RegExp(`${b}[0-9](?:[ -]?[0-9]){12,18}${b}`, 'gu'),
    check: luhn,
  },
  {
    name: 'us_ssn',
    regex: new RegExp(`${b}[0-9]{3}-[0-9]{2}-[0-9]{4}${b}`, 'gu'),
    check: (m) => {
      const [area, group, serial] = m.split('-');
      return (
        area !== '000' &&
        area !== '666' &&
        !area!.startsWith('9') &&
        group !== '00' &&
        serial !== '0000'
      );
    },
  },
  {
    name: 'api_key',
    regex: new RegExp(
      [
        `${b}(?:sk|pk|rk)[-_](?:[A-Za-z]+[-_])?[A-Za-z0-9]{16,}${b}`,
        `${b}Bearer[${SPACE}]+[A-Za-z0-9._~+/-]{16,}=*`,
        `${b}gh[pousr]_[A-Za-z0-9]{30,}${b}`,
        `${b}AKIA[0-9A-Z]{16}${b}`,
        `${b}xox[abprs]-[A-Za-z0-9-]{10,}${b}`,
      ].join('|'),
      'gu',
    ),
  },
  {
    name: 'ipv6',
    regex: new RegExp(
      `(?:${b}(?:${hex}{1,4}:){7}${hex}{1,4}${b}|(?:${b}${hex}{1,4})?(?::${hex}{1,4}){0,6}::(?:${hex}{1,4}(?::${hex}{1,4}){0,6}${b})?)`,
      'gu',
    ),
    check: (m) => m.split(':').filter((group) => group !== '').length >= 2,
  },
  { name: 'ipv4', regex: new RegExp(`${b}(?:${octet}\\.){3}${octet}${b}`, 'gu') },
  {
    name: 'email',
    regex: new RegExp(`${b}[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}${b}`, 'gu'),
  },
  {
    name: 'phone',
    regex: new RegExp(
      `(?:\\+[0-9]{1,3}[${SPACE}.-]?\\(?|\\(|${b})[0-9]{2,4}\\)?[${SPACE}.-]?[0-9]{3,4}[${SPACE}.-]?[0-9]{3,4}${b}`,
      'gu',
    ),
  },
];

/** What the audit needs of a resource's privacy policy (as the registry resolved it). */
export interface AuditPolicy {
  /** RE2 patterns. */
  readonly redactPatterns: readonly string[];
  /** Detector names. */
  readonly detectors?: readonly string[];
  /** `redact` (default), `mask`, `hash` or `drop`. */
  readonly action?: string;
  /** Roles never stored. */
  readonly nonPersistableMessageTypes: readonly string[];
  /** Replacement of `redact` (and what `drop` counts). */
  readonly defaultRedactionString: string;
  /** Environment variable holding the `hash` key; default `MEMQ_PRIVACY_HASH_KEY`. */
  readonly hashKeyEnv?: string;
  /**
   * `privacy_scope`: `global` (default) or `session`. The audit computes global pseudonyms only,
   * so it refuses a `hash` policy scoped to the session.
   */
  readonly scope?: string;
}

/** A policy ready to apply: its rules and the replacement of a match. */
export interface AuditRedactor {
  /** Rules in order: the user's patterns, then the enabled detectors. */
  readonly rules: readonly AuditRule[];
  /** True for action `drop`. */
  readonly drops: boolean;
  /** Roles never stored. */
  readonly nonPersistable: ReadonlySet<string>;
  /** The text a match becomes (the match itself: not a redaction). */
  replacement(match: string): string;
}

/**
 * The redaction string of a resource without a privacy policy, which a message's
 * `privacy.redact_fields` still uses: the documented default of
 * `privacy_policy.default_redaction_string` (docs/configuration.md, "Memory resources").
 */
export const AUDIT_DEFAULT_REDACTION = '[REDACTED]';

/**
 * Compiles `policy` for {@link redactText} and {@link expectStored}. Without a policy
 * (`undefined`): no rule, nothing dropped, and a replacement of {@link AUDIT_DEFAULT_REDACTION}
 * (what `privacy.redact_fields` gives then).
 * @param env Where the `hash` key is read.
 * @throws AuditPolicyError for a pattern {@link translateRe2} refuses, an unknown detector or
 *   action, action `hash` without a key in `env`, or action `hash` with `privacy_scope: session`.
 */
export function compileAuditPolicy(
  policy: AuditPolicy | undefined,
  env: Readonly<Record<string, string | undefined>>,
): AuditRedactor {
  if (policy === undefined) {
    return {
      rules: [],
      drops: false,
      nonPersistable: new Set(),
      replacement: () => AUDIT_DEFAULT_REDACTION,
    };
  }
  const rules: AuditRule[] = policy.redactPatterns.map((pattern, i) => {
    const name = `redact_patterns[${i}]`;
    return { name, regex: new RegExp(translateRe2(pattern, `privacy_policy.${name}`), 'gu') };
  });
  const enabled = new Set(policy.detectors ?? []);
  for (const name of enabled) {
    if (!AUDIT_DETECTORS.some((d) => d.name === name)) {
      throw new AuditPolicyError(
        `memq audit: privacy_policy.detectors: unknown detector ${JSON.stringify(name)}`,
        {
          detector: name,
        },
      );
    }
  }
  rules.push(...AUDIT_DETECTORS.filter((d) => enabled.has(d.name)));
  const action = policy.action ?? 'redact';
  let replacement: (match: string) => string;
  if (action === 'redact' || action === 'drop') replacement = () => policy.defaultRedactionString;
  else if (action === 'mask') {
    replacement = (match) => {
      const points = [...match];
      const keep = points.length > 8 ? 4 : 0;
      return '*'.repeat(points.length - keep) + points.slice(points.length - keep).join('');
    };
  } else if (action === 'hash') {
    if (policy.scope !== undefined && policy.scope !== 'global') {
      throw new AuditPolicyError(
        `memq audit: privacy_scope is ${policy.scope}: the audit computes project-wide (global) pseudonyms only, so it cannot check this resource's; audit a resource whose privacy_scope is global`,
        { scope: policy.scope },
      );
    }
    const variable = policy.hashKeyEnv ?? 'MEMQ_PRIVACY_HASH_KEY';
    const key = env[variable];
    if (key === undefined || key === '') {
      throw new AuditPolicyError(
        `memq audit: privacy_policy.action is hash: set ${variable} to the key the replay used, so the audit can compute the pseudonyms`,
        { variable },
      );
    }
    replacement = (match) =>
      /^pii_[0-9a-f]{16}$/.test(match)
        ? match
        : `pii_${createHmac('sha256', key).update(match).digest('hex').slice(0, 16)}`;
  } else {
    throw new AuditPolicyError(
      `memq audit: privacy_policy.action: unknown action ${JSON.stringify(action)}`,
      {
        action,
      },
    );
  }
  return {
    rules,
    drops: action === 'drop',
    nonPersistable: new Set(policy.nonPersistableMessageTypes),
    replacement,
  };
}

/** Length in UTF-16 units of the code point at `index` (1 past the end). */
function codePointWidth(text: string, index: number): number {
  const c = text.codePointAt(index);
  return c !== undefined && c > 0xffff ? 2 : 1;
}

/**
 * `text` with every match of the redactor's rules replaced (the rules and replacements are
 * described at the top of this file).
 * @returns The new text and how many matches were replaced by something else.
 */
export function redactText(
  redactor: AuditRedactor,
  text: string,
): { text: string; matches: number } {
  const { rules } = redactor;
  if (rules.length === 0 || text === '') return { text, matches: 0 };
  /** Per rule: its next accepted match at or after the scan position. */
  const next: Array<{ start: number; end: number } | undefined> = rules.map(() => undefined);
  const searched: number[] = rules.map(() => -1); // position each rule was last searched from
  const find = (r: number, from: number) => {
    const rule = rules[r]!;
    let at = from;
    for (;;) {
      if (at > text.length) return undefined;
      rule.regex.lastIndex = at;
      const m = rule.regex.exec(text);
      if (m === null) return undefined;
      if (!rule.check || rule.check(m[0])) return { start: m.index, end: m.index + m[0].length };
      at = m.index + codePointWidth(text, m.index);
    }
  };
  let out = '';
  let last = 0;
  let pos = 0;
  let matches = 0;
  for (;;) {
    let best = -1;
    for (let r = 0; r < rules.length; r++) {
      const cached = next[r];
      if (searched[r] === -1 || (cached !== undefined && cached.start < pos)) {
        next[r] = find(r, pos);
        searched[r] = pos;
      }
      const candidate = next[r];
      if (candidate === undefined) continue;
      if (best === -1 || candidate.start < next[best]!.start) best = r;
    }
    if (best === -1) break;
    const { start, end } = next[best]!;
    const match = text.slice(start, end);
    const replaced = redactor.replacement(match);
    if (replaced !== match) {
      out += text.slice(last, start) + replaced;
      last = end;
      matches += 1;
    }
    pos = end > start ? end : end + codePointWidth(text, end);
  }
  return { text: matches > 0 ? out + text.slice(last) : text, matches };
}

/** A message as a producer submits it (message.ts `MessageInputSchema`), as the audit reads it. */
export interface AuditSubmittedMessage {
  /** ULID, when the producer was given one. */
  readonly id?: string | undefined;
  /** ISO-8601 time, when given. */
  readonly created_at?: string | undefined;
  /** The role. */
  readonly role: string;
  /** A string, a list of `text` / `image_url` parts, or null. */
  readonly content?: unknown;
  /** Participant name. */
  readonly name?: string | undefined;
  /** Tool calls of an assistant message. */
  readonly tool_calls?:
    | ReadonlyArray<{
        readonly id: string;
        readonly type: string;
        readonly function: { readonly name: string; readonly arguments: string };
      }>
    | undefined;
  /** The call a tool message answers. */
  readonly tool_call_id?: string | undefined;
  /** Flat metadata (JSON scalars). */
  readonly metadata?: Readonly<Record<string, unknown>> | undefined;
  /** Per-message privacy instructions (never stored). */
  readonly privacy?:
    { readonly do_not_persist?: boolean; readonly redact_fields?: readonly string[] } | undefined;
}

/** An ISO-8601 date-time with at most millisecond precision. */
const MILLISECOND_TIME =
  /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,3})?(?:Z|[+-][0-9]{2}:[0-9]{2})$/;

/** What {@link expectStored} expects of one submitted message. */
export interface AuditExpectation {
  /** The message as memq should store it (`privacy` never), or undefined when not at all. */
  readonly stored: Record<string, unknown> | undefined;
  /** Why it is not stored: a non-persistable role, `privacy.do_not_persist`, or a match under `drop`. */
  readonly skipped?: 'non_persistable' | 'do_not_persist' | 'drop';
  /** Matches replaced (0 when skipped before the policy read it). */
  readonly matches: number;
}

/**
 * One JSON token (RFC 8259): whitespace, a string, a number, a literal or a structural
 * character. Sticky: read from `lastIndex`, one token after another.
 */
const JSON_TOKEN =
  /[ \t\n\r]+|"[^"\\]*(?:\\.[^"\\]*)*"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|[{}[\],:]/y;

/**
 * The keys of one object as they are written out, given each key as sent and as the rules leave
 * it (`[sent, redacted]`, in order; in JSON text the same key may come more than once). A key the
 * rules leave as sent keeps its text, whatever comes before it. Any other key gets its redacted
 * text, or that text + `#2`, `#3`... while a different key already holds it (the unchanged keys
 * hold theirs from the start; changed keys in order); a key sent again gets the text it got first.
 */
function distinctKeys(keys: ReadonlyArray<readonly [string, string]>): string[] {
  /** Written text -> the key sent that holds it. */
  const holder = new Map<string, string>();
  for (const [sent, redacted] of keys) if (sent === redacted) holder.set(sent, sent);
  /** Key sent -> its written text. */
  const written = new Map<string, string>();
  return keys.map(([sent, redacted]) => {
    if (sent === redacted) return sent;
    const known = written.get(sent);
    if (known !== undefined) return known;
    let text = redacted;
    for (let n = 2; holder.has(text); n++) text = `${redacted}#${n}`;
    holder.set(text, sent);
    written.set(sent, text);
    return text;
  });
}

/**
 * The audit's reading of tool-call `arguments`: when the text is JSON, each string token
 * (decoded; keys too, kept apart by {@link distinctKeys} per object) and each number token (its
 * text as written) is redacted; a changed one is written as a JSON string (`JSON.stringify`),
 * everything else stays as written. Then the whole text so obtained is redacted as text (so a
 * rule spanning a key and its value matches; the result need not be JSON). A text that is not
 * JSON is redacted as text once.
 */
function auditJsonText(text: string, redact: (text: string) => string): string {
  try {
    JSON.parse(text);
  } catch {
    return redact(text);
  }
  const tokens: string[] = [];
  JSON_TOKEN.lastIndex = 0;
  while (JSON_TOKEN.lastIndex < text.length) {
    const at = JSON_TOKEN.lastIndex;
    const match = JSON_TOKEN.exec(text);
    if (match === null) {
      throw new AuditPolicyError(
        `memq audit: tool-call arguments: cannot read the JSON at character ${at}`,
        { at },
      );
    }
    tokens.push(match[0]);
  }
  /** Per open object: its keys as `[token index, sent, redacted]`; undefined for an array. */
  const objects: Array<Array<[number, string, string]> | undefined> = [];
  const out = [...tokens];
  tokens.forEach((token, i) => {
    const first = token[0]!;
    if (first === '{') objects.push([]);
    else if (first === '[') objects.push(undefined);
    else if (first === '}' || first === ']') {
      const keys = objects.pop();
      if (keys === undefined) return;
      const texts = distinctKeys(keys.map(([, sent, redacted]) => [sent, redacted]));
      keys.forEach(([at, sent], k) => {
        if (texts[k] !== sent) out[at] = JSON.stringify(texts[k]);
      });
    } else if (first === '"') {
      const decoded = JSON.parse(token) as string;
      const redacted = redact(decoded);
      let next = i + 1;
      while (next < tokens.length && /^[ \t\n\r]/.test(tokens[next]!)) next += 1;
      const keys = objects[objects.length - 1];
      if (tokens[next] === ':' && keys) keys.push([i, decoded, redacted]);
      else if (redacted !== decoded) out[i] = JSON.stringify(redacted);
    } else if (first === '-' || (first >= '0' && first <= '9')) {
      const redacted = redact(token);
      if (redacted !== token) out[i] = JSON.stringify(redacted);
    }
  });
  return redact(out.join(''));
}

/**
 * What memq should store of each message of one append (or write), in order, restated from the
 * documented rules (docs/decisions.md, "Privacy"; `applyInputPrivacy` and `applyPrivacy`), not
 * from their code:
 * - a message marked `privacy.do_not_persist`, or whose role the policy does not persist, is not
 *   stored (and the policy never reads it);
 * - each metadata field named in `privacy.redact_fields` becomes the replacement of its whole
 *   value's text (a string), whatever the rules say (not a match, so `drop` does not drop for
 *   it), and then goes through the rules like any value;
 * - `id`, `role`, `created_at` (with at most 3 fractional digits; a longer one is text), every
 *   field name, a part's `type` and an image's `detail`, and a tool call's `type` are stored as
 *   sent (the schema fixes them);
 * - `content` (a string, or each text part's `text` and image part's `url`), `name`, a tool
 *   call's function `name`, metadata keys and string values are redacted as text; a metadata
 *   number whose text changes becomes that text; metadata keys are kept apart by
 *   {@link distinctKeys};
 * - a tool call's `arguments` are read as JSON, then as text ({@link auditJsonText});
 * - tool-call ids (`tool_calls[].id`, `tool_call_id`) are redacted as text, then kept apart
 *   across the batch: an id the rules leave unchanged keeps its text; any other id, at its first
 *   appearance (messages in order, calls in order), gets its redacted text, or that text + `#2`,
 *   `#3`... when an earlier id already holds it; every later appearance gets the same text;
 * - under `drop`, a message with any match is not stored (its ids were still given out).
 * Messages are assumed valid (`MessageInputSchema`): the audit's source is validated.
 */
export function expectStored(
  redactor: AuditRedactor,
  messages: readonly AuditSubmittedMessage[],
): AuditExpectation[] {
  let matches = 0;
  const redact = (text: string): string => {
    const result = redactText(redactor, text);
    matches += result.matches;
    return result.text;
  };
  const persisted = (m: AuditSubmittedMessage) =>
    m.privacy?.do_not_persist !== true && !redactor.nonPersistable.has(m.role);
  const idsOf = (m: AuditSubmittedMessage) => [
    ...(m.tool_calls ?? []).map((call) => call.id),
    ...(m.tool_call_id !== undefined ? [m.tool_call_id] : []),
  ];
  /** Id -> text given; text -> id holding it. */
  const given = new Map<string, string>();
  const holders = new Map<string, string>();
  for (const message of messages.filter(persisted)) {
    for (const id of idsOf(message)) {
      if (redactText(redactor, id).matches === 0 && !holders.has(id)) {
        given.set(id, id);
        holders.set(id, id);
      }
    }
  }
  const toolCallId = (id: string): string => {
    const redacted = redact(id);
    const known = given.get(id);
    if (known !== undefined) return known;
    let text = redacted;
    for (let n = 2; holders.has(text); n++) text = `${redacted}#${n}`;
    given.set(id, text);
    holders.set(text, id);
    return text;
  };
  const metadataValue = (value: unknown): unknown => {
    if (typeof value === 'string') return redact(value);
    if (typeof value === 'number') {
      const redacted = redact(String(value));
      return redacted === String(value) ? value : redacted;
    }
    return value;
  };
  const part = (p: Record<string, unknown>): Record<string, unknown> => {
    if (p.type === 'text') return { ...p, text: redact(p.text as string) };
    const image = p.image_url as Record<string, unknown>;
    return { ...p, image_url: { ...image, url: redact(image.url as string) } };
  };
  return messages.map((message): AuditExpectation => {
    if (message.privacy?.do_not_persist === true) {
      return { stored: undefined, skipped: 'do_not_persist', matches: 0 };
    }
    if (redactor.nonPersistable.has(message.role)) {
      return { stored: undefined, skipped: 'non_persistable', matches: 0 };
    }
    matches = 0;
    const forced = new Set(message.privacy?.redact_fields ?? []);
    const stored: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(message)) {
      if (field === 'privacy' || value === undefined) continue;
      switch (field) {
        case 'id':
        case 'role':
          stored[field] = value;
          break;
        case 'created_at':
          // memq's own form (at most 3 fractional digits) is stored as sent; a longer fraction
          // could carry a number, so it is read as text.
          stored.created_at = MILLISECOND_TIME.test(value as string)
            ? value
            : redact(value as string);
          break;
        case 'content':
          stored.content =
            typeof value === 'string'
              ? redact(value)
              : Array.isArray(value)
                ? (value as Record<string, unknown>[]).map(part)
                : value;
          break;
        case 'name':
          stored.name = redact(value as string);
          break;
        case 'tool_call_id':
          stored.tool_call_id = toolCallId(value as string);
          break;
        case 'tool_calls':
          stored.tool_calls = (value as NonNullable<AuditSubmittedMessage['tool_calls']>).map(
            (call) => ({
              ...call,
              id: toolCallId(call.id),
              function: {
                ...call.function,
                name: redact(call.function.name),
                arguments: auditJsonText(call.function.arguments, redact),
              },
            }),
          );
          break;
        case 'metadata': {
          const sent = Object.entries(value as Record<string, unknown>);
          const values = sent.map(([key, v]) =>
            // A forced value is the replacement's text, which then goes through the rules too.
            metadataValue(
              forced.has(key) ? redactor.replacement(typeof v === 'string' ? v : String(v)) : v,
            ),
          );
          const keys = distinctKeys(sent.map(([key]) => [key, redact(key)]));
          stored.metadata = Object.fromEntries(keys.map((key, k) => [key, values[k]]));
          break;
        }
        default:
          throw new AuditPolicyError(
            `memq audit: a submitted message has the field ${JSON.stringify(field)}, which the audit does not know`,
            { field },
          );
      }
    }
    if (redactor.drops && matches > 0) return { stored: undefined, skipped: 'drop', matches };
    return { stored, matches };
  });
}
