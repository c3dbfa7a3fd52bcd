import { describe, expect, it } from 'vitest';
import { PayloadError } from '../../../src/core/errors.js';
import {
  MemqChatMessageHistory,
  isInProcessClient,
  type MemqHistoryClient,
  type MemqHttpHistoryClient,
} from '../../../src/langchain/index.js';

/** A client whose every call fails the test: construction must do no I/O. */
const untouchable = (): MemqHttpHistoryClient => {
  const fail = () => Promise.reject(new Error('no call expected'));
  return { append: fail, read: fail, clear: fail };
};

describe('MemqChatMessageHistory options', () => {
  it('accepts a valid resource and key without calling the client', () => {
    const history = new MemqChatMessageHistory({
      client: untouchable(),
      resource: 'chat-buffer',
      key: 'chat:user@example.org:42',
    });
    expect(history).toMatchObject({ resource: 'chat-buffer', key: 'chat:user@example.org:42' });
  });

  it.each([
    [{ resource: '', key: 'k' }, /^resource: expected 1-100 characters/],
    [{ resource: '-lead', key: 'k' }, /^resource: /],
    [{ resource: 'chat-buffer', key: '' }, /^key: expected 1-256 characters/],
    [{ resource: 'chat-buffer', key: 'has space' }, /^key: expected/],
    [{ resource: 'chat-buffer', key: '__internal' }, /not starting or ending with "__"/],
    [{ resource: 'chat-buffer', key: 'chat:{{ .id }}' }, /^key: expected/],
    [{ resource: 'chat-buffer', key: 'x'.repeat(257) }, /\(257 chars\)/],
  ])('refuses %j with a PayloadError naming the field', (fields, message) => {
    const make = () => new MemqChatMessageHistory({ client: untouchable(), ...fields });
    expect(make).toThrow(PayloadError);
    expect(make).toThrow(message);
  });

  it('refuses a key that is not a string and a client that is not a memq client', () => {
    expect(
      () =>
        new MemqChatMessageHistory({
          client: untouchable(),
          resource: 'r',
          key: 42 as unknown as string,
        }),
    ).toThrow(/^key: expected a string, got number/);
    expect(
      () =>
        new MemqChatMessageHistory({
          client: {} as MemqHistoryClient,
          resource: 'r',
          key: 'k',
        }),
    ).toThrow(/^client: expected a memq client/);
  });

  it('tells the in-process client from the HTTP client', () => {
    expect(isInProcessClient(untouchable())).toBe(false);
    const inProcess = { ...untouchable(), project: 'p', waitFor: () => Promise.resolve() };
    expect(isInProcessClient(inProcess as unknown as MemqHistoryClient)).toBe(true);
  });
});
