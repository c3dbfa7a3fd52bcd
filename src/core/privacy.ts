import { RE2 } from 're2-wasm';
import { PolicyError } from './errors.js';
import type { Message } from './message.js';
import type { Role } from './message.js';

/** The parts of a resource's privacy policy that the redactor needs. */
export interface RedactionPolicy {
  /** Regular expressions in RE2 syntax (linear time; see {@link compileRedactPattern}); every match is replaced. */
  readonly redactPatterns: readonly string[];
  /** Roles that are never stored. */
  readonly nonPersistableMessageTypes: readonly Role[];
  /** Replacement text for each match. */
  readonly defaultRedactionString: string;
}

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

const compiled = new WeakMap<RedactionPolicy, RE2[]>();

function patternsOf(policy: RedactionPolicy): RE2[] {
  let regexes = compiled.get(policy);
  if (!regexes) {
    regexes = policy.redactPatterns.map((source, i) => {
      try {
        return compileRedactPattern(source);
      } catch (error) {
        throw new PolicyError(`privacy_policy.redact_patterns[${i}]: ${REDACT_PATTERN_ALLOWED}`, {
          cause: error,
        });
      }
    });
    compiled.set(policy, regexes);
  }
  return regexes;
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
  const regexes = patternsOf(policy);
  const kept: M[] = [];
  let dropped = 0;
  let redactions = 0;
  for (const message of messages) {
    if (policy.nonPersistableMessageTypes.includes(message.role)) {
      dropped += 1;
      continue;
    }
    const redact = (text: string): string => {
      for (const regex of regexes) {
        text = text.replace(regex, () => {
          redactions += 1;
          return policy.defaultRedactionString;
        });
      }
      return text;
    };
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
  const index = patternsOf(policy).findIndex((regex) => {
    regex.lastIndex = 0;
    return regex.test(text);
  });
  return index === -1 ? undefined : index;
}
