import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  createTokenCounter,
  estimateTokens,
  messageParts,
  TOKENS_PER_MESSAGE,
  TOKENS_PER_NAME,
  TOKENS_PER_TOOL_CALL,
  type CountableMessage,
} from '../../../src/tokens/counter.js';
import {
  highDetailImageTokens,
  imageRuleIsPublishedFor,
  imageSizeOfDataUrl,
  imageTokens,
  UNKNOWN_SIZE_IMAGE_TOKENS,
} from '../../../src/tokens/image-tokens.js';
import { dataUrl, gif, jpeg, png, webp } from '../../helpers/images.js';

const image = (url: string, detail?: 'auto' | 'low' | 'high') =>
  ({ type: 'image_url', image_url: { url, ...(detail ? { detail } : {}) } }) as const;

describe('image tokens (OpenAI vision guide, "Calculating costs")', () => {
  it.each([
    // The guide's own examples.
    [1024, 1024, 765],
    [2048, 4096, 1105],
    // One tile; never scaled up.
    [100, 100, 255],
    [512, 512, 255],
    [513, 512, 425],
    // Fit in 2048 first (10000 x 100 -> 2048 x 20), then no second scaling.
    [10_000, 100, 765],
    // Shortest side to 768: 1536 x 3000 -> 768 x 1500 -> 2 x 3 tiles.
    [1536, 3000, 1105],
    // The largest an image can cost: 768 x 2048 after scaling, 8 tiles.
    [3000, 8000, 1445],
  ])('a %i x %i high-detail image costs %i tokens', (width, height, tokens) => {
    expect(highDetailImageTokens({ width, height })).toBe(tokens);
    expect(highDetailImageTokens({ width: height, height: width })).toBe(tokens);
  });

  it('counts low detail as 85 tokens exactly, whatever the URL', () => {
    for (const url of ['https://example.com/cat.png', dataUrl(png(4096, 8192))]) {
      expect(imageTokens(image(url, 'low'))).toEqual({ tokens: 85, exact: true });
    }
  });

  it.each([
    ['PNG', png(1024, 1024)],
    ['GIF', gif(1024, 1024)],
    ['WebP VP8', webp('VP8 ', 1024, 1024)],
    ['WebP VP8L', webp('VP8L', 1024, 1024)],
    ['WebP VP8X', webp('VP8X', 1024, 1024)],
    ['JPEG after Exif segments', jpeg(1024, 1024, 3, 20_000)],
  ])(
    'reads the size of a %s data URL: high is exact, auto counts as high but estimated',
    (_, bytes) => {
      const url = dataUrl(bytes, 'image/whatever');
      expect(imageSizeOfDataUrl(url)).toEqual({ width: 1024, height: 1024 });
      expect(imageTokens(image(url, 'high'))).toEqual({ tokens: 765, exact: true });
      expect(imageTokens(image(url))).toEqual({ tokens: 765, exact: false });
      expect(imageTokens(image(url, 'auto'))).toEqual({ tokens: 765, exact: false });
    },
  );

  it('counts an image of unknown size at the most the rule allows, marked estimated', () => {
    const unknown = [
      'https://example.com/cat.png', // never fetched
      `data:image/png,${'%89PNG'}`, // not base64
      dataUrl(Buffer.from('not an image at all, just some text')),
      // A JPEG whose frame header lies past the first 64 KiB.
      dataUrl(jpeg(1024, 1024, 2, 40_000), 'image/jpeg'),
      // Whitespace inside the base64 header bytes.
      dataUrl(png(1024, 1024)).replace('base64,', 'base64, '),
      // A zero side.
      dataUrl(png(0, 1024)),
    ];
    for (const url of unknown) {
      expect(imageSizeOfDataUrl(url)).toBeUndefined();
      expect(imageTokens(image(url, 'high'))).toEqual({
        tokens: UNKNOWN_SIZE_IMAGE_TOKENS,
        exact: false,
      });
    }
    expect(UNKNOWN_SIZE_IMAGE_TOKENS).toBe(1445);
  });

  it('accepts base64 padding only at the end of the payload', () => {
    const url = dataUrl(png(1024, 1024, 17)); // 58 bytes: one '=' of padding
    expect(url.endsWith('=')).toBe(true);
    expect(imageSizeOfDataUrl(url)).toEqual({ width: 1024, height: 1024 });
    expect(imageSizeOfDataUrl(`${url}AAAA`)).toBeUndefined();
  });

  it('knows which models the 85 / 170 figures are published for', () => {
    for (const model of ['gpt-4o', 'gpt-4o-2024-08-06', 'chatgpt-4o-latest', 'gpt-4-turbo'])
      expect(imageRuleIsPublishedFor(model)).toBe(true);
    for (const model of ['gpt-4o-mini', 'gpt-4.1-mini', 'o4-mini', 'o3', 'claude-sonnet-4-5'])
      expect(imageRuleIsPublishedFor(model)).toBe(false);
  });
});

describe('message tokens with parts, tool calls and tool results', () => {
  it('counts text parts each on its own and sums them', async () => {
    const counter = await createTokenCounter('o200k_base');
    const parts = ['Hello', ' world', '', 'naïve café 日本語'];
    const message: CountableMessage = {
      role: 'user',
      content: parts.map((text) => ({ type: 'text', text })),
    };
    expect(counter.countMessage(message)).toBe(
      TOKENS_PER_MESSAGE +
        counter.countText('user') +
        parts.reduce((sum, t) => sum + counter.countText(t), 0),
    );
    expect(await counter.countMessageAsync(message)).toBe(counter.countMessage(message));
    expect(messageParts(message).estimated).toEqual([]);
  });

  it('counts a string message exactly as the cookbook does, unchanged', async () => {
    const counter = await createTokenCounter('cl100k_base');
    expect(counter.countMessage({ role: 'user', content: 'hello world', name: 'bob' })).toBe(
      TOKENS_PER_MESSAGE + 1 + 2 + counter.countText('bob') + TOKENS_PER_NAME,
    );
  });

  it('counts an image part by the vision rule, not by its URL', async () => {
    const counter = await createTokenCounter('o200k_base');
    const url = dataUrl(png(2048, 4096, 200_000));
    const message: CountableMessage = {
      role: 'user',
      content: [{ type: 'text', text: 'what is this?' }, image(url, 'high'), image(url, 'low')],
    };
    expect(counter.countMessage(message)).toBe(
      TOKENS_PER_MESSAGE +
        counter.countText('user') +
        counter.countText('what is this?') +
        1105 +
        85,
    );
    expect(messageParts(message)).toMatchObject({ images: 2, estimated: [] });
  });

  it('counts each tool call as name + arguments + 7, null content as nothing, marked estimated', async () => {
    const counter = await createTokenCounter('o200k_base');
    const calls = [
      { name: 'get_weather', arguments: '{"city": "Paris"}' },
      { name: 'lookup_order', arguments: '{"order":1042}' },
    ];
    const message: CountableMessage = {
      role: 'assistant',
      content: null,
      tool_calls: calls.map((fn, i) => ({ id: `call_${i}`, type: 'function', function: fn })),
    };
    expect(counter.countMessage(message)).toBe(
      TOKENS_PER_MESSAGE +
        counter.countText('assistant') +
        calls.reduce(
          (sum, c) =>
            sum + counter.countText(c.name) + counter.countText(c.arguments) + TOKENS_PER_TOOL_CALL,
          0,
        ),
    );
    expect(messageParts(message).estimated).toEqual(['tool calls']);
  });

  it('counts a tool result tool_call_id as text, marked estimated', async () => {
    const counter = await createTokenCounter('o200k_base');
    const message: CountableMessage = {
      role: 'tool',
      content: '{"temperature": 21}',
      tool_call_id: 'call_Id8ycVMsW8gdsf7kSXfgAcf1',
    };
    expect(counter.countMessage(message)).toBe(
      TOKENS_PER_MESSAGE +
        counter.countText('tool') +
        counter.countText('{"temperature": 21}') +
        counter.countText('call_Id8ycVMsW8gdsf7kSXfgAcf1'),
    );
    expect(messageParts(message).estimated).toEqual(['tool_call_id']);
  });

  it('lists every estimated part once, in a fixed order', () => {
    const message: CountableMessage = {
      role: 'assistant',
      content: [image('https://example.com/a.png'), image('https://example.com/b.png')],
      tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }],
    };
    expect(messageParts(message).estimated).toEqual(['tool calls', 'images']);
  });

  it('estimates a 1 MB base64 image by the image rule, not by its length', () => {
    const url = dataUrl(Buffer.concat([png(1024, 1024), randomBytes(2 ** 20)]));
    expect(url.length).toBeGreaterThan(2 ** 20);
    const estimate = estimateTokens({ role: 'user', content: [image(url, 'high')] });
    expect(estimate).toBe(TOKENS_PER_MESSAGE + Math.ceil('user'.length / 4) + 765);
    const unknown = estimateTokens({
      role: 'user',
      content: [image(url.replace('data:', 'https://x/'), 'auto')],
    });
    expect(unknown).toBe(TOKENS_PER_MESSAGE + 1 + UNKNOWN_SIZE_IMAGE_TOKENS);
  });

  it('estimates text parts, tool calls and tool_call_id by chars / 4', () => {
    expect(
      estimateTokens({
        role: 'assistant',
        content: [{ type: 'text', text: 'x'.repeat(31) }],
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'ab', arguments: 'cd' } }],
      }),
    ).toBe(TOKENS_PER_MESSAGE + Math.ceil((9 + 31 + 4) / 4) + TOKENS_PER_TOOL_CALL);
    expect(estimateTokens({ role: 'tool', content: 'ok', tool_call_id: 'c1' })).toBe(
      TOKENS_PER_MESSAGE + Math.ceil((4 + 2 + 2) / 4),
    );
  });
});
