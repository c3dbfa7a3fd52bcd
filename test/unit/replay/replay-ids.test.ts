import { describe, expect, it } from 'vitest';
import { ulid } from 'ulid';
import { createHash } from 'node:crypto';
import { MESSAGE_ID_PATTERN } from '../../../src/core/message.js';
import { buildConversations, type Conversation } from '../../../src/replay/corpus.js';
import { replayMessageIds } from '../../../src/replay/replay.js';
import { auditMessageIds } from '../../../src/replay/replay-audit.js';

function conversation(dates: Array<string | undefined>): Conversation {
  return {
    threadId: 'thread:0000000000000000',
    messages: dates.map((date, i) => ({
      role: 'user',
      content: `m${i}`,
      metadata: {
        subject: 's',
        message_id: `m${i}@x`,
        thread_id: 'thread:0000000000000000',
        corpus_id: `t/${i}`,
        ...(date === undefined ? {} : { date }),
      },
    })),
  };
}

describe('replayMessageIds', () => {
  it('gives valid ids for a thread whose first Date is before 1970 (year 0102) or after 9999', () => {
    for (const date of [
      '0102-06-10T12:00:00.000Z',
      '1969-12-31T23:59:59.999Z',
      '+020102-06-10T12:00:00.000Z',
    ]) {
      const ids = replayMessageIds(conversation([date, '2002-08-22T10:00:00.000Z']));
      expect(ids).toHaveLength(2);
      for (const id of ids) expect(id).toMatch(MESSAGE_ID_PATTERN);
      expect(auditMessageIds(conversation([date, '2002-08-22T10:00:00.000Z']))).toEqual(ids);
      expect(ids[0]! < ids[1]!).toBe(true);
    }
  });

  it('uses the first in-range Date, else 2002-01-01, plus the index in ms', () => {
    const ids = replayMessageIds(conversation([undefined, '2002-08-22T10:00:00.000Z', undefined]));
    const base = Date.parse('2002-08-22T10:00:00.000Z');
    expect(ids.map((id) => id.slice(0, 10))).toEqual(
      [base, base + 1, base + 2].map((t) => ulid(t).slice(0, 10)),
    );
    const undated = replayMessageIds(conversation([undefined]));
    expect(undated[0]!.slice(0, 10)).toBe(ulid(Date.UTC(2002, 0, 1)).slice(0, 10));
  });

  it('gives the ids earlier releases gave (ulid with a SHA-256 PRNG) on 300 real e-mails', async () => {
    const { conversations } = await buildConversations({ limit: 300 });
    for (const c of conversations) {
      const base =
        c.messages
          .map((m) => (m.metadata.date ? Date.parse(m.metadata.date) : NaN))
          .find((t) => !Number.isNaN(t)) ?? Date.UTC(2002, 0, 1);
      const before = c.messages.map((m, index) => {
        const digest = createHash('sha256').update(m.metadata.message_id).digest();
        let i = 0;
        return ulid(base + index, () => (digest[i++ % digest.length]! % 32) / 32);
      });
      expect(replayMessageIds(c)).toEqual(before);
      // The audit's reimplementation of the documented rule agrees.
      expect(auditMessageIds(c)).toEqual(before);
    }
  }, 30_000);
});
