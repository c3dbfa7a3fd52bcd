import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  createCacheProbe,
  createTokenCache,
  createTokenCounter,
  MERGE_CACHE_BYTES,
} from '../../../src/tokens/counter.js';

/** V8's full collection, reachable without starting node with --expose-gc. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Live heap after a full collection, bytes. */
function liveHeap(): number {
  collectGarbage();
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** Deterministic pseudo-random lowercase words (mulberry32), none of them a token. */
function* words(count: number, length: number): Generator<string> {
  let seed = 0x5eed;
  const next = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  for (let i = 0; i < count; i++) {
    let word = '';
    for (let c = 0; c < length; c++) word += String.fromCharCode(97 + Math.floor(next() * 26));
    yield word;
  }
}

describe('the count cache', () => {
  it.each([
    ['hashed (longer than 64 characters)', (i: number) => `message ${i} `.repeat(8)],
    ['inline (up to 64 characters)', (i: number) => `ok ${i}`],
  ])('holds at most its bound in heap bytes once full, keys %s', (_kind, textOf) => {
    const bound = 4 * 2 ** 20;
    const cache = createTokenCache(bound);
    const probe = createCacheProbe('o200k_base', cache);
    const before = liveHeap();
    for (let i = 0; i < 100_000; i++) probe(textOf(i)).remember(i % 500);
    const grown = liveHeap() - before;
    expect(cache.stats().entries).toBeLessThan(100_000); // full: it evicted
    expect(grown).toBeLessThanOrEqual(bound);
  });
});

describe("gpt-tokenizer's merge cache", () => {
  it('holds at most MERGE_CACHE_BYTES of pieces however many distinct pieces are counted', async () => {
    const counter = await createTokenCounter('o200k_base');
    const before = liveHeap();
    // 60,000 distinct 101-character pieces (" " + 100 letters), each merged and cached by
    // gpt-tokenizer: ~30 MB of cache entries if only its 100,000-entry bound applied.
    let text = '';
    let tokens = 0;
    for (const word of words(60_000, 100)) {
      text += ` ${word}`;
      if (text.length > 1_900) {
        tokens += counter.countText(text);
        text = '';
      }
    }
    tokens += counter.countText(text);
    expect(tokens).toBeGreaterThan(60_000 * 10);
    const grown = liveHeap() - before;
    expect(grown).toBeLessThan(MERGE_CACHE_BYTES + 4 * 2 ** 20);
  }, 120_000);
});
