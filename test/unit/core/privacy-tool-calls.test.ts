import { describe, expect, it } from 'vitest';
import { MessageSchema, type MessageInput } from '../../../src/core/message.js';
import {
  applyInputPrivacy,
  applyPrivacy,
  applyPrivacyToText,
  createPseudonymizer,
  maskOf,
  REDACT_FIELDS_RULE,
  type PrivacyAction,
  type RedactionPolicy,
} from '../../../src/core/privacy.js';

const EMAIL = 'jane.doe@example.com';
const PHONE = '+1 415 555 2671';
const ID = '01ARZ3NDEKTSV4RRFFQ69G5FAV';
const AT = '2024-01-01T00:00:00.000Z';
const pseudonym = createPseudonymizer('0123456789abcdef0123456789abcdef');

const policyFor = (
  action: PrivacyAction,
  extra: Partial<RedactionPolicy> = {},
): RedactionPolicy => ({
  redactPatterns: [],
  detectors: ['email', 'phone', 'credit_card'],
  action,
  nonPersistableMessageTypes: [],
  defaultRedactionString: '[REDACTED]',
  pseudonym,
  ...extra,
});

/** An assistant message calling one tool with `args`. */
const calling = (args: string, id = 'call_1') => ({
  id: ID,
  created_at: AT,
  role: 'assistant' as const,
  content: null,
  tool_calls: [{ id, type: 'function' as const, function: { name: 'send', arguments: args } }],
});
const argsOf = (message: unknown) =>
  (message as ReturnType<typeof calling>).tool_calls[0]!.function.arguments;

describe('tool-call arguments are JSON text: redacted leaf by leaf, still valid JSON', () => {
  const args = JSON.stringify({
    to: { primary: EMAIL, others: [{ phone: PHONE, note: 'call after 5' }] },
    [EMAIL]: { retries: 3, urgent: true, cc: null },
    count: 4155552671,
  });

  for (const action of ['redact', 'mask', 'hash'] as const) {
    it(`action ${action}: the e-mail and phone number are gone at every depth, the rest is kept`, () => {
      const result = applyPrivacy(policyFor(action), [calling(args)]);
      const stored = argsOf(result.kept[0]);
      expect(stored).not.toContain(EMAIL);
      expect(stored).not.toContain(PHONE);
      expect(stored).not.toContain('4155552671');
      const parsed = JSON.parse(stored) as Record<string, unknown>; // valid JSON
      const replace = (text: string) =>
        action === 'redact' ? '[REDACTED]' : action === 'mask' ? maskOf(text) : pseudonym(text);
      expect(parsed).toEqual({
        to: { primary: replace(EMAIL), others: [{ phone: replace(PHONE), note: 'call after 5' }] },
        [replace(EMAIL)]: { retries: 3, urgent: true, cc: null },
        count: replace('4155552671'), // a matched number becomes a string
      });
      expect(result.redactions).toBe(4);
      expect(MessageSchema.safeParse(result.kept[0]).success).toBe(true);
      // Applying it again (the append processor does) changes nothing.
      expect(applyPrivacy(policyFor(action), result.kept).kept).toEqual(result.kept);
    });
  }

  it('action drop: a match in the arguments drops the message', () => {
    const result = applyPrivacy(policyFor('drop'), [calling(args)]);
    expect(result).toMatchObject({ kept: [], dropped: 1 });
  });

  it('keeps arguments without a match exactly as written, whitespace included', () => {
    const written = '{\n  "city": "Boston",  "days": [1, 2.50, -3e2]\n}';
    const result = applyPrivacy(policyFor('redact'), [calling(written)]);
    expect(argsOf(result.kept[0])).toBe(written);
    expect(result.redactions).toBe(0);
  });

  it('keeps the layout around a redacted leaf', () => {
    const written = `{\n  "to": "${EMAIL}",\n  "n": 1\n}`;
    expect(argsOf(applyPrivacy(policyFor('redact'), [calling(written)]).kept[0])).toBe(
      '{\n  "to": "[REDACTED]",\n  "n": 1\n}',
    );
  });

  it('reads escaped strings decoded, every duplicate key, and numbers as written', () => {
    const card = '4111111111111111110'; // 19 digits, Luhn-valid; as a double 4111111111111111000, which is not
    const written = `{"to":"jane.doe\\u0040example.com","a":"${EMAIL}","a":"x","n":${card}}`;
    const result = applyPrivacy(policyFor('redact'), [calling(written)]);
    const stored = argsOf(result.kept[0]);
    expect(stored).toBe('{"to":"[REDACTED]","a":"[REDACTED]","a":"x","n":"[REDACTED]"}');
    expect(result.redactionsByRule).toEqual({ email: 2, credit_card: 1 });
  });

  it('keeps two keys of one object apart when both redact to the same text', () => {
    const written = JSON.stringify({ [EMAIL]: 1, 'bob@example.com': 2, '[REDACTED]': 3 });
    const stored = argsOf(applyPrivacy(policyFor('redact'), [calling(written)]).kept[0]);
    // The key the policy leaves as it is keeps its text; the redacted ones get the suffixes.
    expect(JSON.parse(stored)).toEqual({ '[REDACTED]#2': 1, '[REDACTED]#3': 2, '[REDACTED]': 3 });
  });

  it('never renames a key the policy leaves unchanged, wherever it comes in its object', () => {
    const written = '{"a@b.com":1,"c@d.com":2,"[REDACTED]#2":3,"x":{"[REDACTED]":4,"e@f.com":5}}';
    const stored = argsOf(applyPrivacy(policyFor('redact'), [calling(written)]).kept[0]);
    expect(stored).toBe(
      '{"[REDACTED]":1,"[REDACTED]#3":2,"[REDACTED]#2":3,"x":{"[REDACTED]":4,"[REDACTED]#2":5}}',
    );
  });

  it('metadata keys too: a key the policy leaves unchanged keeps its text', () => {
    const message = {
      role: 'user' as const,
      content: 'hi',
      metadata: { 'a@b.com': 1, 'c@d.com': 2, '[REDACTED]#2': 3 },
    };
    const stored = applyPrivacy(policyFor('redact'), [message]).kept[0]!;
    expect(Object.entries(stored.metadata)).toEqual([
      ['[REDACTED]', 1],
      ['[REDACTED]#3', 2],
      ['[REDACTED]#2', 3],
    ]);
  });

  it('redacts arguments that are not JSON as text', () => {
    const written = `{to: ${EMAIL}`; // what a model sometimes emits
    const result = applyPrivacy(policyFor('redact'), [calling(written)]);
    expect(argsOf(result.kept[0])).toBe('{to: [REDACTED]');
  });

  it('reads JSON nested at any depth (no recursion)', () => {
    const depth = 100_000;
    const written = `${'['.repeat(depth)}"${EMAIL}"${']'.repeat(depth)}`;
    const stored = argsOf(applyPrivacy(policyFor('redact'), [calling(written)]).kept[0]);
    expect(stored).toBe(`${'['.repeat(depth)}"[REDACTED]"${']'.repeat(depth)}`);
  });
});

describe('a rule that needs a key and its value together matches in arguments as in content', () => {
  const password = '(?i)password\\W+\\S+';
  const ssn = '"ssn"\\s*:\\s*"[^"]+"';
  const policyWith = (
    redactPatterns: string[],
    action: PrivacyAction = 'redact',
    detectors: RedactionPolicy['detectors'] = [],
  ): RedactionPolicy => ({ ...policyFor(action), redactPatterns, detectors });
  const login = '{"user":"bob","password":"hunter2"}';

  it('password pattern: redacted in content and in arguments alike (arguments no longer JSON)', () => {
    const policy = policyWith([password]);
    const content = applyPrivacy(policy, [{ role: 'user' as const, content: 'password: hunter2' }]);
    expect(content.kept[0]!.content).toBe('[REDACTED]');
    const args = applyPrivacy(policy, [calling(login)]);
    expect(argsOf(args.kept[0])).toBe('{"user":"bob","[REDACTED]');
    expect(args.redactions).toBe(1);
    expect(args.redactionsByRule).toEqual({ 'redact_patterns[0]': 1 });
    expect(MessageSchema.safeParse(args.kept[0]).success).toBe(true);
  });

  it('a pattern written for JSON text', () => {
    const result = applyPrivacy(policyWith([ssn]), [
      calling('{"name": "Ann", "ssn": "A-123-45", "n": 1}'),
    ]);
    expect(argsOf(result.kept[0])).toBe('{"name": "Ann", [REDACTED], "n": 1}');
    expect(result.redactionsByRule).toEqual({ 'redact_patterns[0]': 1 });
  });

  it('leaves stay redacted leaf by leaf and the text stays JSON while no rule spans leaves', () => {
    const written = JSON.stringify({ to: EMAIL, note: 'your password is in the mail' });
    const result = applyPrivacy(policyWith([password, ssn], 'redact', ['email']), [
      calling(written),
    ]);
    expect(JSON.parse(argsOf(result.kept[0]))).toEqual({
      to: '[REDACTED]',
      note: 'your [REDACTED] in the mail', // `password is` matched inside the leaf
    });
    expect(result.redactionsByRule).toEqual({ email: 1, 'redact_patterns[0]': 1 });
  });

  it('data hidden by a JSON escape stays redacted when the whole text is redacted too', () => {
    const written = '{"password": "x", "to": "jane.doe\\u0040example.com"}';
    const result = applyPrivacy(policyWith([password], 'redact', ['email']), [calling(written)]);
    expect(argsOf(result.kept[0])).toBe('{"[REDACTED] "to": "[REDACTED]"}');
    // The replaced leaf counts, and the match over the text the leaf pass left counts too.
    expect(result.redactionsByRule).toEqual({ email: 1, 'redact_patterns[0]': 1 });
  });

  for (const action of ['redact', 'mask', 'hash'] as const) {
    it(`action ${action}: the producer and the append processor both apply it; the second changes nothing`, () => {
      const policy = policyWith([password, ssn], action, ['email', 'phone']);
      const messages = [
        calling(login),
        calling(`{"ssn":"A-123-45","to":"${EMAIL}","tel":"${PHONE}"}`, 'call_2'),
        calling(`{"to":"${EMAIL}"}`, 'call_3'),
      ];
      const produced = applyInputPrivacy(policy, messages, { defaultRedactionString: 'x' });
      for (const stored of produced.kept.map(argsOf)) {
        expect(stored).not.toMatch(/hunter2|A-123|jane|415/); // mask keeps the last 4 characters
      }
      // No rule spans its leaves: still JSON, its address replaced.
      expect(Object.keys(JSON.parse(argsOf(produced.kept[2])) as object)).toEqual(['to']);
      const processed = applyPrivacy(policy, produced.kept);
      expect(processed.kept).toEqual(produced.kept);
      expect(processed.redactions).toBe(0);
    });
  }

  it('action drop: a match over the whole text drops the message as any match does', () => {
    const result = applyPrivacy(policyWith([password], 'drop'), [
      calling(login),
      calling('{"user":"bob"}', 'call_2'),
    ]);
    expect(result.dropped).toBe(1);
    expect(result.kept.map(argsOf)).toEqual(['{"user":"bob"}']);
  });
});

describe('arguments are read as JSON exactly when JSON.parse accepts them', () => {
  /** mulberry32: a seeded generator, so a failure can be replayed. */
  const random = (() => {
    let seed = 0x9e3779b9;
    return () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  })();
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const space = () => pick(['', '', '', ' ', '\n', '\t', '\r\n ']);
  const leaves = ['0', '-1', '12', '3.5', '1e3', '-0.25E+2', 'true', 'false', 'null'];
  const strings = ['"a"', '"x1"', '""', '"\\n7"', '"\\u0041"', '"q\\"2"', '"é9"'];
  /** A random JSON text, with random whitespace between tokens. */
  const value = (depth: number): string => {
    const kind = depth > 3 ? 0 : Math.floor(random() * 4);
    if (kind === 0) return pick(leaves);
    if (kind === 1) return pick(strings);
    const n = Math.floor(random() * 4);
    const items = Array.from({ length: n }, () =>
      kind === 2
        ? `${space()}${value(depth + 1)}${space()}`
        : `${space()}${pick(strings)}${space()}:${space()}${value(depth + 1)}${space()}`,
    );
    return kind === 2 ? `[${items.join(',')}]` : `{${items.join(',')}}`;
  };
  /** The text with 0-2 random edits: most edits make it invalid, some keep it valid. */
  const mutate = (text: string): string => {
    let out = text;
    for (let edits = Math.floor(random() * 3); edits > 0; edits--) {
      const at = Math.floor(random() * (out.length + 1));
      const c = pick([...'{}[],:"\\ 09az.eE+-', '\u0001', 'tru', 'nul']);
      out = pick([
        () => out.slice(0, at) + out.slice(at + 1),
        () => out.slice(0, at) + c + out.slice(at),
        () => out.slice(0, at) + out.slice(at, at + 1) + out.slice(at),
      ])();
    }
    return out;
  };
  const digits: RedactionPolicy = {
    redactPatterns: ['[0-9]'],
    nonPersistableMessageTypes: [],
    defaultRedactionString: 'D',
  };

  it('on 3,000 generated texts, valid and invalid', () => {
    let valid = 0;
    for (let n = 0; n < 3000; n++) {
      const text = mutate(`${space()}${value(0)}${space()}`);
      let parses = true;
      try {
        JSON.parse(text);
      } catch {
        parses = false;
      }
      const stored = argsOf(applyPrivacy(digits, [calling(text)]).kept[0]);
      if (parses) {
        valid += 1;
        // Still JSON, and no digit left in any decoded key or value (but a key's `#2` suffix).
        const texts = (v: unknown): string[] =>
          typeof v === 'string'
            ? [v]
            : typeof v === 'object' && v !== null
              ? Object.entries(v).flatMap(([k, item]) => [
                  ...(Array.isArray(v) ? [] : [k.replace(/#[0-9]+$/, '')]),
                  ...texts(item),
                ])
              : [String(v)];
        expect(texts(JSON.parse(stored)).join(' '), text).not.toMatch(/[0-9]/);
      } else {
        expect(stored, text).toBe(applyPrivacyToText(digits, text).text);
      }
    }
    expect(valid).toBeGreaterThan(500);
    expect(valid).toBeLessThan(2500);
  });

  it('with a rule over a key and its value: no match left, and applying it twice changes nothing', () => {
    // `"a"` followed by its value: a rule no single leaf can match.
    const keyValue: RedactionPolicy = {
      ...digits,
      redactPatterns: ['[0-9]', '"a"\\s*:\\s*[^,}\\]\\s]+'],
    };
    let spanning = 0;
    for (let n = 0; n < 3000; n++) {
      const text = mutate(`${space()}${value(0)}${space()}`);
      const once = applyPrivacy(keyValue, [calling(text)]);
      const stored = argsOf(once.kept[0]);
      expect(stored, text).not.toMatch(/[0-9]|"a"\s*:/);
      if ((once.redactionsByRule['redact_patterns[1]'] ?? 0) > 0) spanning += 1;
      const twice = applyPrivacy(keyValue, once.kept);
      expect(argsOf(twice.kept[0]), text).toBe(stored);
      expect(twice.redactions, text).toBe(0);
    }
    expect(spanning).toBeGreaterThan(100);
  });
});

describe('tool-call ids go through the policy and still match their results', () => {
  const result = (callId: string, content = 'ok') => ({
    id: ID,
    created_at: AT,
    role: 'tool' as const,
    tool_call_id: callId,
    content,
  });
  const twoCalls = (a: string, b: string) => ({
    ...calling('{}', a),
    tool_calls: [a, b].map((id) => ({
      id,
      type: 'function' as const,
      function: { name: 'send', arguments: '{}' },
    })),
  });

  for (const action of ['redact', 'mask', 'hash'] as const) {
    it(`action ${action}: a call and its result carry the same redacted id, in one batch or two`, () => {
      const callId = `call:${EMAIL}`;
      const one = applyPrivacy(policyFor(action), [calling('{}', callId), result(callId)]).kept;
      const apart = [
        ...applyPrivacy(policyFor(action), [calling('{}', callId)]).kept,
        ...applyPrivacy(policyFor(action), [result(callId)]).kept,
      ];
      for (const [call, answer] of [one, apart]) {
        const id = (call as ReturnType<typeof calling>).tool_calls[0]!.id;
        expect(id).not.toContain(EMAIL);
        expect(id).toMatch(/^call:/);
        expect((answer as ReturnType<typeof result>).tool_call_id).toBe(id);
      }
      expect(apart).toEqual(one);
    });
  }

  it('keeps two ids of one message distinct when they would redact to the same text, and their results follow', () => {
    const [a, b] = ['call:jane@example.com', 'call:bob@example.com'];
    const out = applyPrivacy(policyFor('redact'), [
      twoCalls(a, b),
      result(b, 'result of b'),
      result(a, 'result of a'),
    ]).kept as Array<Record<string, unknown>>;
    const ids = (out[0] as ReturnType<typeof twoCalls>).tool_calls.map((c) => c.id);
    expect(ids).toEqual(['call:[REDACTED]', 'call:[REDACTED]#2']);
    expect(out.map((m) => MessageSchema.safeParse(m).success)).toEqual([true, true, true]);
    expect(out.slice(1).map((m) => [m.tool_call_id, m.content])).toEqual([
      ['call:[REDACTED]#2', 'result of b'],
      ['call:[REDACTED]', 'result of a'],
    ]);
    // The processor applies the policy again: nothing changes, the ids stay distinct.
    expect(applyPrivacy(policyFor('redact'), out as Array<{ role: 'tool' }>).kept).toEqual(out);
  });

  it('under mask too (two addresses with the same last 4 characters)', () => {
    const out = applyPrivacy(policyFor('mask'), [twoCalls('ann@example.com', 'bob@example.com')])
      .kept[0] as ReturnType<typeof twoCalls>;
    expect(out.tool_calls.map((c) => c.id)).toEqual([
      maskOf('ann@example.com'),
      `${maskOf('bob@example.com')}#2`,
    ]);
    expect(MessageSchema.safeParse(out).success).toBe(true);
  });

  it('an id the policy leaves as it is keeps its text; the redacted one gets the suffix', () => {
    const out = applyPrivacy(policyFor('redact'), [twoCalls(EMAIL, '[REDACTED]')])
      .kept[0] as ReturnType<typeof twoCalls>;
    expect(out.tool_calls.map((c) => c.id)).toEqual(['[REDACTED]#2', '[REDACTED]']);
  });

  it('counts a match in an id at each place the id appears', () => {
    const callId = `call:${EMAIL}`;
    const res = applyPrivacy(policyFor('redact'), [calling('{}', callId), result(callId)]);
    expect(res.redactions).toBe(2);
  });
});

describe('content parts, new roles and drop', () => {
  const parts = (text: string, url: string) => ({
    id: ID,
    created_at: AT,
    role: 'user' as const,
    content: [
      { type: 'text' as const, text },
      { type: 'image_url' as const, image_url: { url, detail: 'low' as const } },
    ],
  });

  it('redacts text parts and image URLs, keeping the parts valid', () => {
    const out = applyPrivacy(policyFor('redact'), [
      parts(`mail ${EMAIL}`, `https://example.com/img?u=${EMAIL}`),
    ]);
    expect(out.kept[0]).toEqual(parts('mail [REDACTED]', 'https://example.com/img?u=[REDACTED]'));
    expect(out.redactions).toBe(2);
    expect(MessageSchema.safeParse(out.kept[0]).success).toBe(true);
  });

  it('drops a message with a match in any part under drop', () => {
    const res = applyPrivacy(policyFor('drop'), [
      parts('clean', `https://example.com/${EMAIL}`),
      parts('clean', 'https://example.com/a.png'),
    ]);
    expect(res.dropped).toBe(1);
    expect(res.kept).toHaveLength(1);
  });

  it('drops developer messages when the policy lists the role', () => {
    const res = applyPrivacy(policyFor('redact', { nonPersistableMessageTypes: ['developer'] }), [
      { role: 'developer' as const, content: 'internal instructions' },
      { role: 'system' as const, content: 'kept' },
      { role: 'user' as const, content: 'hi' },
    ]);
    expect(res.kept.map((m) => m.role)).toEqual(['system', 'user']);
    expect(res.dropped).toBe(1);
  });
});

describe('applyInputPrivacy: per-message instructions', () => {
  type Input = MessageInput & { id: string; created_at: string };
  const message = (
    privacy?: MessageInput['privacy'],
    metadata?: MessageInput['metadata'],
  ): Input => ({
    id: ID,
    created_at: AT,
    role: 'user',
    content: 'hello',
    ...(metadata ? { metadata } : {}),
    ...(privacy ? { privacy } : {}),
  });
  const options = { defaultRedactionString: '[REDACTED]' };

  it('leaves out do_not_persist messages, counts them apart from dropped, and strips privacy', () => {
    const res = applyInputPrivacy(
      policyFor('redact', { nonPersistableMessageTypes: ['system'] }),
      [
        message({ do_not_persist: true }),
        { ...message(), role: 'system' },
        message({ do_not_persist: false }),
        message(),
      ],
      options,
    );
    expect(res.notPersisted).toBe(1);
    expect(res.dropped).toBe(1);
    expect(res.kept).toEqual([message(), message()]);
    for (const kept of res.kept) expect(MessageSchema.safeParse(kept).success).toBe(true);
  });

  it('redact_fields without a policy: the default redaction string, numbers and booleans too', () => {
    const res = applyInputPrivacy(
      undefined,
      [
        message(
          { redact_fields: ['customer', 'account', 'vip', 'absent'] },
          { customer: 'Jane Doe', account: 12345, vip: true, topic: 'billing' },
        ),
      ],
      options,
    );
    expect(res.kept).toEqual([
      message(undefined, {
        customer: '[REDACTED]',
        account: '[REDACTED]',
        vip: '[REDACTED]',
        topic: 'billing',
      }),
    ]);
    expect(res.redactions).toBe(3);
    expect(res.redactionsByRule).toEqual({ [REDACT_FIELDS_RULE]: 3 });
  });

  for (const action of ['redact', 'mask', 'hash', 'drop'] as const) {
    it(`redact_fields under action ${action}: the policy's replacement, whatever the patterns say`, () => {
      const res = applyInputPrivacy(
        policyFor(action),
        [
          message(
            { redact_fields: ['customer'] },
            { customer: 'Jane Doe', note: `write ${EMAIL}` },
          ),
        ],
        options,
      );
      const want = {
        redact: '[REDACTED]',
        drop: '[REDACTED]',
        mask: maskOf('Jane Doe'),
        hash: pseudonym('Jane Doe'),
      }[action];
      if (action === 'drop') {
        // The e-mail in `note` drops the message; the field instruction alone would not.
        expect(res).toMatchObject({ kept: [], dropped: 1 });
        const alone = applyInputPrivacy(
          policyFor(action),
          [message({ redact_fields: ['customer'] }, { customer: 'Jane Doe' })],
          options,
        );
        expect(alone.kept[0]?.metadata).toEqual({ customer: want });
        return;
      }
      expect(res.kept[0]?.metadata?.customer).toBe(want);
      expect(JSON.stringify(res.kept)).not.toContain(EMAIL);
      expect(res.redactionsByRule).toEqual({ [REDACT_FIELDS_RULE]: 1, email: 1 });
    });
  }
});
