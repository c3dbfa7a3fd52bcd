/**
 * Fuzz: real e-mails, mutated (truncated headers, byte flips, garbage dates, huge and empty
 * bodies, wrong charsets, missing and repeated Message-IDs, malformed MIME, binary parts, body
 * lines starting "From "), written as an mboxrd file, replayed with `memq replay --mbox` and
 * audited with `memq audit --mbox` against the suite's Redis. No e-mail may crash the replay;
 * everything not skipped must be committed and audit clean.
 *
 * Deterministic: mutations come from fast-check with a fixed seed (MEMQ_FUZZ_SEED overrides it).
 * MEMQ_FUZZ_MBOX=path keeps the mbox file there (to replay it by hand).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCorpus } from '../../src/replay/corpus.js';
import { splitMbox } from '../../src/replay/mail-sources.js';
import type { ReplayReport } from '../../src/replay/replay.js';
import { runMemq } from '../helpers/cli.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const SEED = Number(process.env.MEMQ_FUZZ_SEED ?? 18);
/** Mutated e-mails drawn by fast-check, on top of the fixed cases below. */
const DRAWN = 760;

const GARBAGE_DATES = [
  'Mon, 10 Jun 0102 12:00:00 +0000', // year 102: once threw a ULIDError
  'Wed, 31 Dec 1969 23:59:59 +0000',
  'Thu, 01 Jan 1970 00:00:00 +0000',
  'Sat, 10 Jun 20102 12:00:00 +0000',
  'Fri, 31 Dec 9999 23:59:59 -1200',
  'yesterday, around noon',
  '',
  'Thu, 31 Feb 2002 25:61:00 +9999',
  '\u0000\u0001',
  '1e400',
];
const CHARSETS = ['utf-16', 'x-unknown-charset', 'iso-2022-jp', 'utf-7', 'utf-32be', 'koi8-r'];

/** One e-mail split at its first blank line (the mbox envelope line dropped). */
function split(text: string): { headers: string[]; body: string } {
  const start = text.startsWith('From ') ? text.indexOf('\n') + 1 : 0;
  const rest = text.slice(start).replace(/\r\n/g, '\n');
  const blank = rest.indexOf('\n\n');
  const head = blank === -1 ? rest : rest.slice(0, blank);
  return {
    headers: head.split('\n'),
    body: blank === -1 ? '' : rest.slice(blank + 2),
  };
}

function setHeader(headers: string[], name: string, value: string | undefined): string[] {
  // Drop the header and its folded continuation lines, then add the new value.
  const out: string[] = [];
  let dropping = false;
  for (const line of headers) {
    if (/^\s/.test(line) && dropping) continue;
    dropping = line.toLowerCase().startsWith(`${name.toLowerCase()}:`);
    if (!dropping) out.push(line);
  }
  return value === undefined ? out : [...out, `${name}: ${value}`];
}

const join = (headers: string[], body: string) => `${headers.join('\n')}\n\n${body}`;
const utf8 = (text: string) => Buffer.from(text, 'utf8');

/**
 * The e-mail with a body nested 300 multiparts deep: deeper than postal-mime's nesting limit, so
 * it is rejected and skipped as unparseable MIME.
 */
function deeplyNested(headers: string[]): Buffer {
  let nested = 'Content-Type: text/plain\n\nbottom\n';
  for (let depth = 0; depth < 300; depth++) {
    nested = `Content-Type: multipart/mixed; boundary="b${depth}"\n\n--b${depth}\n${nested}\n--b${depth}--\n`;
  }
  return utf8(`${setHeader(headers, 'Content-Type', undefined).join('\n')}\n${nested}`);
}

/** A mutation, as fast-check draws it. */
type Mutation =
  | { kind: 'none' }
  | { kind: 'truncate-headers'; at: number }
  | { kind: 'drop-headers'; names: string[] }
  | { kind: 'byte-flips'; flips: Array<[number, number]> }
  | { kind: 'garbage-date'; date: number }
  | { kind: 'huge-body'; size: number; filler: 'repeat' | 'newlines' | 'spaces' | 'urls' }
  | { kind: 'empty-body'; quotesOnly: boolean }
  | { kind: 'wrong-charset'; charset: number; latin1: boolean }
  | { kind: 'repeat-message-id' }
  | { kind: 'malformed-mime'; variant: 'bogus-boundary' | 'deep-nesting' | 'no-boundary' }
  | { kind: 'binary-part'; bytes: number[]; asAttachment: boolean }
  | { kind: 'from-lines' };

const mutationArbitrary: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 10, arbitrary: fc.constant({ kind: 'none' as const }) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('truncate-headers' as const), at: fc.nat() }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('drop-headers' as const),
      names: fc.subarray(['Message-Id', 'Date', 'From', 'Content-Type', 'References', 'Subject'], {
        minLength: 1,
      }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('byte-flips' as const),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), {
        minLength: 1,
        maxLength: 60,
      }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('garbage-date' as const),
      date: fc.nat({ max: GARBAGE_DATES.length - 1 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('huge-body' as const),
      size: fc.oneof(
        { weight: 12, arbitrary: fc.constant(64 * 1024) },
        { weight: 1, arbitrary: fc.constant(2 ** 20) },
      ),
      filler: fc.constantFrom(
        'repeat' as const,
        'newlines' as const,
        'spaces' as const,
        'urls' as const,
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('empty-body' as const), quotesOnly: fc.boolean() }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('wrong-charset' as const),
      charset: fc.nat({ max: CHARSETS.length - 1 }),
      latin1: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'repeat-message-id' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('malformed-mime' as const),
      variant: fc.constantFrom(
        'bogus-boundary' as const,
        'deep-nesting' as const,
        'no-boundary' as const,
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('binary-part' as const),
      bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 200, maxLength: 2000 }),
      asAttachment: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'from-lines' as const }) },
);

/** Bytes of one mutated e-mail; `previous` is the Message-ID line of the e-mail before it. */
function mutate(text: string, mutation: Mutation, previousId: string | undefined): Buffer {
  const { headers, body } = split(text);
  switch (mutation.kind) {
    case 'none':
      return utf8(join(headers, body));
    case 'truncate-headers': {
      const head = headers.join('\n');
      return utf8(head.slice(0, mutation.at % Math.max(1, head.length)));
    }
    case 'drop-headers':
      return utf8(
        join(
          mutation.names.reduce((h, name) => setHeader(h, name, undefined), headers),
          body,
        ),
      );
    case 'byte-flips': {
      const bytes = utf8(join(headers, body));
      for (const [at, mask] of mutation.flips) bytes[at % bytes.length]! ^= mask;
      return bytes;
    }
    case 'garbage-date':
      return utf8(join(setHeader(headers, 'Date', GARBAGE_DATES[mutation.date]), body));
    case 'huge-body': {
      const unit =
        mutation.filler === 'newlines'
          ? '\n'
          : mutation.filler === 'spaces'
            ? ' '
            : mutation.filler === 'urls'
              ? 'http://'
              : `${body}\n`;
      const huge = unit.repeat(Math.ceil(mutation.size / Math.max(1, unit.length))) + 'end';
      return utf8(join(setHeader(headers, 'Content-Transfer-Encoding', '8bit'), huge));
    }
    case 'empty-body':
      return utf8(join(headers, mutation.quotesOnly ? '> quoted only\n>> and more\n' : ''));
    case 'wrong-charset': {
      const h = setHeader(
        headers,
        'Content-Type',
        `text/plain; charset=${mutation.latin1 ? 'utf-8' : CHARSETS[mutation.charset]}`,
      );
      return Buffer.concat([
        utf8(`${setHeader(h, 'Content-Transfer-Encoding', '8bit').join('\n')}\n\n`),
        Buffer.from(
          `${body}\nna\u00efve caf\u00e9 r\u00e9sum\u00e9\n`,
          mutation.latin1 ? 'latin1' : 'utf8',
        ),
      ]);
    }
    case 'repeat-message-id':
      return utf8(
        join(
          previousId === undefined ? headers : setHeader(headers, 'Message-Id', previousId),
          body,
        ),
      );
    case 'malformed-mime': {
      if (mutation.variant === 'deep-nesting') return deeplyNested(headers);
      const type =
        mutation.variant === 'bogus-boundary'
          ? 'multipart/mixed; boundary="not-in-the-body"'
          : 'multipart/alternative';
      return utf8(join(setHeader(headers, 'Content-Type', type), `--x\n${body}\n--x--\n`));
    }
    case 'binary-part': {
      const random = Buffer.from(mutation.bytes);
      if (!mutation.asAttachment) {
        const h = setHeader(headers, 'Content-Type', 'text/plain; charset=utf-8');
        return Buffer.concat([utf8(`${h.join('\n')}\n\n`), random]);
      }
      const h = setHeader(headers, 'Content-Type', 'multipart/mixed; boundary="bin"');
      return utf8(
        join(
          h,
          `--bin\nContent-Type: text/plain\n\n${body}\n--bin\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n${random.toString('base64')}\n--bin--\n`,
        ),
      );
    }
    case 'from-lines':
      return utf8(
        join(headers, `From the top: a body line.\n>From an escaped one.\n>>From deeper.\n${body}`),
      );
  }
}

/** E-mails the fuzz always includes, whatever the seed: one per skip reason and fallback. */
function fixedCases(template: string): Buffer[] {
  const { headers, body } = split(template);
  const withId = (id: string) => setHeader(headers, 'Message-Id', `<${id}@fuzz.memq.invalid>`);
  return [
    utf8(join(setHeader(withId('year-0102'), 'Date', GARBAGE_DATES[0]), `${body}\nold date\n`)),
    utf8(join(setHeader(withId('no-date'), 'Date', 'not a date'), `${body}\nno date\n`)),
    utf8(join(setHeader(headers, 'Message-Id', undefined), `${body}\nno id\n`)),
    utf8(join(withId('over-cap'), 'word '.repeat(900_000))), // 4.5 Mi characters: over the cap
    utf8(join(withId('empty'), '> only a quote\n')),
    Buffer.concat([
      utf8(`${setHeader(withId('binary'), 'Content-Type', 'text/plain').join('\n')}\n\n`),
      Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 32)),
    ]),
    deeplyNested(withId('deep')),
    utf8(join(withId('dup'), `${body}\nfirst\n`)),
    utf8(join(withId('dup'), `${body}\nsecond, same Message-ID\n`)),
  ];
}

/** mboxrd: a From_ line, the message with `>*From ` lines escaped, a newline, an empty line. */
function toMbox(emails: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const email of emails) {
    parts.push(Buffer.from('From fuzz@memq.invalid Sat Jan  1 00:00:00 2000\n'));
    const lines = email.toString('latin1').split('\n'); // latin1: byte-preserving
    const escaped = lines.map((line) => (/^>*From /.test(line) ? `>${line}` : line));
    parts.push(Buffer.from(escaped.join('\n'), 'latin1'));
    parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** The e-mail as the mbox holds it: ending with a newline. */
const terminated = (email: Buffer) =>
  email.at(-1) === 0x0a ? email : Buffer.concat([email, Buffer.from('\n')]);

describe('memq replay --mbox on fuzzed real e-mails', () => {
  let ns: RedisNamespace;
  let dir: string;
  let file: string;
  let emails: Buffer[];
  let replay: ReturnType<typeof runMemq>;
  let report: ReplayReport;
  const memq = (...args: string[]) => runMemq(ns, args, { MEMQ_PROJECT: 'fuzz' });

  beforeAll(() => {
    ns = createRedisNamespace();
    const corpus = loadCorpus({ groups: ['easy-ham-1'] });
    const mutations = fc.sample(mutationArbitrary, { seed: SEED, numRuns: DRAWN });
    // A contiguous run of the corpus, so replies meet their threads.
    const offset = (SEED * 7) % (corpus.length - DRAWN);
    emails = [];
    let previousId: string | undefined;
    mutations.forEach((mutation, i) => {
      const text = corpus[offset + i]!.text;
      emails.push(terminated(mutate(text, mutation, previousId)));
      previousId = /^Message-Id:\s*(.*)$/im.exec(text)?.[1];
    });
    emails.push(...fixedCases(corpus[offset]!.text).map(terminated));
    dir = mkdtempSync(path.join(tmpdir(), 'memq-fuzz-'));
    file = process.env.MEMQ_FUZZ_MBOX ?? path.join(dir, 'fuzz.mbox');
    writeFileSync(file, toMbox(emails));
    replay = memq('replay', '--mbox', file, '--json', path.join(dir, 'report.json'));
    report = JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')) as ReplayReport;
  }, 900_000);
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await ns.cleanup();
  });

  it('reads back exactly the e-mails written (mboxrd escaping round trip)', () => {
    const read = splitMbox(readFileSync(file));
    expect(read).toHaveLength(emails.length);
    read.forEach((email, i) => expect(Buffer.compare(Buffer.from(email), emails[i]!)).toBe(0));
  });

  it('replays all of them without dying, skipping by reason, and commits everything it accepted', () => {
    expect(replay.status, replay.stderr).toBe(0);
    expect(replay.stderr).not.toMatch(/ULIDError|at .*\.ts:\d+/);
    const { corpus } = report;
    expect(corpus.emailsRead).toBe(emails.length);
    const skipped = Object.values(corpus.skipped).reduce((a, b) => a + b, 0);
    expect(skipped + corpus.messages).toBe(corpus.emailsRead);
    for (const reason of [
      'over the size cap',
      'unparseable MIME',
      'undecodable',
      'repeated Message-ID',
      'empty after quote stripping',
    ] as const) {
      expect(corpus.skipped[reason], reason).toBeGreaterThan(0);
    }
    expect(corpus.skipped['invalid as a message']).toBe(0);
    for (const reason of ['no Message-ID', 'no parseable Date', 'Date out of range'] as const) {
      expect(corpus.fallbacks[reason], reason).toBeGreaterThan(0);
    }
    expect(corpus.messages).toBeGreaterThanOrEqual(500);
    expect(report.messagesEnqueued).toBe(corpus.messages);
    expect(report.messagesAccepted).toBe(corpus.messages);
    expect(report.enqueueErrors).toBe(0);
    expect(report.failedJobs).toBe(0);
    expect(report.messagesStored + report.messagesFolded).toBe(report.messagesAccepted);
    expect(replay.stdout).toMatch(
      new RegExp(`skipped +${skipped} \\(\\d+ over the size cap, \\d+ unparseable MIME, `),
    );
  });

  it('refuses two sources, or a path that is not an mbox file, before starting (exit 2)', () => {
    const both = memq('replay', '--mbox', file, '--groups', 'easy-ham-1');
    expect(both.status).toBe(2);
    expect(both.stderr).toContain('--mbox and --groups given; expected at most one');
    const folder = memq('audit', '--mbox', dir);
    expect(folder.status).toBe(2);
    expect(folder.stderr).toContain('expected an mbox file, found a folder there');
  });

  it('audits clean: every accepted message stored as the policy should store it', () => {
    const audit = memq('audit', '--mbox', file, '--project', 'fuzz');
    expect(audit.status, audit.stdout + audit.stderr).toBe(0);
    expect(audit.stdout.trim().split('\n').at(-1)).toBe(
      `audit: ${report.threads} memories, ${report.messagesAccepted} messages, 0 violations`,
    );
  }, 600_000);
});
