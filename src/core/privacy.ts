import { createHmac } from 'node:crypto';
import { RE2JS } from 're2js';
import { PolicyError } from './errors.js';
import type { Message } from './message.js';
import type { Role } from './message.js';

/**
 * Built-in detectors, by name (`privacy_policy.detectors`): each is an RE2 pattern plus, where a
 * pattern alone over-matches, a check of the candidate. They run after the user's patterns, in
 * this order whatever the configured order (the most specific first, so a phone pattern never
 * takes part of a card number).
 */
export const DETECTORS = [
  'credit_card',
  'us_ssn',
  'api_key',
  'ipv6',
  'ipv4',
  'email',
  'phone',
] as const;
/** One of {@link DETECTORS}. */
export type Detector = (typeof DETECTORS)[number];

/**
 * What happens to a match (`privacy_policy.action`, default `redact`):
 * - `redact`: replaced by `default_redaction_string`;
 * - `mask`: every character but the last 4 becomes `*` (all of it when 8 characters or fewer);
 * - `hash`: replaced by a stable keyed pseudonym ({@link createPseudonymizer}): the same text
 *   under the same key always gives the same `pii_<16 hex>`, so "the same address again" stays
 *   visible to the agent while the address does not;
 * - `drop`: the whole message is not stored (counted in `dropped`, reported to the caller).
 */
export const PRIVACY_ACTIONS = ['redact', 'mask', 'hash', 'drop'] as const;
/** One of {@link PRIVACY_ACTIONS}. */
export type PrivacyAction = (typeof PRIVACY_ACTIONS)[number];

/** The parts of a resource's privacy policy that the redactor needs. */
export interface RedactionPolicy {
  /** Regular expressions in RE2 syntax (linear time; see {@link compileRedactPattern}); every match is replaced. */
  readonly redactPatterns: readonly string[];
  /** Built-in detectors applied after the patterns; default none. */
  readonly detectors?: readonly Detector[];
  /** What happens to a match; default `redact`. */
  readonly action?: PrivacyAction;
  /** Roles that are never stored. */
  readonly nonPersistableMessageTypes: readonly Role[];
  /** Replacement text for each match. */
  readonly defaultRedactionString: string;
  /**
   * The keyed pseudonym function of the `hash` action, set by the registry from the key in the
   * environment (`privacy_policy.hash_key_env`); a function, so the key itself is never part of
   * a serialisable object. With action `hash` and no function, applying the policy fails closed.
   */
  readonly pseudonym?: (match: string) => string;
}

/** Shortest accepted `hash` key, in characters (128 bits as 32 hex or ~22 base64 characters). */
export const HASH_KEY_MIN_CHARS = 16;

/**
 * Shape of a `hash` pseudonym: `pii_` then 16 lowercase hex digits. The `pii_` prefix keeps a
 * word boundary away from the digits, so no built-in detector (phone, card, IP) can match a
 * pseudonym and hashing stays idempotent.
 */
export const PSEUDONYM_PATTERN = /^pii_[0-9a-f]{16}$/;

/**
 * The `hash` action's pseudonym function: `pii_` + the first 16 hex digits (64 bits) of
 * HMAC-SHA256(key, match) (RFC 2104). Keyed, so a dictionary of e-mail addresses cannot be
 * hashed offline to reverse it without the key; stable, so producer and worker (same key) agree.
 * @throws PolicyError when the key is shorter than {@link HASH_KEY_MIN_CHARS}.
 */
export function createPseudonymizer(key: string): (match: string) => string {
  if (key.length < HASH_KEY_MIN_CHARS) {
    throw new PolicyError(
      `privacy hash key: expected at least ${HASH_KEY_MIN_CHARS} characters, got ${key.length}`,
    );
  }
  return (match) => `pii_${createHmac('sha256', key).update(match).digest('hex').slice(0, 16)}`;
}

/** Luhn checksum (ISO/IEC 7812-1), for `credit_card` candidates: digits only, 13-19 long. */
export function luhnValid(candidate: string): boolean {
  const digits = candidate.replace(/[ -]/g, '');
  if (!/^\d{13,19}$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/**
 * The detectors' patterns (RE2 syntax) and checks. Sources: e-mail and phone as shipped in
 * `memories/customer-support.yaml`; US SSN per the SSA's rules for issued numbers (area not 000,
 * 666 or 900-999, group not 00, serial not 0000); IPv4 dotted quads 0-255; IPv6 full or
 * `::`-compressed with at least two groups; API keys by the published shapes of OpenAI/Stripe
 * (`sk-`, `pk_`, `rk_`), GitHub (`ghp_` ...), AWS access key ids (`AKIA`), Slack (`xox?-`) and
 * `Bearer` tokens.
 */
export const DETECTOR_RULES: Readonly<
  Record<Detector, { readonly pattern: string; readonly check?: (match: string) => boolean }>
> = {
  email: { pattern: '\\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}\\b' },
  phone: {
    pattern: '(?:\\+\\d{1,3}[\\s.-]?\\(?|\\(|\\b)\\d{2,4}\\)?[\\s.-]?\\d{3,4}[\\s.-]?\\d{3,4}\\b',
  },
  credit_card: { pattern: '\\b\\d(?:[ -]?\\d){12,18}\\b', check: luhnValid },
  us_ssn: {
    pattern: '\\b\\d{3}-\\d{2}-\\d{4}\\b',
    check: (m) => !/^(000|666|9\d\d)-|-00-|-0000$/.test(m),
  },
  ipv4: {
    pattern:
      '\\b(?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\b',
  },
  ipv6: {
    pattern:
      '(?i)(?:\\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\\b|(?:\\b[0-9a-f]{1,4})?(?::[0-9a-f]{1,4}){0,6}::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}\\b)?)',
    check: (m) => m.split(':').filter((g) => g !== '').length >= 2,
  },
  api_key: {
    pattern:
      '\\b(?:sk|pk|rk)[-_](?:[A-Za-z]+[-_])?[A-Za-z0-9]{16,}\\b|\\bBearer\\s+[A-Za-z0-9._~+/-]{16,}=*|\\bgh[pousr]_[A-Za-z0-9]{30,}\\b|\\bAKIA[0-9A-Z]{16}\\b|\\bxox[abprs]-[A-Za-z0-9-]{10,}\\b',
  },
};

/** Outcome of {@link applyPrivacy}. */
export interface PrivacyResult<M> {
  /** Messages to store, content redacted, order kept. */
  readonly kept: M[];
  /** Number of messages dropped because their role is non-persistable. */
  readonly dropped: number;
  /** Number of pattern matches replaced across all kept messages. */
  readonly redactions: number;
  /**
   * Matches replaced, by rule: `redact_patterns[i]` for the resource's own patterns, the
   * detector's name (`email`, `phone`, ...) for built-in detectors. Rules without a match are
   * absent.
   */
  readonly redactionsByRule: Readonly<Record<string, number>>;
}

/**
 * What a redaction pattern must be, as error messages say it: RE2 guarantees matching in time
 * linear in the input, so no pattern can hang a worker (no catastrophic backtracking on `(a+)+$`);
 * the price is no lookarounds and no backreferences.
 */
export const REDACT_PATTERN_ALLOWED =
  'expected a regular expression RE2 accepts (matched in linear time: no lookarounds, no backreferences)';

/**
 * Compiles a redaction pattern with RE2 syntax and semantics (re2js, a pure-JavaScript port of
 * RE2/J: linear-time matching, Unicode code points, `\b` an ASCII word boundary; see
 * docs/decisions.md for why not re2-wasm). Test with `.test(text)` (a match anywhere).
 * @throws RE2JSSyntaxException with RE2's reason when RE2 does not accept the pattern.
 */
export function compileRedactPattern(source: string): RE2JS {
  return RE2JS.compile(source);
}

/**
 * A compiled policy: one RE2 program per rule (the user's patterns, then the detectors in
 * {@link DETECTORS} order) plus their alternation, used only to answer "does anything match?".
 * Matching behaves as the alternation `p0|p1|...` would (leftmost match first; at the same
 * position the first rule wins, with its own extent) except that a match a detector's check
 * rejects is not a match, so the other rules may still take that text.
 */
interface CompiledPolicy {
  /** The rules' alternation; undefined when the policy has no rule. */
  readonly any: RE2JS | undefined;
  /** Per rule, in order. */
  readonly rules: readonly RE2JS[];
  /** Per rule, in order: the detector's check, if any. */
  readonly checks: ReadonlyArray<((match: string) => boolean) | undefined>;
  /** Per rule, in order: `redact_patterns[i]` or the detector's name. */
  readonly names: readonly string[];
}

const compiled = new WeakMap<RedactionPolicy, CompiledPolicy>();

function compile(policy: RedactionPolicy): CompiledPolicy {
  let result = compiled.get(policy);
  if (result) return result;
  const rules = policy.redactPatterns.map((source, i) => {
    try {
      return compileRedactPattern(source);
    } catch (error) {
      throw new PolicyError(`privacy_policy.redact_patterns[${i}]: ${REDACT_PATTERN_ALLOWED}`, {
        cause: error,
      });
    }
  });
  const detectors = DETECTORS.filter((name) => policy.detectors?.includes(name));
  const sources = [...policy.redactPatterns, ...detectors.map((d) => DETECTOR_RULES[d].pattern)];
  result = {
    any:
      sources.length === 0
        ? undefined
        : compileRedactPattern(sources.map((p) => `(?:${p})`).join('|')),
    rules: [...rules, ...detectors.map((d) => compileRedactPattern(DETECTOR_RULES[d].pattern))],
    checks: [
      ...policy.redactPatterns.map(() => undefined),
      ...detectors.map((d) => DETECTOR_RULES[d].check),
    ],
    names: [...policy.redactPatterns.map((_, i) => `redact_patterns[${i}]`), ...detectors],
  };
  compiled.set(policy, result);
  return result;
}

/**
 * Every match of the policy's rules in `text`, left to right, with the index of the rule that
 * produced it; `replace` returns the text for a match (the match itself to keep it). Returns
 * `text` itself when nothing changed.
 *
 * Why this shape (bench:privacy, docs/decisions.md "Privacy"): re2js answers "any match?" with a
 * DFA about 100x faster than it finds match positions, and most texts have no match, so they pay
 * only for that; finding is then done per rule (each a small program, skipped when its own DFA
 * finds nothing), which is several times faster than finding with the whole alternation.
 */
function replaceRules(
  { any, rules, checks }: CompiledPolicy,
  text: string,
  replace: (match: string, rule: number) => string,
): string {
  if (any === undefined || text === '' || !any.test(text)) return text;
  const matchers = rules.map((rule) =>
    rules.length === 1 || rule.test(text) ? rule.matcher(text) : undefined,
  );
  /** Per rule: its next match at or after the scan position, as [start, end], or undefined. */
  const next: Array<[number, number] | undefined> = matchers.map((m) =>
    m?.find() ? [m.start(), m.end()] : undefined,
  );
  const advance = (i: number, from: number) => {
    const m = matchers[i]!;
    next[i] = from <= text.length && m.find(from) ? [m.start(), m.end()] : undefined;
  };
  let out = '';
  let last = 0;
  let pos = 0;
  let changed = false;
  for (;;) {
    let rule = -1;
    for (let i = 0; i < next.length; i++) {
      const at = next[i];
      if (at === undefined) continue;
      if (at[0] < pos) {
        advance(i, pos);
        if (next[i] === undefined) continue;
      }
      if (rule === -1 || next[i]![0] < next[rule]![0]) rule = i;
    }
    if (rule === -1) break;
    const [start, end] = next[rule]!;
    const match = text.slice(start, end);
    const check = checks[rule];
    if (check && !check(match)) {
      advance(rule, start + 1); // not a match of this rule; the others may still take it
      continue;
    }
    const replaced = replace(match, rule);
    if (replaced !== match) {
      out += text.slice(last, start) + replaced;
      last = end;
      changed = true;
    }
    pos = end > start ? end : end + 1;
  }
  return changed ? out + text.slice(last) : text;
}

/** `mask`: every character but the last 4 as `*`; all of them for 8 characters or fewer. */
export function maskOf(match: string): string {
  const chars = [...match];
  const keep = chars.length > 8 ? 4 : 0;
  return '*'.repeat(chars.length - keep) + chars.slice(chars.length - keep).join('');
}

/**
 * Applies a privacy policy to messages before they are stored or enqueued (DESIGN.md invariant
 * 6): drops messages whose role is non-persistable and replaces every match of every pattern
 * in `content`, `name`, and metadata keys and string values according to the policy's action.
 * Idempotent as long as the redaction string (or a `hash` pseudonym) matches no pattern (checked
 * by the schema), so the producer and the processor can both apply it.
 * With no policy, returns the messages unchanged.
 * @throws PolicyError when a pattern does not compile, or the action is `hash` and no key is
 *   configured (fail closed: nothing is stored).
 */
export function applyPrivacy<M extends Pick<Message, 'role' | 'content' | 'metadata' | 'name'>>(
  policy: RedactionPolicy | undefined,
  messages: readonly M[],
): PrivacyResult<M> {
  if (!policy) return { kept: [...messages], dropped: 0, redactions: 0, redactionsByRule: {} };
  const rules = compile(policy);
  const action = policy.action ?? 'redact';
  const { pseudonym } = policy;
  if (action === 'hash' && pseudonym === undefined) {
    throw new PolicyError(
      'privacy_policy.action is hash but no hash key is configured (privacy_policy.hash_key_env)',
    );
  }
  const replacement = (match: string) =>
    action === 'mask'
      ? maskOf(match)
      : action === 'hash' && pseudonym
        ? PSEUDONYM_PATTERN.test(match)
          ? match
          : pseudonym(match)
        : policy.defaultRedactionString;
  const kept: M[] = [];
  let dropped = 0;
  let redactions = 0;
  const byRule: Record<string, number> = {};
  for (const message of messages) {
    if (policy.nonPersistableMessageTypes.includes(message.role)) {
      dropped += 1;
      continue;
    }
    const counted: string[] = [];
    const redact = (text: string): string =>
      replaceRules(rules, text, (match, rule) => {
        const replaced = replacement(match);
        if (replaced !== match) {
          redactions += 1; // an existing pseudonym is left as it is
          counted.push(rules.names[rule]!);
        }
        return replaced;
      });
    const before = redactions;
    const content = redact(message.content);
    const name = message.name === undefined ? undefined : redact(message.name);
    const metadata = message.metadata
      ? Object.fromEntries(
          Object.entries(message.metadata).map(([k, v]) => [
            redact(k),
            typeof v === 'string' ? redact(v) : v,
          ]),
        )
      : undefined;
    if (action === 'drop' && redactions > before) {
      dropped += 1;
      redactions = before;
      continue;
    }
    for (const name of counted) byRule[name] = (byRule[name] ?? 0) + 1;
    kept.push(
      redactions === before
        ? message
        : {
            ...message,
            content,
            ...(name !== undefined ? { name } : {}),
            ...(metadata ? { metadata } : {}),
          },
    );
  }
  return { kept, dropped, redactions, redactionsByRule: byRule };
}

/**
 * The index of the first pattern of `policy` that matches `text`, or undefined. Used to refuse
 * identifiers (memory keys) that would carry redactable data into Redis key names, job data and
 * logs, where it cannot be redacted.
 * @throws PolicyError when a pattern does not compile.
 */
export function findRedactable(
  policy: RedactionPolicy | undefined,
  text: string,
): number | undefined {
  if (!policy) return undefined;
  const rules = compile(policy);
  let found: number | undefined;
  replaceRules(rules, text, (match, rule) => {
    found ??= rule;
    return match;
  });
  return found;
}
