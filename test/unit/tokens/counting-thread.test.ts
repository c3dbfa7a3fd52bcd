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

  it('answers a synchronous count while it counts a batch, and starts for one when stopped', async () => {
    const thread = createCountingThread(pino({ level: 'silent' }), { idleMs: 200 });
    const local = await createTokenCounter('o200k_base');
    const long = 'lorem ipsum dolor sit amet, '.repeat(20_000);
    try {
      expect(thread.countSync('o200k_base', ['hello there'])).toEqual([
        local.countText('hello there'),
      ]);
      const batch = thread.count('o200k_base', [long, long, long, long]);
      // Posted while the batch is (or is about to be) counted: answered between its texts.
      expect(thread.countSync('o200k_base', ['a summary', ''])).toEqual([
        local.countText('a summary'),
        0,
      ]);
      expect(await batch).toEqual([long, long, long, long].map((t) => local.countText(t)));
      const deadline = Date.now() + 10_000;
      while (thread.running() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(thread.running()).toBe(false);
      const cl100k = await createTokenCounter('cl100k_base');
      expect(thread.countSync('cl100k_base', ['<|endoftext|> is plain text'])).toEqual([
        cl100k.countText('<|endoftext|> is plain text'),
      ]);
      expect(thread.running()).toBe(true);
    } finally {
      await thread.close();
    }
    expect(() => thread.countSync('o200k_base', ['x'])).toThrow(/closed/);
  }, 60_000);
});
