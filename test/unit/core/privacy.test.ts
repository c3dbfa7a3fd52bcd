import { describe, expect, it } from 'vitest';
import {
  applyPrivacy,
  createPseudonymizer,
  DETECTORS,
  PSEUDONYM_PATTERN,
  findRedactable,
  luhnValid,
  maskOf,
  type RedactionPolicy,
} from '../../../src/core/privacy.js';
import { MAX_CONTENT_CHARS, MessageInputSchema } from '../../../src/core/message.js';

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
    expect(result.redactionsByRule).toEqual({ 'redact_patterns[0]': 3, 'redact_patterns[1]': 1 });
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
      redactionsByRule: {},
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

describe('built-in detectors and actions', () => {
  const allDetectors: RedactionPolicy = {
    redactPatterns: [],
    detectors: [...DETECTORS],
    nonPersistableMessageTypes: [],
    defaultRedactionString: '[X]',
  };
  // One policy object when nothing is overridden: a policy compiles once per object, and the
  // pseudonym test below applies it 2,000 times (compiling each time took 6-18 s on a busy VM).
  const detect = (content: string, extra: Partial<RedactionPolicy> = {}) =>
    applyPrivacy(Object.keys(extra).length === 0 ? allDetectors : { ...allDetectors, ...extra }, [
      { role: 'user' as const, content },
    ]);

  it.each([
    ['card 4111 1111 1111 1111 ok', 'card [X] ok'],
    ['ssn 123-45-6789 and 000-12-3456', 'ssn [X] and 000-12-3456'],
    ['from 192.168.10.254 not 999.1.1.1', 'from [X] not 999.1.1.1'],
    [
      'v6 2001:db8::8a2e:370:7334 and fe80::1 but not std::vector',
      'v6 [X] and [X] but not std::vector',
    ],
    ['key sk-proj-abcdefghijklmnop1234 token Bearer abc.def-ghi_jkl~mnop', 'key [X] token [X]'],
    ['aws AKIAIOSFODNN7EXAMPLE gh ghp_abcdefghijklmnopqrstuvwxyz0123456789', 'aws [X] gh [X]'],
    ['mail jane.doe@example.com or +1 (555) 123-4567', 'mail [X] or [X]'],
    ['order thread:3f2a91234567 stays', 'order thread:3f2a91234567 stays'],
  ])('%s', (input, expected) => {
    expect(detect(input).kept[0]!.content).toBe(expected);
  });

  it('masks all but the last 4 characters, idempotently', () => {
    const once = detect('card 4111 1111 1111 1111', { action: 'mask' }).kept[0]!.content;
    expect(once).toBe('card ***************1111');
    expect(detect(once, { action: 'mask' }).kept[0]!.content).toBe(once);
    expect(maskOf('short')).toBe('*****');
  });

  it('drops a message with any match and reports it as dropped', () => {
    const result = applyPrivacy(
      {
        redactPatterns: [],
        detectors: ['email'],
        action: 'drop',
        nonPersistableMessageTypes: [],
        defaultRedactionString: '[X]',
      },
      [
        { role: 'user' as const, content: 'write to a@b.io' },
        { role: 'user' as const, content: 'nothing personal' },
      ],
    );
    expect(result.kept.map((m) => m.content)).toEqual(['nothing personal']);
    expect(result).toMatchObject({ dropped: 1, redactions: 0 });
  });

  it('leaves card-shaped numbers that fail the Luhn check to the other detectors', () => {
    const only = { detectors: ['credit_card' as const] };
    expect(detect('card 4111-1111-1111-1112 bad', only).kept[0]!.content).toBe(
      'card 4111-1111-1111-1112 bad',
    );
    expect(detect('card 4111-1111-1111-1111 good', only).kept[0]!.content).toBe('card [X] good');
  });

  it('checks Luhn like ISO/IEC 7812', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('79927398713')).toBe(false); // valid Luhn but only 11 digits
    expect(luhnValid('4111111111111112')).toBe(false);
  });

  it('hashes each match to a stable keyed pseudonym, idempotently', () => {
    const pseudonym = createPseudonymizer('k'.repeat(32));
    const hash = { action: 'hash' as const, pseudonym };
    const once = detect('mail jane@example.com, cc jane@example.com, bob@example.org', hash);
    const [a, b, c] = once.kept[0]!.content.match(/pii_[0-9a-f]{16}/g) ?? [];
    expect(once.kept[0]!.content).toBe(`mail ${a}, cc ${a}, ${c}`);
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(once.redactions).toBe(3);
    const twice = detect(once.kept[0]!.content, hash);
    expect(twice.kept[0]!.content).toBe(once.kept[0]!.content);
    expect(twice.redactions).toBe(0);
    const otherKey = detect('mail jane@example.com', {
      ...hash,
      pseudonym: createPseudonymizer('x'.repeat(32)),
    });
    expect(otherKey.kept[0]!.content).not.toContain(a!);
  });

  it('never lets a detector match a pseudonym, so hashing stays idempotent', () => {
    const pseudonym = createPseudonymizer('a-test-key-of-32-characters-long');
    for (let i = 0; i < 2_000; i++) {
      const p = pseudonym(`4111 1111 1111 ${String(i).padStart(4, '0')} ${i}@x.io`);
      expect(p).toMatch(PSEUDONYM_PATTERN);
      expect(detect(`(${p}) ${p}`).kept[0]!.content).toBe(`(${p}) ${p}`);
    }
    expect(detect('x pii_4111111111111111 y').kept[0]!.content).toBe('x pii_4111111111111111 y');
  });

  it('fails closed when the hash action has no key, and refuses a short key', () => {
    expect(() => detect('a@b.io', { action: 'hash' })).toThrow(
      /action is hash but no hash key is configured/,
    );
    expect(() => createPseudonymizer('short')).toThrow(/at least 16 characters, got 5/);
  });
});

describe('matching across rules', () => {
  it.each([
    [['ab', 'abc'], 'xabcx abc ab'],
    [['abc', 'ab'], 'xabcx abc ab'],
    [['bcd', 'abc'], 'abcd bcd abcd'],
    [['a+', 'aab'], 'aaab aab b'],
    [['\\bfoo', 'oo\\w*'], 'foo xfoo boot foobar'],
    [['[0-9]{3}', '[0-9]{2}-[0-9]'], '12-345 1-23 123456'],
  ])('%j on %j finds what the alternation finds', (patterns, text) => {
    const alternation = new RegExp(patterns.map((p) => `(?:${p})`).join('|'), 'g');
    const policy = {
      redactPatterns: patterns,
      nonPersistableMessageTypes: [],
      defaultRedactionString: '#',
    };
    const result = applyPrivacy(policy, [{ role: 'user' as const, content: text }]);
    expect(result.kept[0]!.content).toBe(text.replace(alternation, '#'));
    expect(result.redactions).toBe(text.match(alternation)!.length);
  });

  it('refuses content longer than MAX_CONTENT_CHARS at the schema', () => {
    expect(
      MessageInputSchema.safeParse({ role: 'user', content: 'x'.repeat(MAX_CONTENT_CHARS + 1) })
        .success,
    ).toBe(false);
    expect(
      MessageInputSchema.safeParse({ role: 'user', content: 'x'.repeat(MAX_CONTENT_CHARS) })
        .success,
    ).toBe(true);
  });
});
