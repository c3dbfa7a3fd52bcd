/** `privateData` (queues/memory-client.ts): session data through a resource's privacy policy. */
import { describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../../src/config/load-memories.js';
import { PayloadError, PolicyError } from '../../../src/core/errors.js';
import { privateData } from '../../../queues/memory-client.js';

const ADDRESS = 'jane.doe@example.com';

const yaml = (id: string, policy: string) => `resource: memory
id: ${id}
type: token_based
max_tokens: 1000
persistence:
  type: redis
  ttl: 1h
${policy}`;

const registry = createMemoryRegistry(
  [
    ['redact', 'privacy_policy:\n  detectors: [email]\n'],
    ['drop', 'privacy_policy:\n  detectors: [email]\n  action: drop\n'],
    [
      'session-hash',
      'privacy_policy:\n  detectors: [email]\n  action: hash\n  hash_key_env: TEST_PII_KEY\nprivacy_scope: session\n',
    ],
    ['open', ''],
    [
      'long-replacement',
      `privacy_policy:\n  redact_patterns: ['[0-9]']\n  default_redaction_string: '${'x'.repeat(100)}'\n`,
    ],
  ].map(([id, policy]) => parseMemoryResource(yaml(id!, policy!), `${id}.yaml`).resource!),
  { TEST_PII_KEY: 'a-test-key-that-is-long-enough' },
);
const ref = (resource: string, key = 'k:1') => ({ project: 'p', resource, key });
const put = (resource: string, data: Record<string, string>, key?: string) =>
  privateData(registry.get(resource), ref(resource, key), data);

describe('privateData', () => {
  it('redacts every value, keeps keys and clean values, counts the matches', () => {
    expect(put('redact', { a: `to ${ADDRESS} and ${ADDRESS}`, b: 'plain' })).toEqual({
      data: { a: 'to [REDACTED] and [REDACTED]', b: 'plain' },
      redactions: 2,
      dropped: 0,
    });
  });

  it('leaves out an entry whose value matches a drop policy', () => {
    expect(put('drop', { a: ADDRESS, b: 'plain' })).toEqual({
      data: { b: 'plain' },
      redactions: 0,
      dropped: 1,
    });
  });

  it('pseudonymises per instance under privacy_scope session', () => {
    const one = put('session-hash', { a: ADDRESS }, 'k:1').data.a;
    const two = put('session-hash', { a: ADDRESS }, 'k:2').data.a;
    expect(one).toMatch(/^pii_[0-9a-f]{16}$/);
    expect(one).not.toBe(two);
  });

  it('stores data as given without a policy', () => {
    expect(put('open', { a: ADDRESS })).toEqual({
      data: { a: ADDRESS },
      redactions: 0,
      dropped: 0,
    });
  });

  it('refuses a key the policy matches, naming its position and not the key', () => {
    const error = (() => {
      try {
        put('redact', { fine: 'x', [ADDRESS]: 'y' });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(PayloadError);
    expect((error as Error).message).toMatch(/^data\[1\]: the key contains text/);
    expect((error as Error).message).not.toContain(ADDRESS);
  });

  it('checks the limits on the data as sent: a value the policy lengthens is stored longer', () => {
    // 585 addresses of 6 bytes and a space: 4,095 bytes sent, 6,435 stored.
    const value = 'a@b.co '.repeat(585);
    const stored = put('redact', { notes: value });
    expect(stored.redactions).toBe(585);
    expect(Buffer.byteLength(stored.data.notes!)).toBe(6435);
  });

  it('names entries by position, never by key, in every error', () => {
    const message = (data: Record<string, unknown>, resource = 'open') => {
      try {
        put(resource, data as Record<string, string>);
      } catch (e) {
        expect(e).toBeInstanceOf(PayloadError);
        return (e as Error).message;
      }
      throw new Error('expected a refusal');
    };
    const over = message({ a: 'x', [ADDRESS]: '€'.repeat(1366) });
    expect(over).toBe('data[1]: the value: expected at most 4096 UTF-8 bytes, got 4098');
    expect(message({ [ADDRESS]: 5 })).toBe('data[0]: the value: expected a string, got number');
    expect(message({ [ADDRESS + 'x'.repeat(120)]: 'v' })).toBe(
      'data[0]: the key: expected 1-128 characters, got 140',
    );
    // 4,000 digits become 400,000 bytes under a 100-character replacement: over the stored bound.
    const grown = message({ a: 'x', [ADDRESS]: '1'.repeat(4000) }, 'long-replacement');
    expect(grown).toMatch(
      /^data\[1\]: the value: 400000 UTF-8 bytes after memory "long-replacement"'s privacy policy, over the 65536/,
    );
    expect(grown).not.toContain(ADDRESS);
  });

  it('keeps a __proto__ key as an entry', () => {
    const data = JSON.parse('{"__proto__": "x", "a": "b"}') as Record<string, string>;
    const stored = put('open', data).data;
    expect(Object.keys(stored)).toEqual(['__proto__', 'a']);
    expect(Object.getPrototypeOf(stored)).toBe(Object.prototype);
  });

  it('refuses data over the limits, and fails closed when the policy cannot be applied', () => {
    expect(() => put('open', { '': 'x' })).toThrow(PayloadError);
    expect(() => put('open', { a: '€'.repeat(1366) })).toThrow(/4096/);
    expect(() =>
      put('open', Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))),
    ).toThrow(/64 entries/);
    // action hash without a key (the loader refuses it; a hand-built resource may not)
    const redact = registry.get('redact');
    const noKey = {
      ...redact,
      privacyPolicy: { ...redact.privacyPolicy!, action: 'hash' as const },
    };
    expect(() => privateData(noKey, ref('redact'), { a: ADDRESS })).toThrow(PolicyError);
  });
});
