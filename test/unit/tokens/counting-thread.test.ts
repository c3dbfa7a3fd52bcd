import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createCountingThread } from '../../../src/tokens/counting-thread.js';
import { createTokenCounter } from '../../../src/tokens/counter.js';

describe('counting thread', () => {
  it('starts on the first count, stops when idle, and starts again for the next count', async () => {
    const thread = createCountingThread(pino({ level: 'silent' }), { idleMs: 200 });
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

  it('reports the time it spent counting each request', async () => {
    const busy: number[] = [];
    const thread = createCountingThread(pino({ level: 'silent' }), {
      onBusy: (ms) => busy.push(ms),
    });
    const text = 'lorem ipsum dolor sit amet, '.repeat(2_000);
    try {
      await thread.count('o200k_base', [text]); // starts the thread and loads its encoder
      const started = performance.now();
      await thread.count('o200k_base', [text, text]);
      const wallMs = performance.now() - started;
      expect(busy).toHaveLength(2);
      expect(busy[1]).toBeGreaterThan(0);
      // Counting is part of the round trip, never more than it.
      expect(busy[1]).toBeLessThanOrEqual(wallMs);
    } finally {
      await thread.close();
    }
  }, 60_000);
});
