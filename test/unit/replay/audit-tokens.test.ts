import { Tiktoken } from 'js-tiktoken/lite';
import cl100k from 'js-tiktoken/ranks/cl100k_base';
import o200k from 'js-tiktoken/ranks/o200k_base';
import { describe, expect, it } from 'vitest';
import { createTokenCount } from '../../../src/replay/audit-tokens.js';
import { buildConversations } from '../../../src/replay/corpus.js';

describe('the audit token counter', () => {
  it.each([
    ['o200k_base', o200k],
    ['cl100k_base', cl100k],
  ])(
    'counts as js-tiktoken does (%s) on 500 corpus messages and odd text',
    async (_name, file) => {
      const { conversations } = await buildConversations({ limit: 500 });
      const texts = [
        ...conversations.flatMap((c) => c.messages.map((m) => m.content)),
        '',
        '<|endoftext|> is plain text here',
        '😀 naïve café 日本語 \u0000\t\r\n  x',
        ' '.repeat(300) + 'x'.repeat(300),
      ];
      const reference = new Tiktoken(file);
      const count = createTokenCount(file);
      for (const text of texts) expect(count(text)).toBe(reference.encode(text, [], []).length);
    },
    60_000,
  );

  it('counts a 256 KiB run of one character (js-tiktoken takes minutes on 16 KiB)', () => {
    const count = createTokenCount(o200k);
    expect(count(' '.repeat(2 ** 18))).toBeGreaterThan(0);
    expect(count('x'.repeat(2 ** 18))).toBeGreaterThan(0);
  }, 60_000);
});
