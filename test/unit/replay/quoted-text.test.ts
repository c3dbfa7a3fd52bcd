import { describe, expect, it } from 'vitest';
import { stripQuotedText } from '../../../src/replay/quoted-text.js';

const MAILMAN_FOOTER = [
  '_______________________________________________',
  'Exmh-workers mailing list',
  'Exmh-workers@redhat.com',
  'https://listman.redhat.com/mailman/listinfo/exmh-workers',
].join('\n');

const YAHOO_FOOTER = [
  '------------------------ Yahoo! Groups Sponsor ---------------------~-->',
  '4 DVDs Free +s&p Join Now',
  'http://us.click.yahoo.com/pt6YBB/NXiEAA/mG3HAA/7gSolB/TM',
  '---------------------------------------------------------------------~->',
  '',
  'To unsubscribe from this group, send an email to:',
  'forteana-unsubscribe@egroups.com',
  '',
  'Your use of Yahoo! Groups is subject to http://docs.yahoo.com/info/terms/',
].join('\n');

const SF_FOOTER = [
  '-------------------------------------------------------',
  'This sf.net email is sponsored by:ThinkGeek',
  'Welcome to geek heaven.',
  'http://thinkgeek.com/sf',
  '_______________________________________________',
  'Razor-users mailing list',
  'Razor-users@lists.sourceforge.net',
  'https://lists.sourceforge.net/lists/listinfo/razor-users',
].join('\n');

describe('stripQuotedText', () => {
  const cases: { name: string; input: string; expected: string }[] = [
    {
      name: 'keeps unquoted text as is',
      input: 'Hello list,\n\nthis is new.\n',
      expected: 'Hello list,\n\nthis is new.',
    },
    {
      name: 'drops > lines at any depth, with leading spaces',
      input: '> first\n>> second\n> > third\n  > indented\nmy answer',
      expected: 'my answer',
    },
    {
      name: 'drops an "On ... wrote:" attribution before a quote block',
      input: 'On Thu, 22 Aug 2002, Joe Bloggs wrote:\n> question?\n\nanswer.',
      expected: 'answer.',
    },
    {
      name: 'drops an attribution separated from the quote by a blank line',
      input: 'Top.\n\nOn Thu, 22 Aug 2002, Joe wrote:\n\n> question?\nanswer.',
      expected: 'Top.\n\nanswer.',
    },
    {
      name: 'drops a two-line "On <date>, <name>\\nwrote:" attribution',
      input: 'On Thu, Aug 22, 2002 at 10:01:02AM +0100, A Very Long Name Indeed\nwrote:\n> q\na',
      expected: 'a',
    },
    {
      name: 'drops a "... writes:" attribution',
      input: 'In message <1@x>, Robert Elz writes:\n> quoted\nreply',
      expected: 'reply',
    },
    {
      name: 'drops a Yahoo! Groups "--- In ..., ... wrote:" attribution',
      input: '--- In forteana@y..., "Webmaster" <webmaster@b...> wrote:\n> Right\nSure.',
      expected: 'Sure.',
    },
    {
      name: 'drops "Once upon a time, X wrote :" and "[Tim]" attributions',
      input: 'Once upon a time, Brian wrote :\n> a\nb\n\n[Tim]\n> c\nd',
      expected: 'b\n\nd',
    },
    {
      name: 'keeps a "wrote:" line that no quote follows',
      input: 'Then Joe wrote:\nthe answer is 42.',
      expected: 'Then Joe wrote:\nthe answer is 42.',
    },
    {
      name: 'keeps text between interleaved quotes as separate paragraphs',
      input: 'Joe wrote:\n> one\nfirst reply\n> two\nsecond reply',
      expected: 'first reply\n\nsecond reply',
    },
    {
      name: 'cuts the signature after a line that is exactly "-- "',
      input: 'body text\n-- \nJoe Bloggs\nhttp://example.org/',
      expected: 'body text',
    },
    {
      name: 'cuts a short signature after a bare "--"',
      input: 'body text\n--\nJoe',
      expected: 'body text',
    },
    {
      name: 'keeps a bare "--" followed by more than 10 lines',
      input: `before\n--\n${Array.from({ length: 11 }, (_, i) => `line ${i}`).join('\n')}`,
      expected: `before\n--\n${Array.from({ length: 11 }, (_, i) => `line ${i}`).join('\n')}`,
    },
    {
      name: 'keeps "-- " inside a quote from cutting the text',
      input: '> text\n> -- \n> sig\nmine',
      expected: 'mine',
    },
    {
      name: 'cuts a mailman footer',
      input: `kre\n\n\n\n${MAILMAN_FOOTER}\n\n`,
      expected: 'kre',
    },
    {
      name: 'cuts an sf.net sponsor block with the mailman footer',
      input: `Works for me.\n\n${SF_FOOTER}`,
      expected: 'Works for me.',
    },
    {
      name: 'cuts a Yahoo! Groups sponsor block',
      input: `If it's limestone, it'll weather pretty fast.\n\n${YAHOO_FOOTER}\n\n\n`,
      expected: "If it's limestone, it'll weather pretty fast.",
    },
    {
      name: 'cuts a FoRK listinfo URL ending the text, even on the last line',
      input: 'Owen\n\n\nhttp://xent.com/mailman/listinfo/fork\n\n',
      expected: 'Owen',
    },
    {
      name: 'keeps a rule of underscores inside the text',
      input: 'Title\n______________________________\nText under the rule.',
      expected: 'Title\n______________________________\nText under the rule.',
    },
    {
      name: 'cuts an Outlook original-message block',
      input: 'Agreed.\n\n-----Original Message-----\nFrom: Joe\nSubject: x\n\nold text',
      expected: 'Agreed.',
    },
    {
      name: 'removes PGP clear-signing armour and unescapes dashes',
      input: [
        '-----BEGIN PGP SIGNED MESSAGE-----',
        'Hash: SHA1',
        '',
        'Signed text.',
        '- -- ',
        'Sig',
        '-----BEGIN PGP SIGNATURE-----',
        'iD8DBQE9',
        '-----END PGP SIGNATURE-----',
      ].join('\n'),
      expected: 'Signed text.',
    },
    {
      name: 'collapses blank lines and trims trailing spaces and CRLF',
      input: '\r\n\r\nfirst  \r\n\r\n\r\n\r\nsecond\t\r\n\r\n',
      expected: 'first\n\nsecond',
    },
    {
      name: 'returns "" when only quotes are left',
      input: 'Joe wrote:\n> everything\n> quoted\n\n-- \nsig',
      expected: '',
    },
  ];

  it.each(cases)('$name', ({ input, expected }) => {
    expect(stripQuotedText(input)).toBe(expected);
  });
});

describe('stripQuotedText on 1 MiB bodies (each took many minutes before: quadratic expressions)', () => {
  const size = 2 ** 20;
  it.each([
    ['blank lines', '\n'.repeat(size) + 'x', 'x'],
    ['spaces', ' '.repeat(size) + 'x', ' '.repeat(size) + 'x'],
    ['"http://" repeated', 'http://'.repeat(size / 7), 'http://'.repeat(size / 7)],
    ['"wrote" then spaces', `a wrote${' '.repeat(size)}x\n> q`, `a wrote${' '.repeat(size)}x`],
    ['short quotes between blank lines', '> q\n\n'.repeat(size / 5) + 'end', 'end'],
  ])('%s', (_name, text, expected) => {
    expect(stripQuotedText(text)).toBe(expected);
  });

  it('still removes a trailing listinfo URL, with the whitespace before it', () => {
    expect(stripQuotedText('text\n\nhttp://xent.com/mailman/listinfo/fork\n')).toBe('text');
    expect(stripQuotedText('text xhttps://a/mailman/listinfo/ \n')).toBe('text x');
  });
});
