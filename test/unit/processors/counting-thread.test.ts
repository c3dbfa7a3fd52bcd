import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createCountingThread } from '../../../processors/counting-thread.js';
import { createTokenCounter } from '../../../src/core/token-counter.js';

describe('counting thread', () => {
  it('starts on the first count, stops when idle, and starts again for the next count', async () => {
    const thread = createCountingThread(pino({ level: 'silent' }), 200);
    const local = await createTokenCounter('o200k_base');
    const texts = ['hello there', 'a longer sentence with several words in it'];
    try {
      expect(thread.running()).toBe(false);
      expect(await thread.count('o200k_base', texts)).toEqual(texts.map((t) => local.countText(t)));
      expect(thread.running()).toBe(true);
      const deadline = Date.now() + 10_000;
      while (thread.running() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(thread.running()).toBe(false);
      expect(await thread.count('o200k_base', texts)).toEqual(texts.map((t) => local.countText(t)));
      expect(thread.running()).toBe(true);
    } finally {
      await thread.close();
    }
    expect(thread.running()).toBe(false);
  }, 60_000);
});
