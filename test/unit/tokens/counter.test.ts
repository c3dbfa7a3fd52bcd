import { describe, expect, it } from 'vitest';
import {
  createTokenCounter,
  encodingForModel,
  estimateTokens,
  TOKENS_PER_MESSAGE,
} from '../../../src/tokens/counter.js';

describe('token counter', () => {
  it.each([
    ['gpt-4o', 'o200k_base'],
    ['gpt-4o-2024-08-06', 'o200k_base'],
    ['gpt-4.1-mini', 'o200k_base'],
    ['gpt-5', 'o200k_base'],
    ['gpt-5-2026-01-01', 'o200k_base'],
    ['o3-mini', 'o200k_base'],
    ['gpt-4', 'cl100k_base'],
    ['gpt-4-0613', 'cl100k_base'],
    ['gpt-3.5-turbo', 'cl100k_base'],
    ['text-davinci-003', 'p50k_base'],
  ])('maps %s to %s', (model, encoding) => {
    expect(encodingForModel(model)).toBe(encoding);
  });

  it('rejects an unknown model with a config error naming it', () => {
    expect(() => encodingForModel('llama-3')).toThrow(
      /token_provider\.model: expected a model with a known tiktoken encoding .* got "llama-3"/,
    );
  });

  it('counts special-token text as plain text instead of throwing', async () => {
    const counter = await createTokenCounter('cl100k_base');
    expect(counter.countText('<|endoftext|>')).toBeGreaterThan(1);
    expect(counter.countText('hello world')).toBe(2);
  });

  it('adds the chat-format overhead per message: 3 + role + content (+ name + 1)', async () => {
    const counter = await createTokenCounter('cl100k_base');
    const base = counter.countMessage({ role: 'user', content: 'hello world' });
    expect(base).toBe(TOKENS_PER_MESSAGE + 1 + 2);
    expect(counter.countMessage({ role: 'user', content: 'hello world', name: 'bob' })).toBe(
      base + counter.countText('bob') + 1,
    );
    expect(counter.countMessage({ role: 'assistant', content: '' })).toBe(TOKENS_PER_MESSAGE + 1);
  });

  it('estimates chars/4 plus framing before the exact count', () => {
    expect(estimateTokens({ role: 'user', content: 'x'.repeat(40) })).toBe(
      TOKENS_PER_MESSAGE + Math.ceil(44 / 4),
    );
  });
});
