import { describe, expect, it } from 'vitest';
import { SUMMARY_HEADING } from '../../../src/flush/summary.js';
import { SUMMARY_HEADING_TOKENS } from '../../../src/store/context-read.js';
import { createTokenCounter, ENCODINGS } from '../../../src/tokens/counter.js';

describe('SUMMARY_HEADING_TOKENS', () => {
  it('bounds what the heading adds to the stored summary count in every local encoding, and is reached', async () => {
    const added: number[] = [];
    for (const encoding of ENCODINGS) {
      const counter = await createTokenCounter(encoding);
      for (const text of [
        '- user: hello there.\n- assistant: Hi!',
        'The user asked for a refund of order 42.',
        '{"summary": true}',
      ]) {
        const stored = counter.countMessage({ role: 'system', content: text });
        const sent = counter.countMessage({
          role: 'system',
          content: `${SUMMARY_HEADING}\n${text}`,
        });
        added.push(sent - stored);
      }
    }
    expect(Math.max(...added)).toBe(SUMMARY_HEADING_TOKENS);
  });
});
