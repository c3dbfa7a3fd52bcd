import { Tiktoken } from 'js-tiktoken/lite';
import cl100k from 'js-tiktoken/ranks/cl100k_base';
import o200k from 'js-tiktoken/ranks/o200k_base';
import { randomBytes, randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Message } from '../../../src/core/message.js';
import {
  auditImageTokens,
  createMessageCount,
  createTokenCount,
} from '../../../src/replay/audit-tokens.js';
import { buildConversations } from '../../../src/replay/corpus.js';
import { createTokenCounter } from '../../../src/tokens/counter.js';
import { imageTokens } from '../../../src/tokens/image-tokens.js';
import { dataUrl, gif, jpeg, png, webp } from '../../helpers/images.js';

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

describe('the audit message count', () => {
  const image = (url: string, detail?: 'auto' | 'low' | 'high') =>
    ({ type: 'image_url', image_url: { url, ...(detail ? { detail } : {}) } }) as const;
  const shapes: Array<Omit<Message, 'id' | 'created_at'>> = [
    { role: 'user', content: 'Where is my parcel?' },
    { role: 'user', content: 'hi', name: 'jane' },
    { role: 'system', content: '' },
    { role: 'developer', content: 'Answer in French.' },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'What is in ' },
        { type: 'text', text: 'these pictures?' },
        image(dataUrl(png(1024, 1024)), 'high'),
        image(dataUrl(jpeg(3000, 2000, 2, 5000), 'image/jpeg')),
        image(dataUrl(webp('VP8L', 640, 480)), 'low'),
        image('https://example.com/cat.gif', 'auto'),
      ],
    },
    {
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          id: 'call_1',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"city": "Paris"}' },
        },
        { id: 'call_2', type: 'function', function: { name: 'lookup', arguments: '{"order": 10' } },
      ],
    },
    {
      role: 'assistant',
      content: [{ type: 'text', text: 'Checking.' }],
      tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '' } }],
    },
    { role: 'tool', content: '{"temperature": 21}', tool_call_id: 'call_1' },
    { role: 'tool', content: [{ type: 'text', text: 'done' }], tool_call_id: 'call_2' },
  ];

  it.each([['o200k_base', o200k] as const, ['cl100k_base', cl100k] as const])(
    'agrees with memq on text, parts, images, tool calls and tool results (%s)',
    async (encoding, file) => {
      const memq = await createTokenCounter(encoding);
      const audit = createMessageCount(file);
      for (const message of shapes) expect(audit(message)).toBe(memq.countMessage(message));
    },
    60_000,
  );

  it('names the field of a shape memq never stores', () => {
    const audit = createMessageCount(o200k);
    expect(() => audit({ role: 'user', content: 42 })).toThrow(/^content: /);
    expect(() => audit({ role: 'user', content: [{ type: 'audio' }] })).toThrow(
      /^content\[0\]\.type: /,
    );
    expect(() =>
      audit({ role: 'assistant', content: null, tool_calls: [{ function: { name: 'f' } }] }),
    ).toThrow(/^tool_calls\[0\]\.function\.arguments: /);
  });

  it('counts 3,000 generated and damaged images as memq does', () => {
    // Small sides cross tile and scaling boundaries; large ones the 2048 fit and 16-bit limits.
    const side = () =>
      [randomInt(1, 1600), randomInt(1, 9000), randomInt(1, 70_000)][randomInt(3)]!;
    const build = (): Buffer => {
      const [w, h] = [side(), side()];
      switch (randomInt(7)) {
        case 0:
          return png(w, h, randomInt(0, 64));
        case 1:
          return gif(w & 0xffff, h & 0xffff);
        case 2:
          return webp('VP8 ', w & 0x3fff, h & 0x3fff);
        case 3:
          return webp('VP8L', Math.min(w, 16384), Math.min(h, 16384));
        case 4:
          return webp('VP8X', w, h);
        case 5:
          return jpeg(w & 0xffff, h & 0xffff, randomInt(0, 5), randomInt(0, 30_000));
        default:
          return randomBytes(randomInt(0, 100));
      }
    };
    /** Damage of one kind, or none: what a size reader must not misread. */
    const damage = (url: string): string => {
      const comma = url.indexOf(',') + 1;
      const at = comma + randomInt(Math.max(1, url.length - comma));
      switch (randomInt(8)) {
        case 0:
          return url.slice(0, at); // truncated
        case 1:
          return `${url.slice(0, at)}${'ABCD'[randomInt(4)]}${url.slice(at + 1)}`; // a changed character
        case 2:
          return `${url.slice(0, at)}\n${url.slice(at)}`; // a line break
        case 3:
          return `${url.slice(0, at)}=${url.slice(at)}`; // misplaced padding
        case 4:
          return url.replace(';base64', '');
        default:
          return url;
      }
    };
    for (let i = 0; i < 3000; i++) {
      const url = damage(dataUrl(build()));
      for (const detail of [undefined, 'high', 'low'] as const) {
        expect(auditImageTokens(url, detail), url.slice(0, 120)).toBe(
          imageTokens(image(url, detail)).tokens,
        );
      }
    }
  }, 120_000);
});
