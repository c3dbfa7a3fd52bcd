import { RE2 } from 're2-wasm';
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
 * - `drop`: the whole message is not stored (counted in `dropped`, reported to the caller).
 */
export const PRIVACY_ACTIONS = ['redact', 'mask', 'drop'] as const;
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
}

/**
 * What a redaction pattern must be, as error messages say it: RE2 guarantees matching in time
 * linear in the input, so no pattern can hang a worker (no catastrophic backtracking on `(a+)+$`);
 * the price is no lookarounds and no backreferences.
 */
export const REDACT_PATTERN_ALLOWED =
  'expected a regular expression RE2 accepts (matched in linear time: no lookarounds, no backreferences)';

/**
 * Compiles a redaction pattern with RE2 (re2-wasm, flags `gu`).
 * @throws Error with RE2's reason when RE2 does not accept the pattern.
 */
export function compileRedactPattern(source: string): RE2 {
  return new RE2(source, 'gu');
}

/**
 * A policy compiled to one RE2 alternation, `(?P<memq_r0>p0)|(?P<memq_r1>p1)|...` (the user's
 * patterns, then the detectors in {@link DETECTORS} order), so each text is scanned once: one
 * WebAssembly call per field instead of one per rule (bench:privacy). At any position the first
 * rule that matches wins, and a match a detector's check rejects is left as it is.
 */
interface CompiledPolicy {
  /** Undefined when the policy has no rule. */
  readonly combined: RE2 | undefined;
  /** Per rule, in alternation order: the detector's check, if any. */
  readonly checks: ReadonlyArray<((match: string) => boolean) | undefined>;
}

const compiled = new WeakMap<RedactionPolicy, CompiledPolicy>();

function compile(policy: RedactionPolicy): CompiledPolicy {
  let result = compiled.get(policy);
  if (result) return result;
  policy.redactPatterns.forEach((source, i) => {
    try {
      compileRedactPattern(source); // each alone, so an error names its pattern
    } catch (error) {
      throw new PolicyError(`privacy_policy.redact_patterns[${i}]: ${REDACT_PATTERN_ALLOWED}`, {
        cause: error,
      });
    }
  });
  const detectors = DETECTORS.filter((name) => policy.detectors?.includes(name));
  const sources = [...policy.redactPatterns, ...detectors.map((d) => DETECTOR_RULES[d].pattern)];
  result = {
    combined:
      sources.length === 0
        ? undefined
        : compileRedactPattern(sources.map((p, i) => `(?P<memq_r${i}>${p})`).join('|')),
    checks: [
      ...policy.redactPatterns.map(() => undefined),
      ...detectors.map((d) => DETECTOR_RULES[d].check),
    ],
  };
  compiled.set(policy, result);
  return result;
}

/** Which rule of `policy` produced a match, from the replacer's named groups. */
function ruleOf(checks: CompiledPolicy['checks'], args: unknown[]): number {
  const groups = args.at(-1) as Record<string, string | undefined>;
  for (let i = 0; i < checks.length; i++) if (groups[`memq_r${i}`] !== undefined) return i;
  return -1;
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
 * in `content`, `name`, and metadata keys and string values with the redaction string. Idempotent as long as the redaction string itself
 * matches no pattern (so the producer and the processor can both apply it).
 * With no policy, returns the messages unchanged.
 * @throws PolicyError when a pattern does not compile (fail closed: nothing is stored).
 */
export function applyPrivacy<M extends Pick<Message, 'role' | 'content' | 'metadata' | 'name'>>(
  policy: RedactionPolicy | undefined,
  messages: readonly M[],
): PrivacyResult<M> {
  if (!policy) return { kept: [...messages], dropped: 0, redactions: 0 };
  const { combined, checks } = compile(policy);
  const action = policy.action ?? 'redact';
  const replacement = (match: string) =>
    action === 'mask' ? maskOf(match) : policy.defaultRedactionString;
  const kept: M[] = [];
  let dropped = 0;
  let redactions = 0;
  for (const message of messages) {
    if (policy.nonPersistableMessageTypes.includes(message.role)) {
      dropped += 1;
      continue;
    }
    const redact = (text: string): string =>
      combined === undefined
        ? text
        : text.replace(combined, (match: string, ...args: unknown[]) => {
            const check = checks[ruleOf(checks, args)];
            if (check && !check(match)) return match;
            redactions += 1;
            return replacement(match);
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
  return { kept, dropped, redactions };
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
  const { combined, checks } = compile(policy);
  if (combined === undefined) return undefined;
  let found: number | undefined;
  text.replace(combined, (match: string, ...args: unknown[]) => {
    const rule = ruleOf(checks, args);
    const check = checks[rule];
    if (found === undefined && (!check || check(match))) found = rule;
    return match;
  });
  return found;
}
