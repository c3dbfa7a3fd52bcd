import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PayloadError } from '../../../src/core/errors.js';
import { buildConversations } from '../../../src/replay/corpus.js';
import { loadEmlFolder, loadMbox, splitMbox } from '../../../src/replay/mail-sources.js';

const text = (parts: Uint8Array[]) => parts.map((p) => Buffer.from(p).toString('utf8'));
const dir = mkdtempSync(path.join(tmpdir(), 'memq-mail-sources-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('splitMbox', () => {
  it('splits at From_ lines and drops the From_ line and the empty line before the next', () => {
    const mbox =
      'From a@b Thu Aug 22 12:36:23 2002\nSubject: one\n\nbody 1\n\nFrom c@d Fri Aug 23 2002\nSubject: two\n\nbody 2\n\n';
    expect(text(splitMbox(Buffer.from(mbox)))).toEqual([
      'Subject: one\n\nbody 1\n',
      'Subject: two\n\nbody 2\n',
    ]);
  });

  it('unescapes mboxrd >From lines by one > (mboxo >From reads back as From)', () => {
    const mbox = 'From x\nSubject: s\n\n>From here\n>>From there\n> From not escaped\nFromage\n\n';
    expect(text(splitMbox(Buffer.from(mbox)))).toEqual([
      'Subject: s\n\nFrom here\n>From there\n> From not escaped\nFromage\n',
    ]);
  });

  it('keeps CRLF line endings and drops a CRLF empty separator line', () => {
    const mbox = 'From x\r\nSubject: s\r\n\r\nbody\r\n\r\nFrom y\r\nSubject: t\r\n\r\nb2\r\n';
    expect(text(splitMbox(Buffer.from(mbox)))).toEqual([
      'Subject: s\r\n\r\nbody\r\n',
      'Subject: t\r\n\r\nb2\r\n',
    ]);
  });

  it('keeps a message without a trailing newline, and an empty message', () => {
    expect(text(splitMbox(Buffer.from('From x\nFrom y\nSubject: s\n\nlast')))).toEqual([
      '',
      'Subject: s\n\nlast',
    ]);
  });

  it('accepts leading blank lines and an empty file, and refuses a file that is not an mbox', () => {
    expect(text(splitMbox(Buffer.from('\n\r\nFrom x\nA: b\n')))).toEqual(['A: b\n']);
    expect(splitMbox(Buffer.alloc(0))).toEqual([]);
    expect(() => splitMbox(Buffer.from('Subject: s\n\nbody\n'), 'x.mbox')).toThrow(PayloadError);
    expect(() => splitMbox(Buffer.from('Subject: s\n'), 'x.mbox')).toThrow(
      /x\.mbox: not an mbox file/,
    );
  });

  it('keeps bytes as they are (8-bit bodies are decoded by their charset later)', () => {
    const latin1 = Buffer.concat([Buffer.from('From x\nA: b\n\ncaf'), Buffer.from([0xe9, 0x0a])]);
    expect(Buffer.from(splitMbox(latin1)[0]!).toString('latin1')).toBe('A: b\n\ncafé\n');
  });
});

describe('loadMbox and loadEmlFolder', () => {
  it('names mbox messages <file>/<6-digit position> and refuses an unreadable file', () => {
    const file = path.join(dir, 'inbox.mbox');
    writeFileSync(file, 'From a\nSubject: 1\n\nx\n\nFrom b\nSubject: 2\n\ny\n');
    expect(loadMbox(file).map((e) => e.source)).toEqual(['inbox.mbox/000001', 'inbox.mbox/000002']);
    expect(() => loadMbox(path.join(dir, 'missing.mbox'))).toThrow(/cannot read the file/);
  });

  it('reads the .eml files of a folder in name order, not subfolders or other files', () => {
    const mail = path.join(dir, 'mail');
    mkdirSync(path.join(mail, 'sub.eml'), { recursive: true });
    writeFileSync(path.join(mail, 'b.eml'), 'Subject: b\n\nb\n');
    writeFileSync(path.join(mail, 'A.EML'), 'Subject: a\n\na\n');
    writeFileSync(path.join(mail, 'notes.txt'), 'x');
    expect(loadEmlFolder(mail).map((e) => e.source)).toEqual(['mail/A.EML', 'mail/b.eml']);
    expect(() => loadEmlFolder(path.join(mail, 'sub.eml'))).toThrow(/found none/);
    expect(() => loadEmlFolder(path.join(dir, 'nope'))).toThrow(/cannot read the folder/);
  });

  it('threads an mbox like the corpus: replies join by In-Reply-To, ids from Message-IDs', async () => {
    const file = path.join(dir, 'thread.mbox');
    writeFileSync(
      file,
      [
        'From a\nMessage-Id: <1@x>\nFrom: Ann <ann@example.org>\nSubject: hi\nDate: Thu, 22 Aug 2002 10:00:00 +0000\n\nfirst\n',
        'From b\nMessage-Id: <2@x>\nIn-Reply-To: <1@x>\nFrom: Bob <bob@example.org>\nSubject: Re: hi\nDate: Thu, 22 Aug 2002 11:00:00 +0000\n\nsecond\n',
      ].join('\n'),
    );
    const { conversations, stats } = await buildConversations({ mbox: file });
    expect(conversations).toHaveLength(1);
    expect(
      conversations[0]!.messages.map((m) => [m.role, m.content, m.metadata.corpus_id]),
    ).toEqual([
      ['user', 'first', 'thread.mbox/000001'],
      ['assistant', 'second', 'thread.mbox/000002'],
    ]);
    expect(stats.emailsRead).toBe(2);
  });

  it('refuses two sources at once', async () => {
    await expect(buildConversations({ mbox: 'a', eml: 'b' })).rejects.toThrow(
      /--mbox and --eml given; expected at most one/,
    );
  });
});
