import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { MessageInputSchema, MessageSchema } from '../../../src/core/message.js';
import {
  applyPrivacy,
  createPseudonymizer,
  PRIVACY_ACTIONS,
  PRIVACY_EXEMPT_FIELDS,
  type PrivacyAction,
  type RedactionPolicy,
} from '../../../src/core/privacy.js';

/** The personal data planted: an e-mail address in text leaves, a phone number in number leaves. */
const EMAIL = 'jane@example.com';
const PHONE = 4155552671;

/**
 * A value for one schema with something planted at exactly one leaf; `where` names the leaf.
 * `pii`: personal data the policy must remove; `fixed`: an enum or literal value of the schema
 * (a field's own vocabulary, `type: 'text'`, `detail: 'low'`) the policy must keep, so the
 * redacted message still passes the schema.
 */
interface Planted {
  readonly where: string;
  readonly value: unknown;
  readonly kind: 'pii' | 'fixed';
  /** For `fixed`: the value planted. */
  readonly fixed?: string;
}

type Def = { type: string } & Record<string, unknown>;
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/**
 * The smallest value `schema` accepts (required parts only), to fill around a planted leaf.
 * @throws Error for a shape this walk does not know, so a new kind of field is noticed here.
 */
function minimal(schema: z.ZodType, where: string): unknown {
  const def = defOf(schema);
  switch (def.type) {
    case 'optional':
      return undefined;
    case 'nullable':
      return null;
    case 'string':
      return 'x';
    case 'number':
      return 0;
    case 'boolean':
      return false;
    case 'null':
      return null;
    case 'enum':
      return Object.values(def.entries as Record<string, unknown>)[0];
    case 'literal':
      return (def.values as unknown[])[0];
    case 'array':
      return [];
    case 'record':
      return {};
    case 'union':
      return minimal((def.options as z.ZodType[])[0]!, where);
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [key, field] of Object.entries(def.shape as Record<string, z.ZodType>)) {
        const value = minimal(field, `${where}.${key}`);
        if (value !== undefined) out[key] = value;
      }
      return out;
    }
    default:
      throw new Error(`${where}: no minimal value known for a ${def.type} schema`);
  }
}

/**
 * Every way to put PII at one leaf of `schema`: a string leaf (or a record key) gets {@link EMAIL},
 * a number leaf {@link PHONE}; leaves that cannot carry text (boolean, null) get none; an enum or
 * literal leaf gets each of its values (`fixed`). Unions, records, arrays, objects, optionals,
 * nullables and defaults are walked into, at any depth.
 * @throws Error for any other shape: the test must learn how to fill it before it passes.
 */
function plant(schema: z.ZodType, where: string): Planted[] {
  const def = defOf(schema);
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'readonly':
    case 'nonoptional':
      return plant(def.innerType as z.ZodType, where);
    case 'string':
      return [{ where, value: EMAIL, kind: 'pii' }];
    case 'number':
      return [{ where, value: PHONE, kind: 'pii' }];
    case 'boolean':
    case 'null':
      return [];
    case 'enum':
    case 'literal': {
      const values =
        def.type === 'enum'
          ? Object.values(def.entries as Record<string, unknown>)
          : (def.values as unknown[]);
      return values
        .filter((v): v is string => typeof v === 'string')
        .map((v) => ({ where, value: v, kind: 'fixed' as const, fixed: v }));
    }
    case 'union':
      return (def.options as z.ZodType[]).flatMap((option) => plant(option, where));
    case 'array':
      return plant(def.element as z.ZodType, `${where}[]`).map((p) => ({ ...p, value: [p.value] }));
    case 'record': {
      const keyType = defOf(def.keyType as z.ZodType).type;
      if (keyType !== 'string') throw new Error(`${where}: record keys of type ${keyType}`);
      const valueType = def.valueType as z.ZodType;
      return [
        {
          where: `${where}{key}`,
          value: { [EMAIL]: minimal(valueType, `${where}{}`) },
          kind: 'pii' as const,
        },
        ...plant(valueType, `${where}{}`).map((p) => ({ ...p, value: { k: p.value } })),
      ];
    }
    case 'object': {
      const base = minimal(schema, where) as Record<string, unknown>;
      return Object.entries(def.shape as Record<string, z.ZodType>).flatMap(([key, field]) =>
        plant(field, `${where}.${key}`).map((p) => ({ ...p, value: { ...base, [key]: p.value } })),
      );
    }
    default:
      throw new Error(
        `${where}: this test does not know how to put PII into a ${def.type} schema; teach plant() that shape`,
      );
  }
}

const BASE = { role: 'user', content: 'hi' } as const;
/** Fields only some roles carry: the planted message takes that role. */
const ROLE_OF_FIELD: Readonly<Record<string, string>> = {
  tool_calls: 'assistant',
  tool_call_id: 'tool',
};
/** Valid exempt fields, so a redacted message can be checked against the stored schema. */
const STORED = { id: '01ARZ3NDEKTSV4RRFFQ69G5FAV', created_at: '2024-01-01T00:00:00.000Z' };
const exempt = new Set<string>(PRIVACY_EXEMPT_FIELDS);

/**
 * One message per non-exempt leaf of {@link MessageInputSchema} at any depth, with something
 * planted at that leaf only (`privacy`, input-only and stripped by the producer, is left out).
 */
function plantedMessages(): Array<Planted & { message: Record<string, unknown> }> {
  return Object.entries(MessageInputSchema.shape)
    .filter(([field]) => !exempt.has(field) && field !== 'privacy')
    .flatMap(([field, schema]) =>
      plant(schema as z.ZodType, field).map((p) => ({
        ...p,
        message: { ...STORED, ...BASE, role: ROLE_OF_FIELD[field] ?? BASE.role, [field]: p.value },
      })),
    );
}

/** A policy that matches every run of letters: anything the schema does not fix is replaced. */
const everyWord = (action: PrivacyAction): RedactionPolicy => ({
  ...policyFor(action),
  redactPatterns: ['[A-Za-z]+'],
  detectors: [],
  defaultRedactionString: '***',
});

const policyFor = (action: PrivacyAction): RedactionPolicy => ({
  redactPatterns: [],
  detectors: ['email', 'phone'],
  action,
  nonPersistableMessageTypes: [],
  defaultRedactionString: '[REDACTED]',
  pseudonym: createPseudonymizer('0123456789abcdef0123456789abcdef'),
});

describe('applyPrivacy covers every field of the message schema', () => {
  const all = plantedMessages();
  const planted = all.filter((p) => p.kind === 'pii');
  const fixed = all.filter((p) => p.kind === 'fixed');

  it('plants PII in every text and number leaf the schema has today, at any depth', () => {
    expect(planted.map((p) => p.where)).toEqual(
      expect.arrayContaining([
        'content',
        'content[].text',
        'content[].image_url.url',
        'name',
        'tool_calls[].id',
        'tool_calls[].function.name',
        'tool_calls[].function.arguments',
        'tool_call_id',
        'metadata{key}',
        'metadata{}',
      ]),
    );
    expect(planted.filter((p) => p.where === 'metadata{}').map((p) => p.message.metadata)).toEqual([
      { k: EMAIL },
      { k: PHONE },
    ]);
    expect(fixed.map((p) => `${p.where}=${p.fixed}`).sort()).toEqual([
      'content[].image_url.detail=auto',
      'content[].image_url.detail=high',
      'content[].image_url.detail=low',
      'content[].type=image_url',
      'content[].type=text',
      'tool_calls[].type=function',
    ]);
    // Each planted message is one a producer may send: the schema accepts it.
    for (const { where, message } of all) {
      expect(MessageInputSchema.safeParse(message).success, where).toBe(true);
    }
  });

  for (const action of PRIVACY_ACTIONS.filter((a) => a !== 'drop')) {
    it(`keeps the schema's field names and enum values at every depth, so the message stays valid (action ${action})`, () => {
      // A policy matching every word would take `type`, `text`, `function`, `low`... if it read them.
      for (const { where, message } of all) {
        const result = applyPrivacy(everyWord(action), [message as typeof BASE]);
        const stored = result.kept[0] as Record<string, unknown>;
        const parsed = MessageSchema.safeParse(stored);
        expect(parsed.success, `${action} at ${where}: ${parsed.error?.message}`).toBe(true);
        expect(result.redactions, where).toBeGreaterThan(0); // the content 'hi' at least
        expect(JSON.stringify(stored), where).not.toContain('"hi"');
      }
      for (const { where, message, fixed: value } of fixed) {
        const result = applyPrivacy(everyWord(action), [message as typeof BASE]);
        expect(JSON.stringify(result.kept[0]), where).toContain(JSON.stringify(value));
      }
    });
  }

  it('redacts a value at an enum or literal position that is not one of its values', () => {
    const result = applyPrivacy(policyFor('redact'), [
      {
        ...BASE,
        content: [{ type: EMAIL, image_url: { url: 'https://x', detail: EMAIL } }],
      } as unknown as typeof BASE,
    ]);
    expect(JSON.stringify(result.kept)).not.toContain(EMAIL);
    expect(result.redactions).toBe(2);
  });

  for (const action of PRIVACY_ACTIONS) {
    it(`leaves no trace of the PII at any leaf (action ${action})`, () => {
      for (const { where, message } of planted) {
        const result = applyPrivacy(policyFor(action), [message as typeof BASE]);
        const stored = JSON.stringify(result.kept);
        expect(stored, `${action} at ${where}`).not.toContain(EMAIL);
        expect(stored, `${action} at ${where}`).not.toContain(String(PHONE));
        if (action !== 'drop') {
          const parsed = MessageSchema.safeParse(result.kept[0]);
          expect(parsed.success, `${action} at ${where}: ${parsed.error?.message}`).toBe(true);
        }
        if (action === 'drop') {
          expect({ where, kept: result.kept.length, dropped: result.dropped }).toEqual({
            where,
            kept: 0,
            dropped: 1,
          });
        } else {
          expect({ where, redactions: result.redactions }).toEqual({ where, redactions: 1 });
          expect(Object.values(result.redactionsByRule), where).toEqual([1]);
        }
      }
    });
  }

  it('exempts only fields whose schema refuses free text', () => {
    expect([...PRIVACY_EXEMPT_FIELDS].sort()).toEqual(['created_at', 'id', 'role']);
    const shape = MessageInputSchema.shape as Record<string, z.ZodType>;
    for (const field of PRIVACY_EXEMPT_FIELDS) {
      expect(shape[field], field).toBeDefined();
      for (const pii of [EMAIL, String(PHONE), `x ${EMAIL}`, PHONE]) {
        expect(shape[field]!.safeParse(pii).success, `${field} accepts ${pii}`).toBe(false);
      }
    }
  });

  it('notices a field of a shape it cannot fill', () => {
    expect(() => plant(z.object({ when: z.date() }), 'm')).toThrow(/date schema/);
    expect(() => plant(z.map(z.string(), z.string()), 'm')).toThrow(/map schema/);
    expect(plant(z.object({ tags: z.array(z.string()) }), 'm')).toEqual([
      { where: 'm.tags[]', value: { tags: [EMAIL] }, kind: 'pii' },
    ]);
  });

  it('walks fields added later (nested objects, arrays, unknown keys) too', () => {
    const result = applyPrivacy(policyFor('redact'), [
      {
        ...BASE,
        extra: { list: [EMAIL, { deep: PHONE }], [EMAIL]: true },
      } as typeof BASE,
    ]);
    expect(result.kept).toEqual([
      { ...BASE, extra: { list: ['[REDACTED]', { deep: '[REDACTED]' }], '[REDACTED]': true } },
    ]);
    expect(result.redactionsByRule).toEqual({ email: 2, phone: 1 });
  });

  it('reads a created_at whose fractional seconds could carry a number (the schema accepts any length)', () => {
    // A valid ISO date-time whose fraction holds a phone number.
    const createdAt = `2024-01-01T00:00:00.${PHONE}+00:00`;
    expect(MessageInputSchema.shape.created_at.safeParse(createdAt).success).toBe(true);
    for (const action of ['redact', 'drop'] as const) {
      const result = applyPrivacy(policyFor(action), [{ ...BASE, created_at: createdAt }]);
      expect(JSON.stringify(result.kept), action).not.toContain(String(PHONE));
    }
    // memq's own millisecond form stays exempt and unchanged.
    const ms = applyPrivacy(policyFor('redact'), [
      { ...BASE, created_at: '2024-01-01T00:00:00.123Z' },
    ]);
    expect(ms.redactions).toBe(0);
  });

  it('still redacts an exempt field whose value is not of its format', () => {
    const result = applyPrivacy(policyFor('redact'), [
      { ...BASE, id: EMAIL, created_at: EMAIL } as typeof BASE,
    ]);
    expect(JSON.stringify(result.kept)).not.toContain(EMAIL);
    expect(result.redactions).toBe(2);
  });
});
