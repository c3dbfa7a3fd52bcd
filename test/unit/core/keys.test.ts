import { describe, expect, it } from 'vitest';
import {
  indexKey,
  memoryId,
  memoryKeys,
  parseMemoryId,
  INDEX_SHARDS,
} from '../../../src/redis/keys.js';

describe('memory keys', () => {
  const ref = { project: 'acme', resource: 'customer-support', key: 'support:42' };

  it('puts every family of one instance under one hash tag', () => {
    const keys = memoryKeys('memq:', ref);
    const tags = (Object.values(keys) as string[]).map((k) => /\{([^}]*)\}/.exec(k)?.[1]);
    expect(new Set(tags)).toEqual(new Set(['acme/customer-support/support:42']));
    expect(keys.ord).toBe('memq:m:{acme/customer-support/support:42}:ord');
  });

  it.each([
    ['braces', 'a{b}c', 'a%7Bb%7Dc'],
    ['slash', 'a/b', 'a%2Fb'],
    ['percent', '100%', '100%25'],
  ])('escapes %s so user input cannot end the tag or collide', (_, key, escaped) => {
    expect(memoryId({ ...ref, key })).toBe(`acme/customer-support/${escaped}`);
    expect(parseMemoryId(memoryId({ ...ref, key }))).toEqual({ ...ref, key });
  });

  it('keeps distinct refs distinct after escaping', () => {
    expect(memoryId({ project: 'a/b', resource: 'c', key: 'd' })).not.toBe(
      memoryId({ project: 'a', resource: 'b/c', key: 'd' }),
    );
  });

  it('spreads instances over the index shards deterministically', () => {
    const shards = new Set(
      Array.from({ length: 200 }, (_, i) => indexKey('memq:', { ...ref, key: `k${i}` })),
    );
    expect(shards.size).toBe(INDEX_SHARDS);
    expect(indexKey('memq:', ref)).toBe(indexKey('memq:', { ...ref }));
  });
});
