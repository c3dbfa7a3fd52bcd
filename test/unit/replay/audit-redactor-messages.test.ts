import { beforeAll, describe, expect, it } from 'vitest';
import { MessageInputSchema, type MessageInput, type Role } from '../../../src/core/message.js';
import {
  applyInputPrivacy,
  applyPrivacy,
  createPseudonymizer,
  DETECTORS,
  type PrivacyAction,
  type RedactionPolicy,
} from '../../../src/core/privacy.js';
import {
  AUDIT_DEFAULT_REDACTION,
  compileAuditPolicy,
  expectStored,
} from '../../../src/replay/audit-redactor.js';
import { buildConversations } from '../../../src/replay/corpus.js';

const KEY = 'k'.repeat(24);
const AT = '2024-05-01T10:00:00.000Z';
/** Ascending ULIDs (the producer sorts a batch by id; the audit reads it in that order). */
const idAt = (i: number) => `01HX${String(i).padStart(22, '0')}`;

const call = (id: string, args: string, name = 'send_mail') => ({
  id,
  type: 'function' as const,
  function: { name, arguments: args },
});

/** Hand-written messages with personal data in every place a message can carry it. */
const handWritten: MessageInput[] = [
  {
    role: 'user',
    content: [
      { type: 'text', text: 'write to jane.doe@example.com about ACC-1234' },
      {
        type: 'image_url',
        image_url: { url: 'https://img.example.com/?tel=+1 415 555 2671', detail: 'high' },
      },
    ],
    name: 'jane@example.com',
    metadata: {
      'owner@example.com': 'x',
      '[X]': 'y',
      'ops@example.com': 'z',
      '[X]#2': 'w',
      customer: 'Jane Doe',
      account: 4155552671,
    },
    privacy: { redact_fields: ['customer', 'account', 'missing'] },
  },
  {
    role: 'assistant',
    content: null,
    tool_calls: [
      call(
        'call:jane@example.com',
        JSON.stringify({
          to: {
            primary: 'jane.doe@example.com',
            cc: ['bob@example.com', { tel: '+1 415 555 2671' }],
          },
          'ann@example.com': { n: 4155552671, card: 4111111111111111, ok: true, none: null },
          'bob@example.com': 1,
          '[X]': 2,
          'ops@example.com': 3,
          '[X]#2': 4,
        }),
      ),
      // Rules that need a key and its value together: the whole text is redacted too.
      call('call_login', '{"user": "bob", "password": "hunter2", "to": "ann\\u0040example.com"}'),
      call('call_ssn', '{"name":"Ann","ssn":"A-123-45","n":4155552671}', 'lookup'),
      call('call:bob@example.com', '{"to": "jane\\u0040example.com", "to": "x", "n": 1.50}'),
      call('[X]', 'not json: mail ann@example.com'),
      call('call_plain', '{\n  "q": "weather in Boston"\n}', 'lookup'),
    ],
  },
  { role: 'tool', tool_call_id: 'call:bob@example.com', content: 'sent to bob@example.com' },
  { role: 'tool', tool_call_id: '[X]', content: 'ok' },
  { role: 'tool', tool_call_id: 'call:jane@example.com', content: [{ type: 'text', text: 'ok' }] },
  { role: 'tool', tool_call_id: 'call_plain', content: 'sunny' },
  { role: 'developer', content: 'escalate ACC-99 to ops@example.com' },
  { role: 'system', content: 'internal: ops@example.com' },
  { role: 'user', content: 'forget this: jane@example.com', privacy: { do_not_persist: true } },
  { role: 'user', content: 'fine', created_at: '2024-05-01T10:00:00.123456Z' },
];

/** The resource's own patterns: a word, a key with its value, and a JSON key with its value. */
const PATTERNS = ['\\bACC-\\d+\\b', '(?i)password\\W+\\S+', '"ssn"\\s*:\\s*"[^"]+"'];

const memqPolicy = (action: PrivacyAction): RedactionPolicy => ({
  redactPatterns: PATTERNS,
  detectors: [...DETECTORS],
  action,
  nonPersistableMessageTypes: ['system'] as Role[],
  defaultRedactionString: '[X]',
  pseudonym: createPseudonymizer(KEY),
});

/**
 * What memq stores of one append: the producer's step (ids and times given, per-message
 * instructions, the policy), then the append processor's second pass.
 */
function memqStores(policy: RedactionPolicy | undefined, batch: readonly MessageInput[]) {
  const identified = batch.map((m, i) => ({
    ...m,
    id: m.id ?? idAt(i),
    created_at: m.created_at ?? AT,
  }));
  for (const m of identified) expect(MessageInputSchema.safeParse(m).success).toBe(true);
  const produced = applyInputPrivacy(policy, identified, { defaultRedactionString: '[REDACTED]' });
  return { ...produced, kept: applyPrivacy(policy, produced.kept).kept };
}

/** What the audit expects of the same append. */
function auditExpects(action: PrivacyAction | undefined, batch: readonly MessageInput[]) {
  const identified = batch.map((m, i) => ({
    ...m,
    id: m.id ?? idAt(i),
    created_at: m.created_at ?? AT,
  }));
  const redactor = compileAuditPolicy(
    action === undefined
      ? undefined
      : {
          redactPatterns: PATTERNS,
          detectors: [...DETECTORS],
          action,
          nonPersistableMessageTypes: ['system'],
          defaultRedactionString: '[X]',
        },
    { MEMQ_PRIVACY_HASH_KEY: KEY },
  );
  return expectStored(redactor, identified);
}

describe('the audit agrees with memq on messages with parts, tool calls and privacy instructions', () => {
  for (const action of ['redact', 'mask', 'hash', 'drop'] as const) {
    it(`action ${action}: every stored field, and what is not stored`, () => {
      const memq = memqStores(memqPolicy(action), handWritten);
      const audit = auditExpects(action, handWritten);
      expect(audit.flatMap((e) => (e.stored ? [e.stored] : []))).toEqual(memq.kept);
      expect(audit.filter((e) => e.skipped === 'do_not_persist')).toHaveLength(memq.notPersisted);
      expect(
        audit.filter((e) => e.skipped === 'non_persistable' || e.skipped === 'drop'),
      ).toHaveLength(memq.dropped);
      if (action !== 'drop') {
        expect(memq.kept.length).toBe(8);
        expect(JSON.stringify(memq.kept)).not.toMatch(
          /(jane|bob|ann|ops|owner)@|ann\\\\u0040|jane\.doe|Jane Doe|4155552671|ACC-|hunter2|A-123/,
        );
      }
    });
  }

  it('without a policy: redact_fields still replaces, with the default redaction string', () => {
    const memq = memqStores(undefined, handWritten);
    const audit = auditExpects(undefined, handWritten);
    expect(audit.flatMap((e) => (e.stored ? [e.stored] : []))).toEqual(memq.kept);
    expect(memq.kept[0]?.metadata).toMatchObject({
      customer: AUDIT_DEFAULT_REDACTION,
      account: AUDIT_DEFAULT_REDACTION,
    });
  });

  describe('on 120 real e-mails carried in parts, tool-call arguments and ids', () => {
    let batches: MessageInput[][] = [];
    beforeAll(async () => {
      const { conversations } = await buildConversations({ limit: 120 });
      batches = conversations
        .flatMap((c) => c.messages)
        .map((m, i) => {
          const firstLine = m.content.split('\n').find((l) => l.trim() !== '') ?? 'x';
          const callId = `call:${firstLine.slice(0, 200)}`;
          return [
            {
              role: 'user',
              content: [
                { type: 'text', text: m.content },
                { type: 'image_url', image_url: { url: `https://x.example/${firstLine}` } },
              ],
              metadata: { ...m.metadata, [firstLine.slice(0, 100)]: i },
            },
            {
              role: 'assistant',
              content: null,
              tool_calls: [
                call(
                  callId,
                  JSON.stringify({
                    body: m.content,
                    meta: m.metadata,
                    lines: m.content.split('\n'),
                  }),
                ),
                call(`${callId} (2)`, m.content.slice(0, 500)),
              ],
            },
            { role: 'tool', tool_call_id: callId, content: firstLine },
          ];
        });
    }, 60_000);

    it.each(['redact', 'mask', 'hash', 'drop'] as const)(
      'action %s',
      (action) => {
        let redacted = 0;
        for (const batch of batches) {
          const memq = memqStores(memqPolicy(action), batch);
          const audit = auditExpects(action, batch);
          expect(audit.flatMap((e) => (e.stored ? [e.stored] : []))).toEqual(memq.kept);
          if (audit.some((e) => e.matches > 0)) redacted += 1;
        }
        expect(redacted).toBeGreaterThan(20);
      },
      60_000,
    );
  });
});
