import { describe, expect, it } from 'vitest';
import { MESSAGE_ID_PATTERN } from '../../../src/core/message.js';
import { monotonicUlid } from '../../../src/client/ulid.js';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const decodeTime = (id: string) =>
  [...id.slice(0, 10)].reduce((sum, c) => sum * 32 + ALPHABET.indexOf(c), 0);

describe('monotonicUlid', () => {
  it('makes ids the server accepts, with the clock in the time part', () => {
    const next = monotonicUlid(() => 1_700_000_000_123);
    const id = next();
    expect(id).toMatch(MESSAGE_ID_PATTERN);
    expect(decodeTime(id)).toBe(1_700_000_000_123);
  });

  it('increases strictly within one millisecond and when the clock steps back', () => {
    let now = 1_000;
    const next = monotonicUlid(() => now);
    const ids = [next(), next(), next()];
    now = 900; // clock stepped back
    ids.push(next());
    now = 2_000;
    ids.push(next());
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(decodeTime(ids[3]!)).toBe(1_000);
    expect(decodeTime(ids[4]!)).toBe(2_000);
  });

  it('carries into the next character when the random part ends in Z', () => {
    const next = monotonicUlid(
      () => 5,
      (bytes) => bytes.fill(31),
    );
    const first = next();
    expect(first.slice(10)).toBe('Z'.repeat(16));
    expect(() => next()).toThrow(RangeError); // every random character at its maximum
    const carrying = monotonicUlid(
      () => 5,
      (bytes) => {
        bytes.fill(31);
        bytes[0] = 0;
        return bytes;
      },
    );
    expect(carrying().slice(10)).toBe('0' + 'Z'.repeat(15));
    expect(carrying().slice(10)).toBe('1' + '0'.repeat(15));
  });

  it('refuses a clock outside the 48-bit range', () => {
    expect(() => monotonicUlid(() => -1)()).toThrow(RangeError);
    expect(() => monotonicUlid(() => 2 ** 48)()).toThrow(RangeError);
  });
});
