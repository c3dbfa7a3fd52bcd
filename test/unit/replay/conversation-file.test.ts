import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PayloadError } from '../../../src/core/errors.js';
import { MESSAGE_ID_PATTERN } from '../../../src/core/message.js';
import { loadConversationFile } from '../../../src/replay/conversation-file.js';
import { scriptedMessageIds } from '../../../src/replay/replay.js';
import { auditScriptedIds } from '../../../src/replay/replay-audit.js';

const FIXTURE = 'test/fixtures/agent-conversation.json';

describe('loadConversationFile', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'memq-conversations-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes `value` (JSON unless a string) to a new file and returns its path. */
  const file = (name: string, value: unknown): string => {
    const target = path.join(dir, name);
    writeFileSync(target, typeof value === 'string' ? value : JSON.stringify(value));
    return target;
  };
  /** The PayloadError `loadConversationFile(target)` throws. */
  const refusal = (target: string): PayloadError => {
    try {
      loadConversationFile(target);
    } catch (error) {
      expect(error).toBeInstanceOf(PayloadError);
      return error as PayloadError;
    }
    throw new Error(`${target} was accepted`);
  };

  it('reads the agent fixture: three conversations with tool calls, parts and a developer message', () => {
    const { conversations, stats } = loadConversationFile(FIXTURE);
    expect(conversations.map((c) => c.key)).toEqual([
      'agent:trip-oslo',
      'agent:support-4821',
      'agent:mail-drafts',
    ]);
    expect(stats).toEqual({ conversationsRead: 3, conversations: 3, messages: 41 });
    const all = conversations.flatMap((c) => c.messages);
    expect(all.some((m) => m.role === 'developer')).toBe(true);
    expect(all.some((m) => (m.tool_calls?.length ?? 0) === 3)).toBe(true);
    expect(all.filter((m) => m.privacy?.do_not_persist === true)).toHaveLength(1);
  });

  it('keeps whole conversations up to the limit and cuts the last one, as the e-mail sources do', () => {
    const { conversations, stats } = loadConversationFile(FIXTURE, { limit: 25 });
    expect(conversations.map((c) => c.messages.length)).toEqual([20, 5]);
    expect(stats).toEqual({ conversationsRead: 3, conversations: 2, messages: 25 });
  });

  it('names the file, the conversation index and the field of an invalid message', () => {
    const target = file('bad-call.json', [
      { key: 'a', messages: [{ role: 'user', content: 'hi' }] },
      {
        key: 'b',
        messages: [
          { role: 'user', content: 'hi' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'c1', type: 'function', function: { name: '', arguments: '{}' } }],
          },
        ],
      },
    ]);
    const error = refusal(target);
    expect(error.message).toContain(
      `--conversations ${target}: conversation 1: messages[1].tool_calls[0].function.name: `,
    );
    expect(error.details).toMatchObject({
      path: target,
      conversation: 1,
      field: 'messages[1].tool_calls[0].function.name',
    });
  });

  it('refuses a tool message without tool_call_id, an unknown field and a bad key, each where it is', () => {
    expect(
      refusal(file('no-call-id.json', [{ key: 'k', messages: [{ role: 'tool', content: 'x' }] }]))
        .message,
    ).toMatch(/conversation 0: messages\[0\]\.tool_call_id: /);
    expect(
      refusal(
        file('extra.json', [{ key: 'k', messages: [{ role: 'user', content: 'x', mood: 1 }] }]),
      ).message,
    ).toMatch(/conversation 0: messages\[0\]: .*mood/);
    expect(
      refusal(file('bad-key.json', [{ key: 'a b', messages: [{ role: 'user', content: 'x' }] }]))
        .message,
    ).toMatch(/conversation 0: key: /);
    expect(refusal(file('no-messages.json', [{ key: 'k', messages: [] }])).message).toMatch(
      /conversation 0: messages: expected at least one message/,
    );
  });

  it('refuses a key used twice, ids on some messages only, and ids out of order', () => {
    const one = { role: 'user', content: 'x' };
    expect(
      refusal(
        file('twice.json', [
          { key: 'k', messages: [one] },
          { key: 'k', messages: [one] },
        ]),
      ).message,
    ).toMatch(/conversation 1: key: "k" is also the key of conversation 0/);
    const id = (n: number) => `01JMB6Q2N0${String(n).padStart(16, '0')}`;
    expect(
      refusal(file('some-ids.json', [{ key: 'k', messages: [{ ...one, id: id(1) }, one] }]))
        .message,
    ).toMatch(/conversation 0: messages\[1\]\.id: either every message/);
    expect(
      refusal(
        file('unordered.json', [
          {
            key: 'k',
            messages: [
              { ...one, id: id(2) },
              { ...one, id: id(1) },
            ],
          },
        ]),
      ).message,
    ).toMatch(/conversation 0: messages\[1\]\.id: expected an id above messages\[0\]\.id/);
  });

  it('refuses what is not a JSON array of conversations, a missing file and a folder', () => {
    expect(refusal(file('broken.json', '[{"key":')).message).toMatch(/not valid JSON/);
    expect(refusal(file('object.json', { key: 'k', messages: [] })).message).toMatch(
      /expected a non-empty JSON array of conversations/,
    );
    expect(refusal(file('empty.json', [])).message).toMatch(/expected a non-empty JSON array/);
    expect(refusal(path.join(dir, 'absent.json')).message).toMatch(/found nothing there/);
    const folder = path.join(dir, 'folder.json');
    mkdirSync(folder);
    expect(refusal(folder).message).toMatch(/found a folder/);
  });
});

describe('scriptedMessageIds and the audit restating it', () => {
  const { conversations } = loadConversationFile(FIXTURE);

  it('agree on every conversation of the fixture, and give ascending ULIDs', () => {
    for (const conversation of conversations) {
      const ids = scriptedMessageIds(conversation);
      expect(auditScriptedIds(conversation)).toEqual(ids);
      expect(ids).toHaveLength(conversation.messages.length);
      for (const id of ids) expect(id).toMatch(MESSAGE_ID_PATTERN);
      expect([...ids].sort()).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
    }
  });

  it('use the ids the file gives, and otherwise derive them from the first created_at', () => {
    const mail = conversations.find((c) => c.key === 'agent:mail-drafts')!;
    expect(scriptedMessageIds(mail)).toEqual(mail.messages.map((m) => m.id));
    const support = conversations.find((c) => c.key === 'agent:support-4821')!;
    // created_at of the first message that has one: 2025-02-10T09:15:00.000Z, + 1 ms per message
    const first = Date.parse('2025-02-10T09:15:00.000Z');
    const ids = scriptedMessageIds(support);
    const timeOf = (id: string) =>
      [...id.slice(0, 10)].reduce(
        (t, c) => t * 32 + '0123456789ABCDEFGHJKMNPQRSTVWXYZ'.indexOf(c),
        0,
      );
    expect(ids.map(timeOf)).toEqual(ids.map((_, i) => first + i));
  });

  it('give the same id to the same message and another to a changed one', () => {
    const trip = conversations[0]!;
    const changed = {
      key: trip.key,
      messages: trip.messages.map((m, i) => (i === 3 ? { ...m, content: 'changed' } : m)),
    };
    const before = scriptedMessageIds(trip);
    const after = scriptedMessageIds(changed);
    expect(after.filter((id, i) => id !== before[i])).toEqual([after[3]]);
    expect(auditScriptedIds(changed)).toEqual(after);
  });
});
