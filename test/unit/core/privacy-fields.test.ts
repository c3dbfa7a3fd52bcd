import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { MessageInputSchema } from '../../../src/core/message.js';
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

/** A value for one schema with PII at exactly one leaf; `where` names the leaf. */
interface Planted {
  readonly where: string;
  readonly value: unknown;
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
 * a number leaf {@link PHONE}; leaves that cannot carry text (boolean, null, enum, literal) get
 * none. Unions, records, arrays, objects, optionals, nullables and defaults are walked into.
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
      return [{ where, value: EMAIL }];
    case 'number':
      return [{ where, value: PHONE }];
    case 'boolean':
    case 'null':
    case 'enum':
    case 'literal':
      return [];
    case 'union':
      return (def.options as z.ZodType[]).flatMap((option) => plant(option, where));
    case 'array':
      return plant(def.element as z.ZodType, `${where}[]`).map((p) => ({
        where: p.where,
        value: [p.value],
      }));
    case 'record': {
      const keyType = defOf(def.keyType as z.ZodType).type;
      if (keyType !== 'string') throw new Error(`${where}: record keys of type ${keyType}`);
      const valueType = def.valueType as z.ZodType;
      return [
        { where: `${where}{key}`, value: { [EMAIL]: minimal(valueType, `${where}{}`) } },
        ...plant(valueType, `${where}{}`).map((p) => ({
          where: p.where,
          value: { k: p.value },
        })),
      ];
    }
    case 'object': {
      const base = minimal(schema, where) as Record<string, unknown>;
      return Object.entries(def.shape as Record<string, z.ZodType>).flatMap(([key, field]) =>
        plant(field, `${where}.${key}`).map((p) => ({
          where: p.where,
          value: { ...base, [key]: p.value },
        })),
      );
    }
    default:
      throw new Error(
        `${where}: this test does not know how to put PII into a ${def.type} schema; teach plant() that shape`,
      );
  }
}

const BASE = { role: 'user', content: 'hi' } as const;
const exempt = new Set<string>(PRIVACY_EXEMPT_FIELDS);

/** One message per non-exempt leaf of {@link MessageInputSchema}, PII at that leaf only. */
function plantedMessages(): Array<{ where: string; message: Record<string, unknown> }> {
  return Object.entries(MessageInputSchema.shape)
    .filter(([field]) => !exempt.has(field))
    .flatMap(([field, schema]) =>
      plant(schema as z.ZodType, field).map((p) => ({
        where: p.where,
        message: { ...BASE, [field]: p.value },
      })),
    );
}

const policyFor = (action: PrivacyAction): RedactionPolicy => ({
  redactPatterns: [],
  detectors: ['email', 'phone'],
  action,
  nonPersistableMessageTypes: [],
  defaultRedactionString: '[REDACTED]',
  pseudonym: createPseudonymizer('0123456789abcdef0123456789abcdef'),
});

describe('applyPrivacy covers every field of the message schema', () => {
  const planted = plantedMessages();

  it('plants PII in every text and number leaf the schema has today', () => {
    expect(planted.map((p) => p.where)).toEqual(
      expect.arrayContaining(['content', 'name', 'tool_call_id', 'metadata{key}', 'metadata{}']),
    );
    expect(planted.filter((p) => p.where === 'metadata{}').map((p) => p.message.metadata)).toEqual([
      { k: EMAIL },
      { k: PHONE },
    ]);
    // Each planted message is one a producer may send: the schema accepts it.
    for (const { where, message } of planted) {
      expect(MessageInputSchema.safeParse(message).success, where).toBe(true);
    }
  });

  for (const action of PRIVACY_ACTIONS) {
    it(`leaves no trace of the PII at any leaf (action ${action})`, () => {
      for (const { where, message } of planted) {
        const result = applyPrivacy(policyFor(action), [message as typeof BASE]);
        const stored = JSON.stringify(result.kept);
        expect(stored, `${action} at ${where}`).not.toContain(EMAIL);
        expect(stored, `${action} at ${where}`).not.toContain(String(PHONE));
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
      { where: 'm.tags[]', value: { tags: [EMAIL] } },
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
