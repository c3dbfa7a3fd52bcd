import { describe, expect, it } from 'vitest';
import {
  applyPrivacyToText,
  createPseudonymizer,
  PSEUDONYM_PATTERN,
  type PrivacyAction,
  type RedactionPolicy,
} from '../../../src/core/privacy.js';
import { redactSummary } from '../../../src/flush/summary.js';

const policy = (action: PrivacyAction, extra: Partial<RedactionPolicy> = {}): RedactionPolicy => ({
  redactPatterns: [],
  detectors: ['email', 'phone'],
  action,
  nonPersistableMessageTypes: ['system'],
  defaultRedactionString: '[REDACTED]',
  pseudonym: createPseudonymizer('0123456789abcdef0123456789abcdef'),
  ...extra,
});
/** Tokens as characters: the budget arithmetic below is exact. */
const chars = (text: string) => text.length;
const SUMMARY = 'Jane (jane@example.com, +1 415 555 2671) wants a refund.';

describe('redactSummary', () => {
  it('replaces every match and counts it', () => {
    expect(redactSummary(policy('redact'), SUMMARY, 1_000, chars)).toEqual({
      content: 'Jane ([REDACTED], [REDACTED]) wants a refund.',
      redactions: 2,
    });
  });

  it('redacts under action drop instead of dropping the summary', () => {
    expect(redactSummary(policy('drop'), SUMMARY, 1_000, chars).content).toBe(
      'Jane ([REDACTED], [REDACTED]) wants a refund.',
    );
  });

  it('masks and hashes as the action says', () => {
    expect(redactSummary(policy('mask'), SUMMARY, 1_000, chars).content).toBe(
      'Jane (************.com, ***********2671) wants a refund.',
    );
    const hashed = redactSummary(policy('hash'), SUMMARY, 1_000, chars).content;
    const [a, b] = hashed.match(/pii_[0-9a-f]{16}/g) ?? [];
    expect(a).toMatch(PSEUDONYM_PATTERN);
    expect(hashed).toBe(`Jane (${a}, ${b}) wants a refund.`);
  });

  it('leaves the text alone without a policy or without a match', () => {
    expect(redactSummary(undefined, SUMMARY, 1_000, chars)).toEqual({
      content: SUMMARY,
      redactions: 0,
    });
    expect(redactSummary(policy('redact'), 'nothing here', 1_000, chars)).toEqual({
      content: 'nothing here',
      redactions: 0,
    });
  });

  it('cuts a summary the replacements made longer than the budget, redacting what a cut exposes', () => {
    // "12345" matches no 4-digit rule; cut to "1234" it would, so it is redacted again.
    const strict = policy('redact', { redactPatterns: ['\\b\\d{4}\\b'], detectors: ['email'] });
    const result = redactSummary(strict, 'x@y.io 12345', 15, chars);
    expect(result).toEqual({ content: '[REDACTED] [RED', redactions: 2 });
    expect(result.content.length).toBeLessThanOrEqual(15);
  });

  it('fails closed when action hash has no key', () => {
    expect(() =>
      redactSummary(policy('hash', { pseudonym: undefined }), SUMMARY, 1_000, chars),
    ).toThrow(/no hash key is configured/);
  });
});

describe('applyPrivacyToText', () => {
  it('counts matches by rule and ignores roles', () => {
    expect(applyPrivacyToText(policy('redact'), SUMMARY)).toEqual({
      text: 'Jane ([REDACTED], [REDACTED]) wants a refund.',
      redactions: 2,
      redactionsByRule: { email: 1, phone: 1 },
    });
  });
});
