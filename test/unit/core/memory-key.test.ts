import { describe, expect, it } from 'vitest';
import {
  MemoryRefSchema,
  validateMemoryKey,
  type MemoryRef,
} from '../../../src/core/memory-key.js';

describe('validateMemoryKey', () => {
  it.each(['support:42', 'user:john_doe', 'a', 'x@y.z', 'session:myapp:12345', 'k'.repeat(256)])(
    'accepts %s',
    (key) => {
      expect(validateMemoryKey(key)).toBe(key);
    },
  );

  it.each([
    ['empty', ''],
    ['too long', 'k'.repeat(257)],
    ['space', 'a b'],
    ['newline', 'a\nb'],
    ['glob star', 'user:*'],
    ['braces', '{{ .id }}'],
    ['slash', 'a/b'],
    ['leading __', '__proto__x'],
    ['trailing __', 'x__'],
    ['unicode', 'clé'],
  ])('rejects %s with the rule and what was found', (_, key) => {
    expect(() => validateMemoryKey(key, 'key')).toThrow(
      /^key: expected 1-256 characters of letters, digits, _ : - @ \. not starting or ending with "__", got /,
    );
  });

  it('truncates a long key in the message', () => {
    expect(() => validateMemoryKey('!'.repeat(10_000))).toThrow(/\.\.\. \(10000 chars\)/);
  });
});

describe('MemoryRefSchema', () => {
  const ref = { project: 'acme', resource: 'customer-support', key: 'support:42' };

  it('accepts a valid ref and returns it as the MemoryRef type', () => {
    const parsed: MemoryRef = MemoryRefSchema.parse(ref);
    expect(parsed).toEqual(ref);
  });

  it.each([
    ['a project with a slash', { ...ref, project: 'a/b' }, 'project'],
    ['an empty resource', { ...ref, resource: '' }, 'resource'],
    ['a key with a space', { ...ref, key: 'a b' }, 'key'],
    ['a key starting with __', { ...ref, key: '__proto' }, 'key'],
    ['a key ending with __', { ...ref, key: 'x__' }, 'key'],
    ['an extra field', { ...ref, tenant: 'x' }, ''],
  ])('rejects %s', (_what, input, path) => {
    const parsed = MemoryRefSchema.safeParse(input);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues.map((i) => i.path.join('.'))).toContain(path);
  });
});
