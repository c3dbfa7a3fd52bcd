import fc from 'fast-check';
import { Tiktoken } from 'js-tiktoken/lite';
import cl100k from 'js-tiktoken/ranks/cl100k_base';
import gpt2 from 'js-tiktoken/ranks/gpt2';
import o200k from 'js-tiktoken/ranks/o200k_base';
import p50k from 'js-tiktoken/ranks/p50k_base';
import p50kEdit from 'js-tiktoken/ranks/p50k_edit';
import r50k from 'js-tiktoken/ranks/r50k_base';
import { describe, expect, it } from 'vitest';
import {
  createTokenCache,
  createTokenCounter,
  ENCODINGS,
  type EncodingName,
  isExactCut,
  PRETOKENIZER_PATTERNS,
  SLICE_CHARS,
  sliceStarts,
  TOKENS_PER_MESSAGE,
  TOKENS_PER_NAME,
  type TokenCounter,
} from '../../../src/tokens/counter.js';

/**
 * memq's counts against js-tiktoken (the card's tokenizer, an independent implementation: its
 * own regex loop and byte-pair merge over its own rank files) on texts generated to sit on the
 * pre-tokenizers' boundaries, at lengths around and above SLICE_CHARS. js-tiktoken's merge is
 * quadratic in a piece's length (2,100 `a`s take about 1 s), so generated pieces stay short;
 * texts far above the slice size are made of many pieces, and single pieces longer than a slice
 * are the explicit cases at the end.
 */
const RANKS = {
  o200k_base: o200k,
  cl100k_base: cl100k,
  p50k_base: p50k,
  p50k_edit: p50kEdit,
  r50k_base: r50k,
  gpt2,
} as const;
const oracles = new Map<EncodingName, Tiktoken>();
const oracleCount = (encoding: EncodingName, text: string) => {
  let oracle = oracles.get(encoding);
  if (!oracle) oracles.set(encoding, (oracle = new Tiktoken(RANKS[encoding])));
  return oracle.encode(text, [], []).length;
};

/** Characters by the class the pre-tokenizers tell apart (see `isExactCut`). */
const POOLS = {
  upper: ['A', 'B', 'H', 'Z', 'É', 'Ö', 'Σ', 'Ж', 'ǅ', '𝐀'],
  lower: ['a', 'e', 's', 't', 'z', 'é', 'ß', 'σ', 'ж', 'ʰ', '𝐚'],
  cjk: ['日', '本', '語', '中', '文', 'の', 'テ', 'キ', '한', '국', '𠀀'],
  space: [' ', ' ', ' ', '\t', '\u00a0', '\u3000', '\u2003', '\v', '\f', '\u2028', '\ufeff'],
  lineBreak: ['\n', '\n', '\r', '\r\n'],
  digit: ['0', '1', '5', '9', '٣', '²', 'Ⅻ', '𝟘', '½'],
  punct: [
    ...'.,!?-/\\()"#$%&*+=@^`|~<>[]{};:_'.split(''),
    '…',
    '—',
    '«',
    '»',
    '¿',
    '€',
    '°',
    '’',
    '。',
    '，',
  ],
  apostrophe: ["'"],
  mark: ['\u0301', '\u0308', '\u0327', '\u20dd', '\u093f', '\u0903', '\ufe0f'],
  emoji: ['👨‍👩‍👧‍👦', '👍🏽', '🇫🇷', '❤️', '🏳️‍🌈', '😀', '\u200d', '🏽', '🤷🏿‍♀️'],
  odd: [
    '\u0000',
    '\u0001',
    '\u007f',
    '\u0085',
    '\u200b',
    '\ud800',
    '\udbff',
    '\udc00',
    '\udfff',
    '\ufffd',
    '<|endoftext|>',
    '<|im_start|>',
  ],
} as const;
type Pool = keyof typeof POOLS;
const POOL_NAMES = Object.keys(POOLS) as Pool[];

const join = (parts: readonly string[]) => parts.join('');
/** 1..maxLength characters of one pool: a run the pre-tokenizer may see as one piece. */
const run = (pool: Pool, maxLength: number) =>
  fc.array(fc.constantFrom(...POOLS[pool]), { minLength: 1, maxLength }).map(join);
const mixedCase = (text: string, mask: number) =>
  [...text].map((c, i) => ((mask >> i) & 1 ? c.toUpperCase() : c)).join('');
const contraction = fc
  .tuple(
    run('lower', 6),
    fc.constantFrom("'s", "'t", "'re", "'ve", "'m", "'ll", "'d"),
    fc.nat(7),
    fc.boolean(),
  )
  .map(
    ([word, suffix, mask, upperWord]) =>
      (upperWord ? word.toUpperCase() : word) + mixedCase(suffix, mask),
  );
const hex = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'), maxLength: 120 });

/** One fragment aimed at a boundary: a run of one class, a word, a contraction, a long token. */
const fragment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...POOL_NAMES).chain((pool) => run(pool, 12)) },
  {
    weight: 2,
    arbitrary: fc.array(fc.oneof(run('upper', 8), run('lower', 8)), { maxLength: 4 }).map(join),
  },
  { weight: 1, arbitrary: run('upper', 24) },
  { weight: 1, arbitrary: run('space', 24) },
  {
    weight: 1,
    arbitrary: fc.array(fc.oneof(run('space', 4), run('lineBreak', 3)), { maxLength: 8 }).map(join),
  },
  { weight: 1, arbitrary: run('digit', 40) },
  { weight: 1, arbitrary: run('punct', 16) },
  { weight: 2, arbitrary: contraction },
  { weight: 1, arbitrary: run('cjk', 12) },
  { weight: 1, arbitrary: run('emoji', 5) },
  { weight: 1, arbitrary: fc.tuple(run('lower', 5), run('mark', 3)).map(join) },
  { weight: 1, arbitrary: fc.base64String({ maxLength: 120 }) },
  { weight: 1, arbitrary: fc.webUrl({ withQueryParameters: true, withFragments: true }) },
  { weight: 1, arbitrary: hex },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
);
const glued = (maxFragments: number) => fc.array(fragment, { maxLength: maxFragments }).map(join);

/**
 * Texts of `minLength`..`maxLength` characters, above the slice size: up to 12 glued fragments
 * and a piece breaker (a line break, a digit, a dot: each ends any piece for every encoding),
 * repeated. The breaker keeps js-tiktoken's quadratic merge off pieces thousands long.
 */
const long = (minLength: number, maxLength: number) =>
  fc
    .tuple(
      fc.array(fragment, { minLength: 1, maxLength: 12 }),
      fc.constantFrom('\n7.', '\r\n7. ', ' 7.\n', '\t7.'),
      fc.integer({ min: minLength, max: maxLength }),
    )
    .map(([parts, breaker, length]) => {
      const unit = join(parts) + breaker;
      return unit.repeat(Math.ceil(length / unit.length)).slice(0, length);
    });

/** Classes after which a cut is never exact (see `isExactCut`): a walk through them never has one. */
const JOINED_AFTER: Record<string, readonly Pool[]> = {
  letter: ['upper', 'lower', 'cjk', 'mark', 'apostrophe'],
  digit: ['digit'],
  punctuation: ['punct', 'emoji', 'apostrophe', 'mark', 'upper', 'lower', 'lineBreak'],
  whitespace: POOL_NAMES.filter((p) => p !== 'odd'),
};
const CLASS_OF: Record<Pool, keyof typeof JOINED_AFTER> = {
  upper: 'letter',
  lower: 'letter',
  cjk: 'letter',
  space: 'whitespace',
  lineBreak: 'whitespace',
  digit: 'digit',
  punct: 'punctuation',
  apostrophe: 'punctuation',
  mark: 'punctuation',
  emoji: 'punctuation',
  odd: 'punctuation',
};
/** After a character of each pool: the pools of its class and of other classes it joins. */
const NEXT_POOLS = {} as Record<Pool, { readonly leave: Pool[]; readonly stay: Pool[] }>;
for (const pool of POOL_NAMES) {
  const joined = JOINED_AFTER[CLASS_OF[pool]]!;
  NEXT_POOLS[pool] = {
    leave: joined.filter((p) => CLASS_OF[p] !== CLASS_OF[pool]),
    stay: joined.filter((p) => CLASS_OF[p] === CLASS_OF[pool]),
  };
}
/**
 * Texts of `minLength`..`maxLength` characters with (almost) no exact cut: each character comes
 * from a class the previous one's class is joined with, so the slicer must find a later cut or
 * count the whole stretch without one. Runs of one class last at most 16 characters (then the
 * class changes), which keeps the pieces short for js-tiktoken; a digit run, which only digits
 * may follow, ends with a line break (an exact cut, the only one).
 */
const uncuttable = (minLength: number, maxLength: number) =>
  fc
    .tuple(
      fc.array(fc.nat(), { minLength: 1, maxLength: 64 }),
      fc.integer({ min: minLength, max: maxLength }),
    )
    .map(([choices, length]) => {
      let previous = 'lower' as Pool;
      let run = 0;
      let text = '';
      for (let i = 0; text.length < length; i++) {
        const choice = (choices[i % choices.length]! * 31 + i * 7) >>> 0;
        const { leave, stay } = NEXT_POOLS[previous];
        let pool: Pool = previous;
        if (run >= 1 + (choice % 16) || choice % 3 === 0) {
          if (leave.length === 0) {
            text += '\n';
            previous = 'lineBreak';
            run = 1;
            continue;
          }
          pool = leave[(choice >>> 4) % leave.length]!;
        } else if (choice % 5 === 1) pool = stay[(choice >>> 4) % stay.length]!;
        run = CLASS_OF[pool] === CLASS_OF[previous] ? run + 1 : 1;
        const chars = POOLS[pool];
        text += chars[(choice >>> 6) % chars.length]!;
        previous = pool;
      }
      return text;
    });

const nameArb = fc.option(fc.oneof(fc.string({ maxLength: 12 }), run('upper', 6), contraction), {
  nil: undefined,
});

/**
 * `text` for a failure message: JSON.stringify, with every character outside printable ASCII
 * escaped (U+FEFF, ZWJ, NBSP and the like are invisible otherwise).
 */
const shown = (text: string | undefined) =>
  JSON.stringify(text)?.replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );

/** The role every generated message has. */
const ROLE = 'assistant';

/**
 * Asserts memq's counts of `text` equal js-tiktoken's: `countText`, `countMessage` (framing:
 * 3 + role + content (+ name + 1); its content count is the cache entry `countText` just made,
 * so this checks the framing), and for text longer than a slice the asynchronous variants
 * (which slice and yield on their own path) on a counter without a cache.
 */
async function expectExact(
  counters: { readonly cached: TokenCounter; readonly plain: TokenCounter },
  text: string,
  name: string | undefined,
): Promise<void> {
  const { encoding } = counters.plain;
  const expected = oracleCount(encoding, text);
  const got = counters.cached.countText(text);
  const what = `${encoding}, text ${shown(text)} (${text.length} chars)`;
  expect(got, `${what}: memq counted ${got}, js-tiktoken ${expected}`).toBe(expected);
  const message = { role: ROLE, content: text, name } as const;
  const framed =
    TOKENS_PER_MESSAGE +
    oracleCount(encoding, ROLE) +
    expected +
    (name === undefined ? 0 : oracleCount(encoding, name) + TOKENS_PER_NAME);
  const gotFramed = counters.cached.countMessage(message);
  expect(
    gotFramed,
    `${what}, name ${shown(name)}: memq countMessage ${gotFramed}, js-tiktoken ${framed}`,
  ).toBe(framed);
  if (text.length > SLICE_CHARS) {
    const gotAsync = await counters.plain.countTextAsync(text);
    expect(gotAsync, `${what}: memq countTextAsync ${gotAsync}, js-tiktoken ${expected}`).toBe(
      expected,
    );
    expect(await counters.plain.countMessageAsync(message)).toBe(framed);
  }
}

/** A counter with a count cache (for countText then countMessage) and one without. */
const countersFor = async (encoding: EncodingName) => ({
  cached: await createTokenCounter(encoding, { cache: createTokenCache() }),
  plain: await createTokenCounter(encoding),
});

/**
 * Runs per generator and encoding: 6,700 + 2,500 + 400 + 400 = 10,000 texts each for
 * o200k_base and cl100k_base; 800 of them cross SLICE_CHARS (up to 4 times).
 */
const PLAN = [
  ['glued fragments, 0-~600 characters', glued(30), 6700],
  ['texts with no exact cut, 1-600 characters', uncuttable(1, 600), 2500],
  [
    'texts with no exact cut across one to two slices',
    uncuttable(SLICE_CHARS - 8, 2 * SLICE_CHARS + 8),
    400,
  ],
  ['glued fragments repeated across 1-4 slices', long(SLICE_CHARS - 16, 4 * SLICE_CHARS), 400],
] as const;

describe('token counts equal js-tiktoken on generated boundary texts', () => {
  for (const encoding of ['o200k_base', 'cl100k_base'] as const) {
    for (const [title, texts, numRuns] of PLAN) {
      it(`${encoding}: ${title} (${numRuns} runs)`, async () => {
        const counters = await countersFor(encoding);
        await fc.assert(
          fc.asyncProperty(texts, nameArb, (text, name) => expectExact(counters, text, name)),
          { numRuns },
        );
      }, 300_000);
    }
  }

  it.each(['p50k_base', 'p50k_edit', 'r50k_base', 'gpt2'] as const)(
    '%s: glued, uncuttable and long texts (250 runs)',
    async (encoding) => {
      const counters = await countersFor(encoding);
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(glued(30), uncuttable(1, 600), long(SLICE_CHARS - 16, 3 * SLICE_CHARS)),
          nameArb,
          (text, name) => expectExact(counters, text, name),
        ),
        { numRuns: 250 },
      );
    },
    300_000,
  );

  // One encoding per distinct pre-tokenizer: the rule is about pieces, and ranks only act
  // within a piece (p50k_base, p50k_edit and gpt2 split as r50k_base does).
  it('cuts only where js-tiktoken splits the text with the same count (each pre-tokenizer)', () => {
    fc.assert(
      fc.property(glued(8), (text) => {
        for (let cut = 1; cut < text.length; cut++) {
          if (!isExactCut(text, cut)) continue;
          for (const encoding of ['o200k_base', 'cl100k_base', 'r50k_base'] as const) {
            const whole = oracleCount(encoding, text);
            const parts =
              oracleCount(encoding, text.slice(0, cut)) + oracleCount(encoding, text.slice(cut));
            expect(
              parts,
              `${encoding}, text ${shown(text)} cut at ${cut}: ${parts} in parts, ${whole} whole`,
            ).toBe(whole);
          }
        }
      }),
      { numRuns: 400 },
    );
  }, 300_000);
});

describe('explicit cases', () => {
  it.each([
    // texts where inexact cuts once counted 2604 and 4202 tokens.
    ['o200k_base', 'HELLO WORLD THIS IS A TEST OF UPPERCASE TEXT. '.repeat(200), 2601],
    ['o200k_base', 'ABC def GHI\n   \t  '.repeat(600), 4200],
  ] as const)('%s counts the issue table text exactly (%#)', async (encoding, text, tokens) => {
    const counter = await createTokenCounter(encoding);
    expect(oracleCount(encoding, text)).toBe(tokens);
    expect(counter.countText(text)).toBe(tokens);
    expect(await counter.countTextAsync(text)).toBe(tokens);
  });

  it.each(['\ufeff ', '\ufeff\u00e1'.repeat(40), `x${'\ufeff '.repeat(1500)}y`])(
    'counts text with a byte-order mark exactly, which gpt-tokenizer miscounts (%#)',
    async (text) => {
      for (const encoding of ['o200k_base', 'cl100k_base'] as const) {
        const counter = await createTokenCounter(encoding);
        expect(counter.countText(text), encoding).toBe(oracleCount(encoding, text));
      }
    },
  );

  it.each([
    ['a lowercase word', 'a'.repeat(SLICE_CHARS + 50)],
    ['an uppercase word', 'HELLOWORLD'.repeat(210)],
    ['a whitespace run', ' \t\u00a0'.repeat(700) + 'x'],
    ['a punctuation run', '!?.'.repeat(700)],
    ['a digit run', '1234567'.repeat(300)],
    ['mixed-case letters', 'aAbBcC'.repeat(350)],
    ['emoji with ZWJ and skin tones', '👨‍👩‍👧‍👦👍🏽'.repeat(140)],
  ])(
    'counts %s longer than a slice, which holds no exact cut, exactly',
    async (_, text) => {
      expect(text.length).toBeGreaterThan(SLICE_CHARS);
      expect(sliceStarts(text)).toEqual([0]);
      for (const encoding of ['o200k_base', 'cl100k_base'] as const) {
        const counter = await createTokenCounter(encoding);
        const expected = oracleCount(encoding, text);
        expect(counter.countText(text), encoding).toBe(expected);
        expect(await counter.countTextAsync(text), encoding).toBe(expected);
      }
    },
    120_000,
  );

  it('counts unspaced CJK above 4,096 bytes (a piece merged in its own arrays) exactly', async () => {
    const text = '日本語のテキストと中文文本'.repeat(110);
    expect(new TextEncoder().encode(text).length).toBeGreaterThan(4096);
    const counter = await createTokenCounter('o200k_base');
    expect(counter.countText(text)).toBe(oracleCount('o200k_base', text));
  }, 120_000);

  it('compiles the reference pre-tokenizers js-tiktoken ships', () => {
    for (const encoding of ENCODINGS) {
      expect(PRETOKENIZER_PATTERNS[encoding], encoding).toBe(RANKS[encoding].pat_str);
    }
  });
});
