import { randomBytes } from 'node:crypto';
import { Tiktoken } from 'js-tiktoken/lite';
import cl100k from 'js-tiktoken/ranks/cl100k_base';
import o200k from 'js-tiktoken/ranks/o200k_base';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createTokenCache,
  createTokenCounter,
  SLICE_CHARS,
  sliceStarts,
  TOKENS_PER_MESSAGE,
} from '../../../src/tokens/counter.js';
import { buildConversations } from '../../../src/replay/corpus.js';

/** js-tiktoken, the card's tokenizer, is the oracle: memq counts with gpt-tokenizer. */
const oracles = {
  o200k_base: new Tiktoken(o200k),
  cl100k_base: new Tiktoken(cl100k),
} as const;
const oracleCount = (encoding: keyof typeof oracles, text: string) =>
  oracles[encoding].encode(text, [], []).length;

const EDGE_CASES = [
  '',
  '<|endoftext|>',
  'before <|endoftext|> after <|im_start|>system<|im_end|> <|fim_prefix|>',
  '日本語のテキストと中文文本，还有한국어 텍스트。',
  'emoji 🎉👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and skin tones 👍🏽',
  'NUL\u0000bytes\u0000inside and a lone \u0001 control',
  '   leading and trailing whitespace\n\n\t  ',
  "it's they're we've I'm you'll he'd DON'T",
  'numbers 1234567890 3.14159 -42 1e10',
  'https://example.com/path?query=value&other=1#fragment',
];

describe('token counts equal js-tiktoken (the oracle)', () => {
  let corpus: string[];
  beforeAll(async () => {
    const { conversations } = await buildConversations({ limit: 1000 });
    corpus = conversations.flatMap((c) => c.messages.map((m) => m.content)).slice(0, 1000);
  }, 60_000);

  it.each(['o200k_base', 'cl100k_base'] as const)(
    'on 1,000 real corpus messages and the edge cases (%s)',
    async (encoding) => {
      expect(corpus).toHaveLength(1000);
      const counter = await createTokenCounter(encoding);
      const texts = [...corpus, ...EDGE_CASES];
      const mismatches = texts.filter((t) => counter.countText(t) !== oracleCount(encoding, t));
      expect(mismatches).toEqual([]);
      // Framing on top of the content count, as OpenAI's cookbook counts a chat message.
      const message = { role: 'user' as const, content: corpus[0]!, name: 'jane' };
      expect(counter.countMessage(message)).toBe(
        TOKENS_PER_MESSAGE +
          oracleCount(encoding, 'user') +
          oracleCount(encoding, corpus[0]!) +
          oracleCount(encoding, 'jane') +
          1,
      );
    },
    60_000,
  );

  it('stays exact on line-wrapped base64 and mixed punctuation cut at line ends', async () => {
    const wrapped = (
      randomBytes(30_000)
        .toString('base64')
        .match(/.{1,76}/g) ?? []
    ).join('\n');
    const mixed = Array.from(
      { length: 2000 },
      (_, i) => ['KEY=value', 'x+/=', "it's", '12345', 'ÄÖÜ', '<a href="x">', 'end.'][i % 7],
    ).join('\n');
    for (const text of [wrapped, mixed, `${wrapped}\n${mixed}`]) {
      expect(sliceStarts(text).length).toBeGreaterThan(2);
      for (const encoding of ['o200k_base', 'cl100k_base'] as const) {
        const counter = await createTokenCounter(encoding);
        expect(counter.countText(text)).toBe(oracleCount(encoding, text));
      }
    }
  });

  it('stays exact on long spaced text cut into slices', async () => {
    const long = corpus.join('\n\n').slice(0, 60_000);
    expect(sliceStarts(long).length).toBeGreaterThan(20);
    for (const encoding of ['o200k_base', 'cl100k_base'] as const) {
      const counter = await createTokenCounter(encoding);
      expect(counter.countText(long)).toBe(oracleCount(encoding, long));
      expect(await counter.countMessageAsync({ role: 'user', content: long })).toBe(
        counter.countMessage({ role: 'user', content: long }),
      );
    }
  });
});

describe('slicing and the count cache', () => {
  it('cuts only at exact cuts (after a letter before a space here), and never inside a stretch without one', () => {
    const spaced = 'word '.repeat(2000);
    const starts = sliceStarts(spaced);
    expect(starts[0]).toBe(0);
    expect(starts.length).toBeGreaterThan(4);
    for (const s of starts.slice(1)) {
      expect(spaced[s]).toBe(' ');
      expect(spaced[s - 1]).toMatch(/[a-z]/);
      expect(s).toBeGreaterThan(SLICE_CHARS / 2);
    }
    // One piece for every encoding: no exact cut, so one slice (counted without the tokenizer's
    // quadratic merge), however long.
    expect(sliceStarts('a'.repeat(SLICE_CHARS * 3 + 5))).toEqual([0]);
    // A stretch without a cut runs to the next exact cut beyond the window.
    const stretch = 'A'.repeat(SLICE_CHARS * 2) + ' tail';
    expect(sliceStarts(stretch)).toEqual([0, SLICE_CHARS * 2]);
    // A surrogate pair at the cut stays whole.
    const emoji = 'x'.repeat(SLICE_CHARS - 1) + '🎉'.repeat(10);
    expect(sliceStarts(emoji)[1]).toBe(SLICE_CHARS - 1);
  });

  it('counts a 300,000-character base64 blob exactly, giving the event loop turns while it counts', async () => {
    const counter = await createTokenCounter('o200k_base');
    // Random base64 (an attachment pasted into a message): unspaced, but cut where a letter
    // meets a digit or a digit a letter; the costliest text per character measured before.
    const blob = randomBytes(225_000).toString('base64');
    expect(blob).toHaveLength(300_000);
    // Ticks run only when counting yields (it takes far longer than one 10 ms yield period).
    let ticks = 0;
    const ticker = setInterval(() => (ticks += 1), 1);
    let tokens: number;
    try {
      tokens = await counter.countMessageAsync({ role: 'user', content: blob });
    } finally {
      clearInterval(ticker);
    }
    expect(tokens).toBe(TOKENS_PER_MESSAGE + 1 + oracleCount('o200k_base', blob));
    expect(ticks).toBeGreaterThan(0);
  });

  it('returns cached counts for repeated content and reports hits and misses', async () => {
    const cache = createTokenCache();
    const counter = await createTokenCounter('cl100k_base', { cache });
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(10);
    const first = counter.countText(text);
    expect(counter.countText(text)).toBe(first);
    expect(counter.countText('short')).toBe(oracleCount('cl100k_base', 'short'));
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2, entries: 2 });
    // Another encoding never shares an entry.
    const o200 = await createTokenCounter('o200k_base', { cache });
    expect(o200.countText(text)).toBe(oracleCount('o200k_base', text));
    expect(cache.stats().misses).toBe(3);
  });

  it('stays within its byte bound, evicting the least recently used', async () => {
    const cache = createTokenCache(2_000);
    const counter = await createTokenCounter('cl100k_base', { cache });
    for (let i = 0; i < 100; i++) counter.countText(`message number ${i} `.repeat(10));
    const { bytes, entries } = cache.stats();
    expect(bytes).toBeLessThanOrEqual(2_000);
    expect(entries).toBeGreaterThan(0);
    expect(entries).toBeLessThan(100);
    expect(() => createTokenCache(0)).toThrow(/positive integer of bytes, got 0/);
  });
});
