/**
 * A dependency-free monotonic ULID generator (https://github.com/ulid/spec) for the HTTP
 * client: 48-bit millisecond time + 80 random bits, 26 Crockford base32 characters. Within one
 * millisecond (or when the clock steps back) the previous id's random part is incremented, so
 * ids from one generator strictly increase. Uses only `globalThis.crypto.getRandomValues` (Node
 * 19+, browsers, Deno, Bun), so the client keeps no run-time dependency.
 */

/** Crockford's base32 alphabet (no I, L, O, U), in value order: the ULID encoding. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** Largest ULID time, ms since the epoch (2^48 - 1; year 10889). */
const MAX_TIME = 2 ** 48 - 1;

/** Characters of the time part (48 bits at 5 bits a character). */
const TIME_CHARS = 10;

/** Characters of the random part (80 bits at 5 bits a character). */
const RANDOM_CHARS = 16;

/** A source of random bytes: fills `bytes` and returns it. */
export type RandomBytes = (bytes: Uint8Array) => Uint8Array;

/** `globalThis.crypto.getRandomValues`, bound. */
const cryptoRandom: RandomBytes = (bytes) => globalThis.crypto.getRandomValues(bytes);

/**
 * Creates a monotonic ULID generator.
 * @param now Clock, ms since the epoch; default `Date.now`.
 * @param random Random source; default `crypto.getRandomValues`.
 * @returns A function returning a new ULID per call, each greater than the previous one.
 * @throws RangeError (from the returned function) when the clock is outside 0..2^48-1, or when
 *   2^80 ids were made in one millisecond (the random part cannot be incremented further).
 */
export function monotonicUlid(
  now: () => number = Date.now,
  random: RandomBytes = cryptoRandom,
): () => string {
  let lastTime = -1;
  let lastRandom: number[] = [];
  return () => {
    const time = Math.floor(now());
    if (!(time >= 0 && time <= MAX_TIME)) {
      throw new RangeError(`ULID time must be in 0..${MAX_TIME} ms, got ${time}`);
    }
    if (time <= lastTime) {
      // Same millisecond, or the clock stepped back: keep the last time, increment the random part.
      let index = RANDOM_CHARS - 1;
      while (index >= 0 && lastRandom[index] === 31) {
        lastRandom[index] = 0;
        index -= 1;
      }
      if (index < 0) throw new RangeError('ULID random part overflowed within one millisecond');
      lastRandom[index] = (lastRandom[index] ?? 0) + 1;
    } else {
      lastTime = time;
      // 256 is a multiple of 32, so `byte & 31` is uniform over the alphabet.
      lastRandom = Array.from(random(new Uint8Array(RANDOM_CHARS)), (byte) => byte & 31);
    }
    let timePart = '';
    let rest = lastTime;
    for (let i = 0; i < TIME_CHARS; i += 1) {
      timePart = ALPHABET[rest % 32]! + timePart;
      rest = Math.floor(rest / 32);
    }
    return timePart + lastRandom.map((value) => ALPHABET[value]!).join('');
  };
}
