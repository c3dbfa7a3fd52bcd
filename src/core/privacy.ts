import { createHmac, hkdfSync } from 'node:crypto';
import { RE2JS } from 're2js';
import { PolicyError } from './errors.js';
import type { MemoryRef } from './memory-key.js';
import { MessageSchema, type MessagePrivacy, type Role } from './message.js';

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
 * Booleans, null and undefined stay. Returns `value` itself when nothing changed. A key the policy
 * changes that would equal another key of its object gets a `#2`, `#3`... suffix, so no entry is
 * lost ({@link redactEntries}).
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
        return redactElements(value, where, (item, at) => redactLeaves(item, redact, at));
      }
      if (isPlainObject(value)) {
        return redactEntries(value, redact, where, never, (_key, item, at) =>
          redactLeaves(item, redact, at),
        );
      }
      throw new PolicyError(
        `${where}: the privacy policy cannot read a ${(value as { constructor?: { name?: string } }).constructor?.name ?? 'class instance'}; expected JSON values (strings, numbers, booleans, null, arrays, plain objects)`,
      );
    }
  }
  throw new PolicyError(
    `${where}: the privacy policy cannot read a ${typeof value}; expected JSON values (strings, numbers, booleans, null, arrays, plain objects)`,
  );
}

/** `list` with `redactItem` applied to each element; `list` itself when nothing changed. */
function redactElements(
  list: readonly unknown[],
  where: string,
  redactItem: (item: unknown, where: string) => unknown,
): readonly unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < list.length; i++) {
    const item = list[i];
    const redacted = redactItem(item, `${where}[${i}]`);
    if (redacted !== item) (out ??= [...list])[i] = redacted;
  }
  return out ?? list;
}

/**
 * An object with every key redacted, except the keys `fixedKey` accepts (field names of the
 * schema, not data), and every value replaced by `redactValue`'s. Entries are rebuilt (in order,
 * with `Object.fromEntries`, so a `__proto__` key stays a plain key) only when something changed.
 * Keys that `fixedKey` accepts or the policy leaves unchanged keep their text; a key the policy
 * changes that would equal one of them or an earlier changed key gets `#2`, `#3`... (in order), so
 * no entry is lost and no field is shadowed.
 */
function redactEntries(
  object: Record<string, unknown>,
  redact: (text: string) => string,
  where: string,
  fixedKey: (key: string) => boolean,
  redactValue: (key: string, value: unknown, where: string) => unknown,
): Record<string, unknown> {
  const keys = Object.keys(object);
  /** The entries so far, once something changed (copied lazily: most objects have no match). */
  let out: Array<[string, unknown]> | undefined;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const value = object[key];
    const newKey = fixedKey(key) ? key : redact(key);
    const newValue = redactValue(key, value, `${where}.${key}`);
    if (out === undefined && (newKey !== key || newValue !== value)) {
      out = keys.slice(0, i).map((k) => [k, object[k]]);
    }
    out?.push([newKey, newValue]);
  }
  if (out === undefined) return object;
  /** Keys kept as they are, reserved before any changed key is given its text. */
  const keeps = (entry: [string, unknown], i: number) => fixedKey(keys[i]!) || entry[0] === keys[i];
  const taken = new Set<string>(out.filter(keeps).map((entry) => entry[0]));
  out.forEach((entry, i) => {
    if (keeps(entry, i)) return;
    const base = entry[0];
    for (let n = 2; taken.has(entry[0]); n++) entry[0] = `${base}#${n}`;
    taken.add(entry[0]);
  });
  return Object.fromEntries(out);
}

const never = () => false;

/**
 * What the message schema fixes at one position of a message, derived from `MessageSchema`
 * (message.ts) by {@link mutableNodeOf}, so the policy keeps it and the redacted message still
 * passes the schema: the field names of an object (`type`, `text`, `image_url`, `url`, `detail`,
 * `id`, `function`, `name`, `arguments`, ...) and the values of an enum or literal (`type:
 * 'text'`, `detail: 'low'`, ...), kept only while the value is one of them. Everything else at
 * the position is data: free keys (a record's, or a key the schema does not name) and any other
 * string or number go through the policy.
 */
interface SchemaNode {
  /** An object's field names (kept as they are), each with the shape of its value. */
  readonly fields?: ReadonlyMap<string, SchemaNode>;
  /** An array's elements. */
  readonly element?: SchemaNode;
  /** A record's values (its keys are data). */
  readonly entry?: SchemaNode;
  /** Enum and literal values kept as they are. */
  readonly values?: ReadonlySet<string>;
  /**
   * A text with a meaning of its own: `json` is JSON text ({@link JSON_TEXT_PATHS}), redacted
   * leaf by leaf, then as a whole ({@link redactJsonText}); `tool_call_id` is a tool-call id ({@link TOOL_CALL_ID_PATHS}), redacted and
   * kept distinct per batch.
   */
  readonly text?: 'json' | 'tool_call_id';
}

type MutableNode = {
  fields?: Map<string, MutableNode>;
  element?: MutableNode;
  entry?: MutableNode;
  values?: Set<string>;
  text?: SchemaNode['text'];
};

type ZodDef = { readonly type: string } & Readonly<Record<string, unknown>>;
const zodDefOf = (schema: unknown): ZodDef => (schema as { _zod: { def: ZodDef } })._zod.def;

/** One node for the options of a union: every field name, element, entry and value of any. */
function mergeNodes(nodes: readonly MutableNode[]): MutableNode {
  const merged: MutableNode = {};
  for (const node of nodes) {
    if (node.fields) {
      merged.fields ??= new Map();
      for (const [key, child] of node.fields) {
        const known = merged.fields.get(key);
        merged.fields.set(key, known ? mergeNodes([known, child]) : child);
      }
    }
    if (node.element)
      merged.element = merged.element ? mergeNodes([merged.element, node.element]) : node.element;
    if (node.entry)
      merged.entry = merged.entry ? mergeNodes([merged.entry, node.entry]) : node.entry;
    if (node.values) merged.values = new Set([...(merged.values ?? []), ...node.values]);
  }
  return merged;
}

/**
 * The {@link SchemaNode} of a zod schema: objects, arrays, records, unions (discriminated too),
 * enums and literals are read; wrappers (optional, nullable, default, readonly) are looked
 * through; anything else (string, number, boolean, null, a shape this does not know) is data,
 * redacted whole (the safe side: a new kind of field is redacted, never skipped).
 */
function mutableNodeOf(schema: unknown): MutableNode {
  const def = zodDefOf(schema);
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'nonoptional':
      return mutableNodeOf(def.innerType);
    case 'object':
      return {
        fields: new Map(
          Object.entries(def.shape as Record<string, unknown>).map(([key, field]) => [
            key,
            mutableNodeOf(field),
          ]),
        ),
      };
    case 'array':
      return { element: mutableNodeOf(def.element) };
    case 'record':
      return { entry: mutableNodeOf(def.valueType) };
    case 'union':
      return mergeNodes((def.options as unknown[]).map(mutableNodeOf));
    case 'enum':
      return {
        values: new Set(
          Object.values(def.entries as Record<string, unknown>).filter(
            (v): v is string => typeof v === 'string',
          ),
        ),
      };
    case 'literal':
      return {
        values: new Set(
          (def.values as unknown[]).filter((v): v is string => typeof v === 'string'),
        ),
      };
    default:
      return {};
  }
}

/**
 * Where a message holds tool-call ids: `tool_calls[].id` and `tool_call_id` (field names; `[]`
 * is every element of an array). {@link applyPrivacy} redacts them like any text, then keeps the
 * ids of one batch distinct ({@link applyPrivacy}, "Tool-call ids").
 */
export const TOOL_CALL_ID_PATHS: readonly (readonly string[])[] = [
  ['tool_calls', '[]', 'id'],
  ['tool_call_id'],
];

/**
 * Where a message holds JSON text: a tool call's `arguments` (message.ts, `ToolCallSchema`). The
 * policy redacts the JSON's leaves, then the whole text as text ({@link redactJsonText}): the text
 * stays valid JSON unless a rule matches across leaves (a key with its value).
 */
export const JSON_TEXT_PATHS: readonly (readonly string[])[] = [
  ['tool_calls', '[]', 'function', 'arguments'],
];

/**
 * The node at `path` under `root`.
 * @throws Error when the schema has no such position (message.ts changed: update the paths).
 */
function nodeAt(root: MutableNode, path: readonly string[]): MutableNode {
  let node: MutableNode | undefined = root;
  for (const step of path) {
    node = step === '[]' ? node?.element : node?.fields?.get(step);
    if (node === undefined) {
      throw new Error(`privacy: MessageSchema has no ${path.join('.')} (update privacy.ts)`);
    }
  }
  return node;
}

/** `MessageSchema`'s {@link SchemaNode}, with the tool-call ids and JSON texts marked. */
const MESSAGE_NODE: SchemaNode = (() => {
  const root = mutableNodeOf(MessageSchema);
  for (const path of TOOL_CALL_ID_PATHS) nodeAt(root, path).text = 'tool_call_id';
  for (const path of JSON_TEXT_PATHS) nodeAt(root, path).text = 'json';
  return root;
})();

/** The message schema's field names: keys that name a field, not data, so never redacted. */
const MESSAGE_FIELDS: ReadonlyMap<string, SchemaNode> = MESSAGE_NODE.fields!;
const isMessageField = (key: string) => MESSAGE_FIELDS.has(key);
const isExemptValue = (key: string, value: unknown) => EXEMPT_FORMAT.get(key)?.(value) === true;

/** What the walk of one message applies to a text. */
interface Walk {
  /** The policy on one text (matches counted). */
  readonly redact: (text: string) => string;
  /** A tool-call id: redacted, then kept distinct within the batch ({@link toolCallIds}). */
  readonly toolCallId: (id: string) => string;
}

/** `value` at the position `node` describes, redacted (see {@link SchemaNode}). */
function redactAt(
  value: unknown,
  node: SchemaNode | undefined,
  walk: Walk,
  where: string,
): unknown {
  if (node === undefined) return redactLeaves(value, walk.redact, where);
  if (typeof value === 'string') {
    if (node.values?.has(value)) return value;
    if (node.text === 'json') return redactJsonText(value, walk.redact);
    if (node.text === 'tool_call_id') return walk.toolCallId(value);
    return walk.redact(value);
  }
  if (typeof value === 'object' && value !== null) {
    const { element, fields, entry } = node;
    if (Array.isArray(value) && element) {
      return redactElements(value, where, (item, at) => redactAt(item, element, walk, at));
    }
    if (!Array.isArray(value) && isPlainObject(value)) {
      if (fields) {
        return redactEntries(
          value,
          walk.redact,
          where,
          (key) => fields.has(key),
          (key, item, at) => redactAt(item, fields.get(key), walk, at),
        );
      }
      if (entry) {
        return redactEntries(value, walk.redact, where, never, (_key, item, at) =>
          redactAt(item, entry, walk, at),
        );
      }
    }
  }
  return redactLeaves(value, walk.redact, where);
}

/** Every string of `value` at a position {@link SchemaNode.text} `text` marks. */
function forEachMarkedText(
  value: unknown,
  node: SchemaNode | undefined,
  text: NonNullable<SchemaNode['text']>,
  visit: (found: string) => void,
): void {
  if (node === undefined || value === null || value === undefined) return;
  if (typeof value === 'string') {
    if (node.text === text) visit(value);
  } else if (Array.isArray(value)) {
    for (const item of value as unknown[]) forEachMarkedText(item, node.element, text, visit);
  } else if (typeof value === 'object' && node.fields) {
    for (const [key, child] of node.fields) {
      forEachMarkedText((value as Record<string, unknown>)[key], child, text, visit);
    }
  }
}

/** JSON whitespace (RFC 8259, section 2). */
const isJsonSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
/** Characters of a JSON number after its first (RFC 8259, section 6). */
const isJsonNumberChar = (c: number) =>
  (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
/** A JSON number (RFC 8259, section 6), read from `lastIndex`. */
const JSON_NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
/** A JSON escape after the backslash (RFC 8259, section 7), read from `lastIndex`. */
const JSON_ESCAPE = /["\\/bfnrt]|u[0-9A-Fa-f]{4}/y;
const JSON_LITERALS = ['true', 'false', 'null'] as const;

/** The index after the JSON string starting at `start` (a `"`), or -1 when it is not one. */
function jsonStringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length;) {
    const c = text.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c < 0x20) return -1;
    if (c === 0x5c) {
      JSON_ESCAPE.lastIndex = i + 1;
      if (!JSON_ESCAPE.test(text)) return -1;
      i = JSON_ESCAPE.lastIndex;
    } else i += 1;
  }
  return -1;
}

/**
 * What {@link isJsonText} expects next: `value` (a document's start, after `:`, after `,` in an
 * array), `value]` (after `[`), `key}` (after `{`), `key` (after `,` in an object), `:` (after a
 * key), `,` (a comma or the container's close), `end` (only whitespace: the top-level value is
 * complete).
 */
type Next = 'value' | 'value]' | 'key}' | 'key' | ':' | ',' | 'end';

/**
 * True when `text` is one JSON text (RFC 8259), exactly when `JSON.parse` accepts it, checked
 * without building the value (JSON.parse takes seconds over an object of 100,000s of keys) and
 * without recursion (any depth). Linear time.
 */
function isJsonText(text: string): boolean {
  const containers: number[] = [];
  let next: Next = 'value';
  let i = 0;
  /** What follows a complete value. */
  const after = (): Next => (containers.length === 0 ? 'end' : ',');
  /** Closes the innermost container at `i`; returns what follows it. */
  const close = (): Next => {
    containers.pop();
    i += 1;
    return after();
  };
  for (;;) {
    while (i < text.length && isJsonSpace(text.charCodeAt(i))) i += 1;
    if (i >= text.length) return next === 'end';
    const c = text.charCodeAt(i);
    const open = containers[containers.length - 1];
    switch (next) {
      case 'end':
        return false;
      case ':':
        if (c !== 0x3a) return false;
        i += 1;
        next = 'value';
        break;
      case ',':
        if (c === 0x2c) {
          i += 1;
          next = open === 0x7b ? 'key' : 'value';
        } else if ((c === 0x7d && open === 0x7b) || (c === 0x5d && open === 0x5b)) next = close();
        else return false;
        break;
      case 'key}':
      case 'key':
        if (c === 0x7d && next === 'key}') {
          next = close();
          break;
        }
        if (c !== 0x22) return false;
        i = jsonStringEnd(text, i);
        if (i < 0) return false;
        next = ':';
        break;
      case 'value':
      case 'value]':
        if (c === 0x5d && next === 'value]') next = close();
        else if (c === 0x7b || c === 0x5b) {
          containers.push(c);
          i += 1;
          next = c === 0x7b ? 'key}' : 'value]';
        } else if (c === 0x22) {
          i = jsonStringEnd(text, i);
          if (i < 0) return false;
          next = after();
        } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
          JSON_NUMBER.lastIndex = i;
          if (!JSON_NUMBER.test(text)) return false;
          i = JSON_NUMBER.lastIndex;
          next = after();
        } else {
          const literal = JSON_LITERALS.find((l) => text.startsWith(l, i));
          if (literal === undefined) return false;
          i += literal.length;
          next = after();
        }
        break;
    }
  }
}

/**
 * Tool-call `arguments` under the policy. JSON text ({@link isJsonText}) goes through two passes:
 * 1. its leaves ({@link redactJsonLeaves}), decoded, so data hidden by JSON escapes (`\u0040` for
 *    `@`) is found, and the text stays valid JSON;
 * 2. the whole text the first pass left, as text, so a rule that needs a key and its value
 *    together (`(?i)password\W+\S+`, `"ssn"\s*:\s*"[^"]+"`) matches as it does in `content`.
 *    Privacy wins over shape: when this pass replaces anything, the result is usually no longer
 *    JSON (`{"user":"bob","password":"hunter2"}` becomes `{"user":"bob","[REDACTED]`).
 * A text that is not JSON is redacted as text. Every replacement of either pass is a match
 * (counted in `redactions` and `redactionsByRule`; under `drop` it drops the message), so a leaf
 * replaced in the first pass and then taken whole by a match of the second counts twice.
 * Idempotent as {@link applyPrivacy} is: the second pass leaves text in which no rule matches, and
 * when it replaced nothing the result is the first pass's JSON, whose leaves are already redacted.
 */
function redactJsonText(text: string, redact: (text: string) => string): string {
  return redact(isJsonText(text) ? redactJsonLeaves(text, redact) : text);
}

/**
 * JSON text with the policy applied to its leaves, so it stays valid JSON: every string (object
 * keys included, decoded first, so `\u0040` is an `@`) and the text of every number (as written,
 * so a 19-digit card number is read whole) is redacted; a changed string is written back as a JSON
 * string, and a changed number becomes a JSON string (as a number leaf of metadata does). `true`,
 * `false`, `null`, the structure and the whitespace stay as written, and so does every token
 * without a match; duplicate keys are each redacted. Keys of one object: a key the policy leaves
 * unchanged keeps its text; a changed key that would equal another key of its object (JSON.parse
 * keeps only the last of equal keys, so an entry would be lost) gets `#2`, `#3`... in order; keys
 * written equal stay equal. `text` must be JSON ({@link isJsonText}). One linear pass, no
 * recursion: any depth.
 */
function redactJsonLeaves(text: string, redact: (text: string) => string): string {
  type Edit = { readonly start: number; readonly end: number; text: string };
  /** Replacements in text order; a key's text is settled when its object closes. */
  const edits: Edit[] = [];
  /** Per open object: its changed keys (with their edit) and the keys the policy leaves as written. */
  type ObjectKeys = {
    changed: Array<{ key: string; redacted: string; edit: Edit }>;
    kept: Set<string>;
  };
  const objects: Array<ObjectKeys | undefined> = [];
  /** Gives each changed key of a closed object its text, around the keys kept as written. */
  const settle = ({ changed, kept }: ObjectKeys): void => {
    /** Text -> the key holding it. */
    const holders = new Map<string, string>([...kept].map((key) => [key, key]));
    /** Key -> its text. */
    const given = new Map<string, string>();
    for (const { key, redacted, edit } of changed) {
      let written = given.get(key);
      if (written === undefined) {
        written = redacted;
        for (let n = 2; holders.has(written); n++) written = `${redacted}#${n}`;
        holders.set(written, key);
        given.set(key, written);
      }
      edit.text = written === key ? text.slice(edit.start, edit.end) : JSON.stringify(written);
    }
  };
  for (let i = 0; i < text.length;) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let end = i + 1;
      let escaped = false;
      while (text.charCodeAt(end) !== 0x22) {
        if (text.charCodeAt(end) === 0x5c) {
          escaped = true;
          end += 2;
        } else end += 1;
      }
      end += 1;
      const decoded = escaped
        ? (JSON.parse(text.slice(i, end)) as string)
        : text.slice(i + 1, end - 1);
      const redacted = redact(decoded);
      let after = end;
      while (isJsonSpace(text.charCodeAt(after))) after += 1;
      const keys = objects[objects.length - 1];
      if (text.charCodeAt(after) === 0x3a && keys) {
        if (redacted === decoded) keys.kept.add(decoded);
        else {
          const edit: Edit = { start: i, end, text: '' };
          edits.push(edit);
          keys.changed.push({ key: decoded, redacted, edit });
        }
      } else if (redacted !== decoded) {
        edits.push({ start: i, end, text: JSON.stringify(redacted) });
      }
      i = end;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < text.length && isJsonNumberChar(text.charCodeAt(end))) end += 1;
      const number = text.slice(i, end);
      const redacted = redact(number);
      if (redacted !== number) edits.push({ start: i, end, text: JSON.stringify(redacted) });
      i = end;
    } else {
      if (c === 0x7b) objects.push({ changed: [], kept: new Set() });
      else if (c === 0x5b) objects.push(undefined);
      else if (c === 0x7d || c === 0x5d) {
        const closed = objects.pop();
        if (closed) settle(closed);
      }
      i += 1;
    }
  }
  if (edits.length === 0) return text;
  let out = '';
  let last = 0;
  for (const edit of edits) {
    out += text.slice(last, edit.start) + edit.text;
    last = edit.end;
  }
  return out + text.slice(last);
}

/**
 * The tool-call ids of one batch (one {@link applyPrivacy} call): each id is redacted as text
 * (`redact`: matches counted at every occurrence), and the same id always gives the same text,
 * so a call and its result still match. Two different ids that would give the same text are kept
 * apart: an id the policy leaves as it is keeps its text (`reserve` them all first), and a
 * redacted id that would equal an id already given out gets `#2`, `#3`... in the order the batch
 * first holds it (messages in order; in a message, calls in order).
 */
function toolCallIds(quiet: (text: string) => string, redact: (text: string) => string) {
  /** Text given out -> the id it was given to. */
  const holders = new Map<string, string>();
  /** Id -> the text it was given. */
  const given = new Map<string, string>();
  return {
    /** Gives `id` its own text when the policy leaves it unchanged. */
    reserve: (id: string): void => {
      if (!given.has(id) && !holders.has(id) && quiet(id) === id) {
        holders.set(id, id);
        given.set(id, id);
      }
    },
    /** The text `id` is stored as. */
    map: (id: string): string => {
      const redacted = redact(id);
      const known = given.get(id);
      if (known !== undefined) return known;
      let text = redacted;
      for (let n = 2; holders.has(text); n++) text = `${redacted}#${n}`;
      holders.set(text, id);
      given.set(id, text);
      return text;
    },
  };
}

/**
 * Applies a privacy policy to messages before they are stored or enqueued (docs/architecture.md,
 * invariant 6): drops messages whose role is non-persistable, then replaces every match of every
 * rule in every field of the message according to the policy's action: every string and number
 * leaf and every object key at any depth (`content` and its parts, `name`, tool calls, `tool_call_id`,
 * metadata keys and values, and any field the schema gains later), except
 * - the fields of {@link PRIVACY_EXEMPT_FIELDS} while their value has their format;
 * - what `MessageSchema` fixes ({@link SchemaNode}): its field names at every depth (`role`,
 *   `content`, `type`, `text`, `image_url`, `url`, `detail`, `id`, `function`, `name`,
 *   `arguments`, ...) and its enum and literal values at their positions while the value is one
 *   of them (`type: 'text'`, `detail: 'low'`, `role: 'user'`), so a redacted message still
 *   passes the schema. Any other key or value is data.
 *
 * A number whose decimal text matches becomes the replacement text (a string). Tool-call
 * `arguments` ({@link JSON_TEXT_PATHS}) are JSON text: when they parse, their leaves are redacted
 * (a matched number becomes a string), then the whole text goes through the policy as text, so a
 * rule that needs a key and its value together matches as it would in `content`. The arguments
 * stay valid JSON unless that whole-text pass replaces something: privacy wins over shape (see
 * {@link redactJsonText}). Arguments that do not parse are redacted as text. Tool-call ids ({@link TOOL_CALL_ID_PATHS}) go through the
 * policy too; every action gives the same text for the same id, so a call and its result still
 * match, and two different ids of one batch that would give the same text are kept apart by a
 * `#2`, `#3`... suffix ({@link toolCallIds}); a call and a result in different batches match as
 * long as no suffix was needed.
 *
 * With action `drop`, a message with a match in any field is dropped. Counts cover matches in
 * every field. Idempotent as long as the redaction string (or a `hash` pseudonym) matches no
 * pattern (checked by the schema), so the producer and the processor can both apply it.
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
  const persistable = (m: M) => !policy.nonPersistableMessageTypes.includes(m.role);
  const ids = toolCallIds((text) => replaceRules(rules, text, replacement), redact);
  for (const message of messages) {
    if (persistable(message)) forEachMarkedText(message, MESSAGE_NODE, 'tool_call_id', ids.reserve);
  }
  const walk: Walk = { redact, toolCallId: ids.map };
  for (const [index, message] of messages.entries()) {
    if (!persistable(message)) {
      dropped += 1;
      continue;
    }
    counted.length = 0;
    const redacted = redactEntries(
      message,
      redact,
      `messages[${index}]`,
      isMessageField,
      (key, value, where) =>
        isExemptValue(key, value) ? value : redactAt(value, MESSAGE_FIELDS.get(key), walk, where),
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

/**
 * Rule name under which {@link applyInputPrivacy} counts the metadata values a message's
 * `privacy.redact_fields` replaced (in `redactionsByRule`).
 */
export const REDACT_FIELDS_RULE = 'redact_fields';

/** Outcome of {@link applyInputPrivacy}. */
export interface InputPrivacyResult<M> extends PrivacyResult<M> {
  /**
   * Messages marked `privacy.do_not_persist`: left out before anything else (not in `kept`, not
   * in `dropped`, not read by the policy).
   */
  readonly notPersisted: number;
}

/** The fields {@link applyInputPrivacy} reads of a submitted message. */
export interface InputMessage {
  /** The role. */
  readonly role: Role;
  /** Flat metadata; `privacy.redact_fields` names some of its keys. */
  readonly metadata?: Readonly<Record<string, unknown>> | undefined;
  /** Per-message privacy instructions (message.ts, `MessagePrivacySchema`). */
  readonly privacy?: MessagePrivacy | undefined;
}

/**
 * The producer's privacy step over validated submitted messages (docs/architecture.md,
 * "Producer path"): applies each message's own instructions (`privacy`, message.ts
 * `MessagePrivacySchema`), strips them, then applies the resource's policy ({@link applyPrivacy}).
 * - `do_not_persist: true`: the message is left out (counted in `notPersisted`), before the
 *   policy reads it, so it reaches no job, key or log.
 * - `redact_fields`: each named metadata field the message carries has its value replaced whole
 *   by the policy's replacement of the value's text (`redact` and `drop`: the redaction string;
 *   `mask`: {@link maskOf}; `hash`: the pseudonym), whatever the patterns say; without a policy,
 *   by `defaultRedactionString`. Numbers, booleans and null become that text (a string). Each
 *   value replaced counts once under {@link REDACT_FIELDS_RULE}. A name the message does not
 *   carry is ignored; the field's key still goes through the policy.
 * The resource's policy then applies to what remains, as for any message. Order is kept.
 * @param options `defaultRedactionString`: the replacement when there is no policy (the
 *   configuration's default of `privacy_policy.default_redaction_string`); `ref`: as in
 *   {@link applyPrivacy}.
 * @throws PolicyError as {@link applyPrivacy} does.
 */
export function applyInputPrivacy<M extends InputMessage>(
  policy: RedactionPolicy | undefined,
  messages: readonly M[],
  options: { readonly defaultRedactionString: string; readonly ref?: MemoryRef | undefined },
): InputPrivacyResult<Omit<M, 'privacy'>> {
  const fieldReplacement = policy
    ? replacementFor(policy, options.ref)
    : () => options.defaultRedactionString;
  let notPersisted = 0;
  let fieldRedactions = 0;
  const persisted: Array<Omit<M, 'privacy'>> = [];
  for (const message of messages) {
    const { privacy, ...rest } = message;
    if (privacy?.do_not_persist === true) {
      notPersisted += 1;
      continue;
    }
    const names = privacy?.redact_fields ?? [];
    const metadata = rest.metadata;
    if (names.length === 0 || metadata === undefined) {
      persisted.push(rest);
      continue;
    }
    const replaced: Record<string, unknown> = { ...metadata };
    for (const name of new Set(names)) {
      if (!Object.hasOwn(metadata, name)) continue;
      const value = metadata[name];
      const text = typeof value === 'string' ? value : String(value);
      const replacement = fieldReplacement(text);
      if (replacement !== value) {
        replaced[name] = replacement;
        fieldRedactions += 1;
      }
    }
    persisted.push({ ...rest, metadata: replaced });
  }
  const result = applyPrivacy(policy, persisted, options.ref);
  if (fieldRedactions === 0) return { ...result, notPersisted };
  return {
    ...result,
    notPersisted,
    redactions: result.redactions + fieldRedactions,
    redactionsByRule: {
      ...result.redactionsByRule,
      [REDACT_FIELDS_RULE]: (result.redactionsByRule[REDACT_FIELDS_RULE] ?? 0) + fieldRedactions,
    },
  };
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
