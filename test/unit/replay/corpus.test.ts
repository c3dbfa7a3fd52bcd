import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PayloadError } from '../../../src/core/errors.js';
import { MessageInputSchema } from '../../../src/core/message.js';
import {
  THREAD_ID_PATTERN,
  UnparseableEmailError,
  buildConversations,
  loadCorpus,
  normalizeSubject,
  parseEmail,
  parseEmails,
  threadEmails,
  threadIdFor,
  toMessages,
} from '../../../src/replay/corpus.js';
import type { MessageInput } from '../../../src/core/message.js';
import type {
  CorpusEmail,
  ParsedEmail,
  ReplayMessage,
  Thread,
} from '../../../src/replay/corpus.js';

/** A raw corpus e-mail from header lines and a body. */
function raw(headers: readonly string[], body: string, id = '00001'): CorpusEmail {
  return {
    group: 'easy-ham-1',
    id,
    text: `From someone@example.org  Thu Aug 22 12:36:23 2002\n${headers.join('\n')}\n\n${body}`,
  };
}

/** A parsed e-mail with defaults for what a test does not care about. */
function parsed(overrides: Partial<ParsedEmail> & { messageId: string }): ParsedEmail {
  return {
    source: `easy-ham-1/${overrides.messageId}`,
    inReplyTo: undefined,
    references: [],
    subject: 'Subject',
    from: { address: 'a@example.org', name: 'A' },
    date: undefined,
    body: `body of ${overrides.messageId}`,
    ...overrides,
  };
}

function idsOf(thread: Thread): string[] {
  return thread.emails.map((email) => email.messageId);
}

describe('loadCorpus', () => {
  it('loads easy-ham-1 and easy-ham-2 by default, in dataset order', () => {
    const emails = loadCorpus();
    expect(emails).toHaveLength(3900);
    expect(emails[0]).toMatchObject({ group: 'easy-ham-1', id: '00001' });
    expect(emails.at(-1)?.group).toBe('easy-ham-2');
  });

  it('rejects an unknown group, naming it and the valid ones', () => {
    expect(() => loadCorpus({ groups: ['easy-ham-1', 'ham-3'] })).toThrow(PayloadError);
    expect(() => loadCorpus({ groups: ['ham-3'] })).toThrow(
      /unknown group "ham-3"; valid groups: easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2/,
    );
  });

  it('rejects an empty group list', () => {
    expect(() => loadCorpus({ groups: [] })).toThrow(PayloadError);
  });
});

describe('parseEmail', () => {
  it('reads ids, references, subject, sender and date, and strips the body', async () => {
    const email = await parseEmail(
      raw(
        [
          'From: Robert Elz <kre@munnari.OZ.AU>',
          'Subject: Re: New Sequences Window',
          'Message-Id: <13258.1030015585@munnari.OZ.AU>',
          'In-Reply-To: <1029945287.4797.TMDA@deepeddy.vircio.com>',
          'References: <1029945287.4797.TMDA@deepeddy.vircio.com>',
          '    <1029882468.3116.TMDA@deepeddy.vircio.com> <9627.1029933001@munnari.OZ.AU>',
          'Date: Thu, 22 Aug 2002 18:26:25 +0700',
          'Content-Type: text/plain; charset=us-ascii',
        ],
        'Chris wrote:\n> old\nnew\n\n_______________________________________________\nExmh-workers mailing list\n',
      ),
    );
    expect(email).toEqual({
      source: 'easy-ham-1/00001',
      messageId: '13258.1030015585@munnari.OZ.AU',
      inReplyTo: '1029945287.4797.TMDA@deepeddy.vircio.com',
      references: [
        '1029945287.4797.TMDA@deepeddy.vircio.com',
        '1029882468.3116.TMDA@deepeddy.vircio.com',
        '9627.1029933001@munnari.OZ.AU',
      ],
      subject: 'Re: New Sequences Window',
      from: { address: 'kre@munnari.OZ.AU', name: 'Robert Elz' },
      date: '2002-08-22T11:26:25.000Z',
      body: 'new',
    });
  });

  it('falls back to no date, a synthetic Message-ID and no sender', async () => {
    const email = await parseEmail(
      raw(['Subject: hi', 'Date: sometime last week'], 'text', '00042'),
    );
    expect(email.date).toBeUndefined();
    expect(email.messageId).toBe('easy-ham-1.00042@corpus.invalid');
    expect(email.from).toBeUndefined();
  });

  it('treats a Date before 1970 or after 9999 as no date, and counts the fallback', async () => {
    for (const date of ['Mon, 10 Jun 0102 12:00:00 +0000', 'Sat, 10 Jun 20102 12:00:00 +0000']) {
      const email = await parseEmail(raw(['Message-Id: <d@x>', `Date: ${date}`], 'text'));
      expect(email.date).toBeUndefined();
      expect(email.fallbacks).toEqual(['Date out of range']);
    }
    const edge = await parseEmail(raw(['Date: Thu, 01 Jan 1970 00:00:00 +0000'], 'text'));
    expect(edge.date).toBe('1970-01-01T00:00:00.000Z');
    expect(edge.fallbacks).toEqual(['no Message-ID']);
  });

  it('marks binary, oversized and emptied bodies as skipped, with the reason', async () => {
    const binary = await parseEmail(
      raw(
        ['Message-Id: <b@x>'],
        String.fromCharCode(...Array.from({ length: 500 }, (_, i) => i % 9)),
      ),
    );
    expect(binary).toMatchObject({ skipped: 'undecodable', body: '' });
    const big = await parseEmail(raw(['Message-Id: <g@x>'], 'word '.repeat(900_000)));
    expect(big).toMatchObject({ skipped: 'over the size cap', body: '' });
    const quoted = await parseEmail(raw(['Message-Id: <q@x>'], '> only quoted'));
    expect(quoted).toMatchObject({ skipped: 'empty after quote stripping', body: '' });
    const fine = await parseEmail(raw(['Message-Id: <f@x>'], 'a few \u0001 odd bytes \ufffd'));
    expect(fine.skipped).toBeUndefined();
  });

  it('skips an e-mail over 32 MiB unparsed', async () => {
    const huge = raw(['Message-Id: <h@x>'], 'x'.repeat(32 * 2 ** 20));
    await expect(parseEmail(huge)).rejects.toMatchObject({ reason: 'over the size cap' });
  });

  it('turns an HTML-only body into text', async () => {
    const email = await parseEmail(
      raw(
        ['Message-Id: <h@x>', 'Content-Type: text/html'],
        '<html><style>p{}</style><p>Hello&nbsp;<b>world</b> &amp; co</p><p>line&#33;</p></html>',
      ),
    );
    expect(email.body).toBe('Hello world & co\nline!');
  });

  it('throws UnparseableEmailError naming the e-mail when postal-mime rejects it', async () => {
    const huge = raw([`X-Pad: ${'a'.repeat(2_200_000)}`], 'x', '00007');
    await expect(parseEmail(huge)).rejects.toThrow(UnparseableEmailError);
    await expect(parseEmail(huge)).rejects.toThrow(/easy-ham-1\/00007/);
    await expect(parseEmail(huge)).rejects.toMatchObject({ reason: 'unparseable MIME' });
  });

  it('decodes HTML linearly: unclosed tags and script elements stay as they were', async () => {
    const email = await parseEmail(
      raw(
        ['Message-Id: <h@x>', 'Content-Type: text/html'],
        `<p>a</p><SCRIPT>x</script >b${'<'.repeat(1_000_000)}<script never closed`,
      ),
    );
    expect(email.body.startsWith('a\nb<<<')).toBe(true);
    expect(email.body.endsWith('<script never closed')).toBe(true);
  });

  it('parseEmails counts unparseable e-mails and keeps the rest in order', async () => {
    const good = raw(['Message-Id: <g@x>'], 'fine', '00001');
    const bad = raw([`X-Pad: ${'a'.repeat(2_200_000)}`], 'x', '00002');
    const result = await parseEmails([bad, good, good], { concurrency: 2 });
    expect(result.parsed.map((email) => email.messageId)).toEqual(['g@x', 'g@x']);
    expect(result.unparseable).toHaveLength(1);
    expect(result.unparseable[0]?.details).toEqual({ source: 'easy-ham-1/00002' });
  });
});

describe('normalizeSubject', () => {
  it.each([
    ['Re: New Sequences Window', 'new sequences window', true],
    ['[zzzzteana] RE: Alexander', 'alexander', true],
    ['Re: [ILUG] Re: [ILUG]  Fwd:   Kernel   Panic', 'kernel panic', true],
    ['RE[2]: Apt problems', 'apt problems', true],
    ['AW: Frage', 'frage', true],
    ['Some story (fwd)', 'some story', false],
    ['[SAtalk] Razor is down', 'razor is down', false],
    ['Refactoring: notes', 'refactoring: notes', false],
    ['', '', false],
  ])('%j -> %j (reply: %s)', (subject, key, isReply) => {
    expect(normalizeSubject(subject)).toEqual({ key, isReply });
  });
});

describe('threadEmails', () => {
  it('joins e-mails by References and In-Reply-To, even through a missing root', () => {
    const threads = threadEmails([
      parsed({ messageId: 'b', references: ['root', 'a'], subject: 'Re: x' }),
      parsed({ messageId: 'c', inReplyTo: 'b', subject: 'changed subject' }),
      parsed({ messageId: 'd', references: ['root'], subject: 'Re: x' }),
      parsed({ messageId: 'e', subject: 'unrelated' }),
    ]);
    expect(threads.map(idsOf)).toEqual([['b', 'c', 'd'], ['e']]);
    expect(threads[0]?.rootMessageId).toBe('root');
    expect(threads[0]?.id).toBe(threadIdFor('root'));
  });

  it('joins a reply without reference headers to the first e-mail with its subject', () => {
    const threads = threadEmails([
      parsed({ messageId: 'a', subject: '[ILUG] Kernel panic' }),
      parsed({ messageId: 'b', subject: 'Re: [ILUG] kernel  PANIC' }),
      parsed({ messageId: 'c', subject: 'Kernel panic' }),
    ]);
    expect(threads.map(idsOf)).toEqual([['a', 'b'], ['c']]);
  });

  it('does not merge reference-linked threads that share a subject', () => {
    const threads = threadEmails([
      parsed({ messageId: 'a', subject: 'help' }),
      parsed({ messageId: 'b', references: ['a'], subject: 'Re: help' }),
      parsed({ messageId: 'c', references: ['other'], subject: 'Re: help' }),
    ]);
    expect(threads.map(idsOf)).toEqual([['a', 'b'], ['c']]);
  });

  it('sorts e-mails by date, undated ones after the e-mail before them in input order', () => {
    const threads = threadEmails([
      parsed({ messageId: 'late', date: '2002-08-22T12:00:00.000Z' }),
      parsed({ messageId: 'undated', references: ['late'] }),
      parsed({ messageId: 'early', references: ['late'], date: '2002-08-22T10:00:00.000Z' }),
    ]);
    expect(threads.map(idsOf)).toEqual([['early', 'late', 'undated']]);
  });

  it('orders threads by their first date, then id, and drops repeated Message-IDs', () => {
    const threads = threadEmails([
      parsed({ messageId: 'x', date: '2002-09-01T00:00:00.000Z' }),
      parsed({ messageId: 'y', date: '2002-08-01T00:00:00.000Z' }),
      parsed({ messageId: 'x', body: 'duplicate', date: '2002-07-01T00:00:00.000Z' }),
    ]);
    expect(threads.map(idsOf)).toEqual([['y'], ['x']]);
    expect(threads[1]?.emails[0]?.body).toBe('body of x');
  });
});

describe('threadIdFor', () => {
  it.each(['<a@b>', 'x', 'easy-ham-1.00001@corpus.invalid', 'ü'.repeat(1000)])(
    '%j gives a valid memory key',
    (root) => {
      const id = threadIdFor(root);
      expect(id).toMatch(THREAD_ID_PATTERN);
      expect(id).toMatch(/^[A-Za-z0-9_:\-@.]{1,256}$/);
      expect(id.startsWith('__') || id.endsWith('__')).toBe(false);
      expect(threadIdFor(root)).toBe(id);
    },
  );

  it('is sha256-based: thread:+16 hex of the root id', () => {
    // sha256("root") = 4813494d137e1631bba301d5acab6e7bb7aa74ce1185d456565ef51d737677b2
    expect(threadIdFor('root')).toBe('thread:4813494d137e1631');
  });
});

describe('toMessages', () => {
  it('makes the first sender user (case-insensitive) and everyone else assistant', () => {
    const [thread] = threadEmails([
      parsed({ messageId: '1', from: { address: 'Ann@Example.org', name: 'Ann' } }),
      parsed({
        messageId: '2',
        references: ['1'],
        from: { address: 'bob@example.org', name: 'B' },
      }),
      parsed({ messageId: '3', references: ['1'], from: { address: 'ann@example.ORG', name: '' } }),
      parsed({ messageId: '4', references: ['1'], from: undefined }),
    ]);
    expect(thread).toBeDefined();
    const messages = toMessages(thread as Thread);
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
  });

  it('skips empty bodies, keeps no sender data in metadata and passes MessageInputSchema', () => {
    const [thread] = threadEmails([
      parsed({ messageId: '1', subject: 's'.repeat(5000), date: '2002-08-22T10:00:00.000Z' }),
      parsed({ messageId: '2', references: ['1'], body: '' }),
    ]);
    const messages = toMessages(thread as Thread);
    expect(messages).toHaveLength(1);
    const [message] = messages;
    expect(message?.metadata).toEqual({
      subject: 's'.repeat(4096),
      date: '2002-08-22T10:00:00.000Z',
      message_id: '1',
      thread_id: thread?.id,
      corpus_id: 'easy-ham-1/1',
    });
    expect(JSON.stringify(message)).not.toContain('example.org');
    expect(MessageInputSchema.safeParse(message).success).toBe(true);
  });
});

describe('the real corpus', () => {
  it('first 300 easy-ham-1 e-mails: unique ids, valid messages, no quoted lines', async () => {
    const raws = loadCorpus({ groups: ['easy-ham-1'] }).slice(0, 300);
    const { parsed: emails, unparseable } = await parseEmails(raws);
    expect(unparseable).toEqual([]);
    const threads = threadEmails(emails);
    expect(threads.length).toBeGreaterThan(50);
    expect(threads.some((thread) => thread.emails.length > 1)).toBe(true);

    const threadIds = threads.map((thread) => thread.id);
    expect(new Set(threadIds).size).toBe(threadIds.length);
    const messageIds = threads.flatMap(idsOf);
    expect(new Set(messageIds).size).toBe(messageIds.length);

    let count = 0;
    for (const thread of threads) {
      expect(thread.id).toMatch(THREAD_ID_PATTERN);
      const messages = toMessages(thread);
      for (const message of messages) {
        count += 1;
        const result = MessageInputSchema.safeParse(message);
        expect(result.error).toBeUndefined();
        expect(message.content.split('\n').filter((line) => /^\s*>/.test(line))).toEqual([]);
      }
      if (messages.length > 0) expect(messages[0]?.role).toBe('user');
    }
    expect(count).toBeGreaterThan(250);
  }, 30_000);

  it('conversations: limit caps the messages exactly, cutting only the last thread', async () => {
    const all = await buildConversations({ groups: ['hard-ham-1'] });
    const total = all.stats.messages;
    const limit = Math.floor(total / 2);
    const { conversations, stats } = await buildConversations({
      groups: ['hard-ham-1'],
      limit,
    });
    expect(stats.messages).toBe(limit);
    expect(conversations.reduce((sum, c) => sum + c.messages.length, 0)).toBe(limit);
    expect(stats.threads).toBe(conversations.length);
    expect(stats.emailsRead).toBe(250);
    const last = conversations.length - 1;
    conversations.forEach((conversation, i) => {
      expect(conversation.threadId).toBe(all.conversations[i]?.threadId);
      if (i < last) expect(conversation.messages).toEqual(all.conversations[i]?.messages);
    });
  }, 30_000);

  it('conversations: rejects a limit that is not a positive integer before loading', async () => {
    await expect(buildConversations({ limit: 0 })).rejects.toThrow(
      /limit: expected an integer >= 1/,
    );
  });
});

describe('conversations: every e-mail replayed or skipped, by reason', () => {
  it('counts each skip reason and fallback; emailsRead = skipped + messages', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'memq-corpus-'));
    const mail = (headers: string[], body: string) => `From x\n${headers.join('\n')}\n\n${body}\n`;
    writeFileSync(
      path.join(dir, 'm.mbox'),
      [
        mail(['Message-Id: <1@x>', 'Date: Mon, 10 Jun 0102 12:00:00 +0000'], 'old date'),
        mail(['Message-Id: <2@x>', 'In-Reply-To: <1@x>'], 'no date'),
        mail(['Subject: no id'], 'hello'),
        mail(['Message-Id: <1@x>'], 'repeated id'),
        mail(['Message-Id: <3@x>'], '> quoted only'),
        mail(['Message-Id: <4@x>'], 'w '.repeat(2_200_000)),
        mail(['Message-Id: <5@x>'], '\u0000'.repeat(100)),
        mail([`X-Pad: ${'a'.repeat(2_200_000)}`], 'x'),
      ].join('\n'),
    );
    const { conversations, stats } = await buildConversations({ mbox: path.join(dir, 'm.mbox') });
    rmSync(dir, { recursive: true });
    expect(stats.skipped).toEqual({
      'over the size cap': 1,
      'unparseable MIME': 1,
      undecodable: 1,
      'repeated Message-ID': 1,
      'empty after quote stripping': 1,
      'invalid as a message': 0,
    });
    expect(stats.fallbacks).toEqual({
      'no Message-ID': 1,
      'no parseable Date': 2,
      'Date out of range': 1,
    });
    expect(stats.emailsRead).toBe(8);
    expect(stats.messages).toBe(3);
    expect(conversations.map((c) => c.messages.map((m) => m.content))).toEqual([
      ['old date', 'no date'],
      ['hello'],
    ]);
  }, 30_000);

  it('skips a message MessageInputSchema would refuse instead of sending it', () => {
    const [thread] = threadEmails([parsed({ messageId: '1', source: 'x'.repeat(5000) })]);
    expect(toMessages(thread as Thread)).toEqual([]);
  });
});

describe('types', () => {
  it('a ReplayMessage is assignable to MessageInput', () => {
    const message: ReplayMessage = {
      role: 'user',
      content: '',
      metadata: { subject: '', message_id: 'm', thread_id: 't', corpus_id: 'c' },
    };
    const input: MessageInput = message;
    expect(MessageInputSchema.parse(input)).toEqual(message);
  });
});
