import { RE2JS } from 're2js';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../../src/core/message.js';
import { applyPrivacy, createPseudonymizer, DETECTORS } from '../../../src/core/privacy.js';
import {
  AuditPolicyError,
  compileAuditPolicy,
  redactText,
  translateRe2,
} from '../../../src/replay/audit-redactor.js';
import { buildConversations } from '../../../src/replay/corpus.js';
import { shippedMemories } from '../../helpers/memories.js';

const js = (re2: string) => new RegExp(translateRe2(re2, 'test'), 'gu');
const all = (re2: string, text: string) => [...text.matchAll(js(re2))].map((m) => m[0]);
/** The same with RE2 itself (re2js), the oracle. */
const re2All = (re2: string, text: string) => {
  const matcher = RE2JS.compile(re2).matcher(text);
  const out: string[] = [];
  while (matcher.find()) out.push(matcher.group() ?? '');
  return out;
};

describe('translateRe2', () => {
  it.each([
    ['a\\sb', 'a\vb a\u00a0b a\tb', ['a\tb']], // RE2 \s: no \v, no NBSP
    ['a.b', 'a\rb a\nb a\u2028b', ['a\rb', 'a\u2028b']], // . is [^\n]
    ['(?i)\\bk\\b', 'K k \u212a', ['K', 'k']], // \b stays ASCII under (?i)
    ['x{,2}y{2}', 'x{,2}yy', ['x{,2}yy']], // { not a repeat is a literal
    ['[]a]+', 'a]a', ['a]a']],
    ['\\Qa.b\\E', 'a.b axb', ['a.b']],
    ['(?P<n>\\d)\\x41\\x{1F600}', '1A😀', ['1A😀']],
    ['[\\w.-]+@\\S+', 'a.b-c@d\u00a0e', ['a.b-c@d\u00a0e']],
  ])('%j matches as RE2 does', (pattern, text, expected) => {
    expect(re2All(pattern, text)).toEqual(expected);
    expect(all(pattern, text)).toEqual(expected);
  });

  it('translates the shipped memories patterns', async () => {
    const registry = await shippedMemories();
    for (const resource of registry.list()) {
      for (const [i, pattern] of (resource.privacyPolicy?.redactPatterns ?? []).entries()) {
        expect(() => translateRe2(pattern, `${resource.id}[${i}]`)).not.toThrow();
      }
    }
  });

  it.each([
    ['(?m)^a', 'the group (?m...'],
    ['a(?i)b', '(?i) after the start'],
    ['\\pL', '\\p Unicode classes'],
    ['[[:alpha:]]', 'a POSIX [[:class:]]'],
    ['[\\S]', '\\S inside a class'],
    ['(a)\\1', 'the escape \\1 (octal or back-reference)'],
    ['a(?=b)', 'the group (?=...'],
    ['\\Z', 'the escape \\Z'],
    ['(a', 'an unclosed ('],
  ])('refuses %j, naming the construct', (pattern, construct) => {
    expect(() => translateRe2(pattern, 'privacy_policy.redact_patterns[0]')).toThrow(
      AuditPolicyError,
    );
    expect(() => translateRe2(pattern, 'privacy_policy.redact_patterns[0]')).toThrow(
      new RegExp(
        `redact_patterns\\[0\\]: cannot check this pattern: ${construct.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`,
      ),
    );
  });
});

describe('the audit redactor agrees with memq on real e-mails', () => {
  const extras = [
    'card 4111 1111 1111 1111 and 4111-1111-1111-1112, ssn 123-45-6789 / 000-12-3456',
    `keys sk-proj-abcdefghijklmnopqrstuv, Bearer abcdefghijklmnop1234==, ghp_${'a'.repeat(36)}, AKIAABCDEFGHIJKLMNOP, xoxb-1234567890-abc`,
    'ips 10.0.0.1 256.1.1.1 fe80::1 ::1 2001:db8:0:0:0:0:2:1 a::b',
    'mail x@y.com, +1 (555) 123-4567, (555) 123 4567, 𝒳 x@y.com 😀 ::',
    'SECRET  42 and foobar',
  ];
  let texts: string[] = [];
  beforeAll(async () => {
    const { conversations } = await buildConversations({ limit: 1000 });
    texts = [...conversations.flatMap((c) => c.messages.map((m) => m.content)), ...extras];
  }, 60_000);

  it.each(['redact', 'mask', 'hash', 'drop'] as const)(
    'action %s, every detector and two RE2 patterns, on 1,000 corpus messages',
    (action) => {
      const key = 'k'.repeat(24);
      const policy = {
        redactPatterns: ['\\bfoo\\w*', '(?i)secret\\s+\\d+'],
        detectors: [...DETECTORS],
        action,
        nonPersistableMessageTypes: ['system'] as Role[],
        defaultRedactionString: '[X]',
        ...(action === 'hash' ? { pseudonym: createPseudonymizer(key) } : {}),
      };
      const audit = compileAuditPolicy(policy, { MEMQ_PRIVACY_HASH_KEY: key });
      let redacted = 0;
      for (const content of texts) {
        const ours = redactText(audit, content);
        const memq = applyPrivacy(policy, [{ role: 'user' as const, content }]).kept[0]?.content;
        expect(memq).toBe(action === 'drop' ? (ours.matches > 0 ? undefined : content) : ours.text);
        if (ours.matches > 0) redacted += 1;
      }
      expect(redacted).toBeGreaterThan(100);
    },
    60_000,
  );

  it('refuses a hash policy without its key, naming the variable', () => {
    const policy = {
      redactPatterns: ['x'],
      action: 'hash',
      nonPersistableMessageTypes: [],
      defaultRedactionString: '[X]',
      hashKeyEnv: 'MY_KEY',
    };
    expect(() => compileAuditPolicy(policy, {})).toThrow(/set MY_KEY to the key the replay used/);
  });

  it('refuses a hash policy scoped to the session (its pseudonyms differ per instance), and takes a global one', () => {
    const policy = {
      redactPatterns: ['x'],
      action: 'hash',
      nonPersistableMessageTypes: [],
      defaultRedactionString: '[X]',
      hashKeyEnv: 'MY_KEY',
    };
    const env = { MY_KEY: 'k'.repeat(32) };
    expect(() => compileAuditPolicy({ ...policy, scope: 'session' }, env)).toThrow(
      /privacy_scope is session: the audit computes project-wide \(global\) pseudonyms only/,
    );
    expect(compileAuditPolicy({ ...policy, scope: 'global' }, env).rules).toHaveLength(1);
  });
});
