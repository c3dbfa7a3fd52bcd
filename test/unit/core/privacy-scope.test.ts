import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  applyPrivacy,
  applyPrivacyToText,
  createPseudonymizer,
  pseudonymScopeOf,
  type PrivacyScope,
  type RedactionPolicy,
} from '../../../src/core/privacy.js';
import { PolicyError } from '../../../src/core/errors.js';
import type { MemoryRef } from '../../../src/core/memory-key.js';

const KEY = 'a-test-key-of-32-characters-long';
const ADDRESS = 'jane.doe@example.com';
const first: MemoryRef = { project: 'acme', resource: 'support', key: 'support:1' };
const second: MemoryRef = { project: 'acme', resource: 'support', key: 'support:2' };

const policy = (scope?: PrivacyScope): RedactionPolicy => ({
  redactPatterns: [],
  detectors: ['email'],
  action: 'hash',
  nonPersistableMessageTypes: [],
  defaultRedactionString: '[REDACTED]',
  pseudonym: createPseudonymizer(KEY),
  ...(scope ? { scope } : {}),
});

/** The pseudonym `scope` gives ADDRESS in the memory instance `ref`. */
const pseudonymIn = (p: RedactionPolicy, ref: MemoryRef) =>
  applyPrivacy(p, [{ role: 'user' as const, content: `write to ${ADDRESS}` }], ref).kept[0]!
    .content;

describe('privacy_scope of hash pseudonyms', () => {
  it('global: the same address maps to the same pseudonym in two instances, as without a scope', () => {
    const global = policy('global');
    expect(pseudonymIn(global, first)).toBe(pseudonymIn(global, second));
    // Unchanged from the unscoped pseudonym: HMAC-SHA256(key, match).
    const unscoped = `pii_${createHmac('sha256', KEY).update(ADDRESS).digest('hex').slice(0, 16)}`;
    expect(pseudonymIn(global, first)).toBe(`write to ${unscoped}`);
    expect(pseudonymIn(policy(), first)).toBe(`write to ${unscoped}`);
  });

  it('session: the same address maps to different pseudonyms in two instances, stable within one', () => {
    const session = policy('session');
    const inFirst = pseudonymIn(session, first);
    expect(inFirst).toMatch(/^write to pii_[0-9a-f]{16}$/);
    expect(inFirst).not.toBe(pseudonymIn(session, second));
    expect(inFirst).not.toBe(pseudonymIn(policy('global'), first));
    expect(pseudonymIn(policy('session'), first)).toBe(inFirst); // producer and worker agree
    // Idempotent: the processor applying the policy again keeps the producer's pseudonym.
    const again = applyPrivacy(session, [{ role: 'user' as const, content: inFirst }], first);
    expect(again.kept[0]!.content).toBe(inFirst);
    expect(again.redactions).toBe(0);
  });

  it('session: instances differing only in project or resource get different pseudonyms', () => {
    const session = policy('session');
    const base = pseudonymIn(session, first);
    expect(pseudonymIn(session, { ...first, project: 'other' })).not.toBe(base);
    expect(pseudonymIn(session, { ...first, resource: 'other' })).not.toBe(base);
  });

  it('session: scopes a summary text as it scopes messages', () => {
    const session = policy('session');
    const text = applyPrivacyToText(session, `summary: ${ADDRESS}`, first).text;
    expect(text).toBe(pseudonymIn(session, first).replace('write to', 'summary:'));
  });

  it('session without the instance fails closed, even for a text without a match', () => {
    const session = policy('session');
    expect(() => applyPrivacy(session, [{ role: 'user' as const, content: 'no pii' }])).toThrow(
      PolicyError,
    );
    expect(() => applyPrivacyToText(session, `mail ${ADDRESS}`)).toThrow(
      'privacy_scope is session but no memory instance was given',
    );
  });

  it('derives the scope input from the instance alone, unambiguously', () => {
    expect(pseudonymScopeOf('global', first)).toBe('');
    expect(pseudonymScopeOf('global', undefined)).toBe('');
    expect(pseudonymScopeOf('session', first)).toBe('["acme","support","support:1"]');
    // Parts that would collide when joined with a separator stay apart.
    expect(pseudonymScopeOf('session', { project: 'a', resource: 'b/c', key: 'd' })).not.toBe(
      pseudonymScopeOf('session', { project: 'a/b', resource: 'c', key: 'd' }),
    );
    expect(() => pseudonymScopeOf('session', undefined)).toThrow(PolicyError);
  });
});
