import { describe, expect, it } from 'vitest';
import { applyPrivacy, findRedactable } from '../../../src/core/privacy.js';

const policy = {
  redactPatterns: [
    '\\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}\\b',
    '\\b\\d{3}-\\d{2}-\\d{4}\\b',
  ],
  nonPersistableMessageTypes: ['system', 'tool'] as const,
  defaultRedactionString: '[REDACTED]',
};

describe('applyPrivacy', () => {
  it('redacts every match in content and string metadata and counts them', () => {
    const result = applyPrivacy(policy, [
      {
        role: 'user' as const,
        content: 'a@b.com and c@d.org, ssn 123-45-6789',
        metadata: { subject: 'from x@y.net', n: 1 },
      },
    ]);
    expect(result.kept).toEqual([
      {
        role: 'user',
        content: '[REDACTED] and [REDACTED], ssn [REDACTED]',
        metadata: { subject: 'from [REDACTED]', n: 1 },
      },
    ]);
    expect(result.redactions).toBe(4);
  });

  it('redacts the name and metadata keys too', () => {
    const result = applyPrivacy(policy, [
      { role: 'user' as const, content: 'x', name: 'a@b.com', metadata: { 'c@d.org': 'v' } },
    ]);
    expect(result.kept).toEqual([
      { role: 'user', content: 'x', name: '[REDACTED]', metadata: { '[REDACTED]': 'v' } },
    ]);
  });

  it('finds which pattern matches an identifier', () => {
    expect(findRedactable(policy, 'support:a@b.com')).toBe(0);
    expect(findRedactable(policy, 'support:42')).toBeUndefined();
    expect(findRedactable(undefined, 'a@b.com')).toBeUndefined();
  });

  it('drops non-persistable roles and reports how many', () => {
    const result = applyPrivacy(policy, [
      { role: 'system' as const, content: 's' },
      { role: 'user' as const, content: 'u' },
      { role: 'tool' as const, content: 't' },
    ]);
    expect(result.kept.map((m) => m.role)).toEqual(['user']);
    expect(result.dropped).toBe(2);
  });

  it('is idempotent, so producer and processor can both apply it', () => {
    const once = applyPrivacy(policy, [{ role: 'user' as const, content: 'mail a@b.com' }]);
    const twice = applyPrivacy(policy, once.kept);
    expect(twice.kept).toEqual(once.kept);
    expect(twice.redactions).toBe(0);
  });

  it('returns messages unchanged without a policy', () => {
    const messages = [{ role: 'system' as const, content: 'a@b.com' }];
    expect(applyPrivacy(undefined, messages)).toEqual({
      kept: messages,
      dropped: 0,
      redactions: 0,
    });
  });

  it('fails closed on a pattern that does not compile', () => {
    expect(() =>
      applyPrivacy({ ...policy, redactPatterns: ['(unclosed'] }, [
        { role: 'user' as const, content: 'x' },
      ]),
    ).toThrow(/redact_patterns\[0\]: expected a regular expression RE2 accepts/);
    expect(() =>
      applyPrivacy({ ...policy, redactPatterns: ['(?<!x)secret'] }, [
        { role: 'user' as const, content: 'x' },
      ]),
    ).toThrow(/no lookarounds, no backreferences/);
  });

  it('matches catastrophic-backtracking patterns in linear time (RE2)', () => {
    // (a+)+$ against 50 KB of "a" then "!" backtracks exponentially in JavaScript's engine.
    const evil = 'a'.repeat(50_000) + '!';
    const result = applyPrivacy(
      { ...policy, redactPatterns: ['(a+)+$', '(x+x+)+y', '(\\w|\\d)+\\s*$'] },
      [{ role: 'user' as const, content: evil }],
    );
    expect(result.kept[0]!.content).toBe(evil);
    expect(result.redactions).toBe(0);
    const tail = applyPrivacy({ ...policy, redactPatterns: ['(a+)+$'] }, [
      { role: 'user' as const, content: 'b' + 'a'.repeat(50_000) },
    ]);
    expect(tail.kept[0]!.content).toBe(`b${policy.defaultRedactionString}`);
  });
});
