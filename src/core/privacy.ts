import { createHmac, hkdfSync } from 'node:crypto';
import { RE2JS } from 're2js';
import { PolicyError } from './errors.js';
import type { MemoryRef } from './memory-key.js';
import { MessageSchema, type Role } from './message.js';

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
 *   under the same key and `privacy_scope` ({@link PRIVACY_SCOPES}) always gives the same
 *   `pii_<16 hex>`, so "the same address again" stays visible to the agent while the address
 *   does not;
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
  readonly pseudonym?: Pseudonymizer;
  /**
   * Whose pseudonyms the `hash` action makes ({@link PRIVACY_SCOPES}, the resource's
   * `privacy_scope`); default `global`. Other actions ignore it.
   */
  readonly scope?: PrivacyScope;
}

/**
 * `privacy_scope` values: how far one `hash` pseudonym links the same text.
 * - `global`: the same text gives the same pseudonym in every memory instance whose resource
 *   uses the same hash key (every project and resource sharing it);
 * - `session`: one pseudonym space per memory instance (project, resource, key): the same text
 *   gives different pseudonyms in two instances, so they cannot be linked through it.
 */
export const PRIVACY_SCOPES = ['global', 'session'] as const;
/** One of {@link PRIVACY_SCOPES}. */
export type PrivacyScope = (typeof PRIVACY_SCOPES)[number];

/**
 * The `hash` action's pseudonym function ({@link createPseudonymizer}): `match` under the scope
 * input `scope` (from {@link pseudonymScopeOf}; `''`, the default, is the `global` scope).
 */
export type Pseudonymizer = (match: string, scope?: string) => string;

/**
 * The scope input of a `hash` pseudonym: `''` for `global`; for `session`, the memory instance
 * as the JSON text `["<project>","<resource>","<key>"]` (unambiguous: JSON escapes every
 * separator). Pure.
 * @throws PolicyError for `session` without `ref` (fail closed: a pseudonym made without the
 *   instance would link instances the scope promises to keep apart).
 */
export function pseudonymScopeOf(scope: PrivacyScope, ref: MemoryRef | undefined): string {
  if (scope === 'global') return '';
  if (ref === undefined) {
    throw new PolicyError(
      'privacy_scope is session but no memory instance was given to pseudonymise for (pass the MemoryRef to applyPrivacy)',
    );
  }
  return JSON.stringify([ref.project, ref.resource, ref.key]);
}

/** Shortest accepted `hash` key, in characters (128 bits as 32 hex or ~22 base64 characters). */
export const HASH_KEY_MIN_CHARS = 16;

/**
 * Shape of a `hash` pseudonym: `pii_` then 16 lowercase hex digits. The `pii_` prefix keeps a
 * word boundary away from the digits, so no built-in detector (phone, card, IP) can match a
 * pseudonym and hashing stays idempotent.
 */
export const PSEUDONYM_PATTERN = /^pii_[0-9a-f]{16}$/;

/** Derived scope keys a pseudonymizer keeps (then it starts over): 1,024 instances. */
const SCOPE_KEY_CACHE_SIZE = 1024;

/**
 * The `hash` action's pseudonym function: `pii_` + the first 16 hex digits (64 bits) of
 * HMAC-SHA256(k, match) (RFC 2104), where k is the key itself for the `global` scope (`scope`
 * `''`), else the scope's own key HKDF-SHA256(key, salt empty, info `memq privacy_scope ` +
 * scope, 32 bytes) (RFC 5869), so pseudonyms of two scopes cannot be linked without the key.
 * Keyed, so a dictionary of e-mail addresses cannot be hashed offline to reverse it without the
 * key; stable, so producer and worker (same key, same scope) agree.
 * @throws PolicyError when the key is shorter than {@link HASH_KEY_MIN_CHARS}.
 */
export function createPseudonymizer(key: string): Pseudonymizer {
  if (key.length < HASH_KEY_MIN_CHARS) {
    throw new PolicyError(
      `privacy hash key: expected at least ${HASH_KEY_MIN_CHARS} characters, got ${key.length}`,
    );
  }
  const scopeKeys = new Map<string, Buffer>();
  const keyOf = (scope: string): string | Buffer => {
    if (scope === '') return key;
    let derived = scopeKeys.get(scope);
    if (derived === undefined) {
      if (scopeKeys.size >= SCOPE_KEY_CACHE_SIZE) scopeKeys.clear();
      derived = Buffer.from(hkdfSync('sha256', key, '', `memq privacy_scope ${scope}`, 32));
      scopeKeys.set(scope, derived);
    }
    return derived;
  };
  return (match, scope = '') =>
    `pii_${createHmac('sha256', keyOf(scope)).update(match).digest('hex').slice(0, 16)}`;
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
  /** Messages to store, every field redacted (see {@link applyPrivacy}), order kept. */
  readonly kept: M[];
  /** Number of messages dropped: their role is non-persistable, or action `drop` and a match. */
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
 * Message fields {@link applyPrivacy} does not read, because their schema format cannot carry
 * free text (`MessageSchema` in message.ts): `id` is a ULID (26 Crockford base32 characters),
 * `created_at` an ISO-8601 date-time, `role` one of `ROLES`. Every other field, including any field
 * added to the message schema later, goes through the policy. A value of an exempt field that is
 * not of its format (a job built around `MemoryClient`) is not exempt: it is redacted like any
 * other. Adding a name here needs a schema that refuses free text for it
 * (test/unit/core/privacy-fields.test.ts checks both).
 */
export const PRIVACY_EXEMPT_FIELDS = ['id', 'created_at', 'role'] as const;

/**
 * A `created_at` exempt from the policy: at most 3 fractional-second digits (milliseconds, what
 * memq assigns). The schema accepts any number of them, so a longer fraction could carry a card or
 * phone number; such a value goes through the policy like free text (and a redacted one then
 * fails the job contract: nothing is stored).
 */
const EXEMPT_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2})$/;

/** True when `value` is of the format of exempt field `field` (the stored message's schema). */
const EXEMPT_FORMAT: ReadonlyMap<string, (value: unknown) => boolean> = new Map(
  PRIVACY_EXEMPT_FIELDS.map((field) => {
    const schema = MessageSchema.shape[field];
    return [
      field,
      (value: unknown) =>
        typeof value === 'string' &&
        schema.safeParse(value).success &&
        (field !== 'created_at' || EXEMPT_DATE_TIME.test(value)),
    ];
  }),
);

/**
 * The text a match becomes under `policy`'s action; `drop` gives the redaction string (a caller
 * that drops whole messages decides that before it uses the text).
 * @param ref The memory instance the text belongs to (the `session` scope's input).
 * @throws PolicyError when the action is `hash` and no key is configured, or the scope is
 *   `session` and `ref` is absent (fail closed, before any text is read).
 */
function replacementFor(
  policy: RedactionPolicy,
  ref: MemoryRef | undefined,
): (match: string) => string {
  const action = policy.action ?? 'redact';
  const { pseudonym } = policy;
  if (action === 'mask') return maskOf;
  if (action === 'hash') {
    if (pseudonym === undefined) {
      throw new PolicyError(
        'privacy_policy.action is hash but no hash key is configured (privacy_policy.hash_key_env)',
      );
    }
    const scope = pseudonymScopeOf(policy.scope ?? 'global', ref);
    return (match) => (PSEUDONYM_PATTERN.test(match) ? match : pseudonym(match, scope));
  }
  return () => policy.defaultRedactionString;
}

/** True for `{}`-like objects (JSON objects), as opposed to class instances (Date, Map, ...). */
function isPlainObject(value: object): value is Record<string, unknown> {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * `value` with `redact` applied to every string leaf and object key at any depth, and to the
 * decimal text of every number (a number whose text changed becomes that text, a string).
 * Booleans, null and undefined stay. Returns `value` itself when nothing changed. Two keys of one
 * object that redact to the same text are kept apart by a `#2`, `#3`... suffix, so no entry is lost.
 * @throws PolicyError for a value JSON cannot hold (a function, a symbol, a class instance):
 *   the policy cannot vouch for it, so nothing is stored.
 */
function redactLeaves(value: unknown, redact: (text: string) => string, where: string): unknown {
  switch (typeof value) {
    case 'string':
      return redact(value);
    case 'number':
    case 'bigint': {
      const text = String(value);
      const redacted = redact(text);
      return redacted === text ? value : redacted;
    }
    case 'boolean':
    case 'undefined':
      return value;
    case 'object': {
      if (value === null) return value;
      if (Array.isArray(value)) {
        const list: readonly unknown[] = value;
        let out: unknown[] | undefined;
        for (let i = 0; i < list.length; i++) {
          const item = list[i];
          const redacted = redactLeaves(item, redact, `${where}[${i}]`);
          if (redacted !== item) (out ??= [...list])[i] = redacted;
        }
        return out ?? value;
      }
      if (isPlainObject(value)) return redactEntries(value, redact, where, never, never);
      throw new PolicyError(
        `${where}: the privacy policy cannot read a ${(value as { constructor?: { name?: string } }).constructor?.name ?? 'class instance'}; expected JSON values (strings, numbers, booleans, null, arrays, plain objects)`,
      );
    }
  }
  throw new PolicyError(
    `${where}: the privacy policy cannot read a ${typeof value}; expected JSON values (strings, numbers, booleans, null, arrays, plain objects)`,
  );
}

/**
 * {@link redactLeaves} for an object: every key and value, except that a key `fixedKey` accepts is
 * kept as it is (a field name of the schema, not data) and the value of a key `exempt` accepts is
 * kept too. Entries are rebuilt (in order, with `Object.fromEntries`, so a `__proto__` key stays a
 * plain key) only when something changed.
 */
function redactEntries(
  object: Record<string, unknown>,
  redact: (text: string) => string,
  where: string,
  fixedKey: (key: string) => boolean,
  exempt: (key: string, value: unknown) => boolean,
): Record<string, unknown> {
  const keys = Object.keys(object);
  /** The entries so far, once something changed (copied lazily: most objects have no match). */
  let out: Array<[string, unknown]> | undefined;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const value = object[key];
    const newKey = fixedKey(key) ? key : redact(key);
    const newValue = exempt(key, value) ? value : redactLeaves(value, redact, `${where}.${key}`);
    if (out === undefined && (newKey !== key || newValue !== value)) {
      out = keys.slice(0, i).map((k) => [k, object[k]]);
    }
    out?.push([newKey, newValue]);
  }
  if (out === undefined) return object;
  const taken = new Set<string>();
  for (const entry of out) {
    const base = entry[0];
    for (let n = 2; taken.has(entry[0]); n++) entry[0] = `${base}#${n}`;
    taken.add(entry[0]);
  }
  return Object.fromEntries(out);
}

const never = () => false;
/** The message schema's field names: keys that name a field, not data, so never redacted. */
const MESSAGE_FIELDS: ReadonlySet<string> = new Set(Object.keys(MessageSchema.shape));
const isMessageField = (key: string) => MESSAGE_FIELDS.has(key);
const isExemptValue = (key: string, value: unknown) => EXEMPT_FORMAT.get(key)?.(value) === true;

/**
 * Applies a privacy policy to messages before they are stored or enqueued (docs/architecture.md,
 * invariant 6): drops messages whose role is non-persistable, then replaces every match of every rule in
 * every field of the message (see {@link redactLeaves}) according to the policy's action: every
 * string and number leaf and every object key at any depth (`content`, `name`, `tool_call_id`,
 * metadata keys and values, and any field the schema gains later), except the fields of
 * {@link PRIVACY_EXEMPT_FIELDS} while their value has their format, and the message's own field
 * names (`MessageSchema`'s keys: names, not data; any other key of a message is redacted). A
 * number whose decimal text matches becomes the replacement text (a string). With action `drop`,
 * a message with a match in any field is dropped. Counts cover matches in every field.
 * Idempotent as long as the redaction string (or a `hash` pseudonym) matches no pattern (checked
 * by the schema), so the producer and the processor can both apply it.
 * With no policy, returns the messages unchanged. `M`: any object with a `role`; the result has
 * `M`'s shape except that a matched number leaf is a string.
 * @param ref The memory instance the messages belong to: the scope input of `hash` pseudonyms
 *   under `privacy_scope: session` ({@link pseudonymScopeOf}); not read otherwise.
 * @throws PolicyError when a pattern does not compile, the action is `hash` and no key is
 *   configured, the scope is `session` and `ref` is absent, or a message holds a value JSON
 *   cannot (fail closed: nothing is stored).
 */
export function applyPrivacy<M extends { readonly role: Role }>(
  policy: RedactionPolicy | undefined,
  messages: readonly M[],
  ref?: MemoryRef,
): PrivacyResult<M> {
  if (!policy) return { kept: [...messages], dropped: 0, redactions: 0, redactionsByRule: {} };
  const rules = compile(policy);
  const drop = policy.action === 'drop';
  const replacement = replacementFor(policy, ref);
  const kept: M[] = [];
  let dropped = 0;
  let redactions = 0;
  const byRule: Record<string, number> = {};
  const counted: number[] = [];
  const redact = (text: string): string =>
    replaceRules(rules, text, (match, rule) => {
      const replaced = replacement(match);
      if (replaced !== match) counted.push(rule); // an existing pseudonym is left as it is
      return replaced;
    });
  for (const [index, message] of messages.entries()) {
    if (policy.nonPersistableMessageTypes.includes(message.role)) {
      dropped += 1;
      continue;
    }
    counted.length = 0;
    const redacted = redactEntries(
      message,
      redact,
      `messages[${index}]`,
      isMessageField,
      isExemptValue,
    ) as unknown as M;
    if (counted.length > 0 && drop) {
      dropped += 1;
      continue;
    }
    redactions += counted.length;
    for (const rule of counted) byRule[rules.names[rule]!] = (byRule[rules.names[rule]!] ?? 0) + 1;
    kept.push(redacted);
  }
  return { kept, dropped, redactions, redactionsByRule: byRule };
}

/** Outcome of {@link applyPrivacyToText}. */
export interface TextPrivacyResult {
  /** The text with every match replaced. */
  readonly text: string;
  /** Matches replaced. */
  readonly redactions: number;
  /** Matches replaced, by rule, as in {@link PrivacyResult.redactionsByRule}. */
  readonly redactionsByRule: Readonly<Record<string, number>>;
}

/**
 * Applies a privacy policy to one text that is not a message and cannot be dropped, such as a
 * rolling summary (an LLM may echo or invent personal data): every match is replaced as the
 * action says, except that `drop` replaces it with `default_redaction_string` (dropping a summary
 * would lose the messages folded into it). Roles play no part. With no policy, `text` unchanged.
 * @param ref The memory instance the text belongs to, as in {@link applyPrivacy}.
 * @throws PolicyError when a pattern does not compile, the action is `hash` and no key is
 *   configured, or the scope is `session` and `ref` is absent (fail closed).
 */
export function applyPrivacyToText(
  policy: RedactionPolicy | undefined,
  text: string,
  ref?: MemoryRef,
): TextPrivacyResult {
  if (!policy) return { text, redactions: 0, redactionsByRule: {} };
  const rules = compile(policy);
  const replacement = replacementFor(policy, ref);
  let redactions = 0;
  const byRule: Record<string, number> = {};
  const redacted = replaceRules(rules, text, (match, rule) => {
    const replaced = replacement(match);
    if (replaced !== match) {
      redactions += 1;
      byRule[rules.names[rule]!] = (byRule[rules.names[rule]!] ?? 0) + 1;
    }
    return replaced;
  });
  return { text: redacted, redactions, redactionsByRule: byRule };
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
