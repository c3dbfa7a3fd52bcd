import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import { PayloadError } from '../../src/core/errors.js';
import { MessageSchema, type MessageInput } from '../../src/core/message.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

/** A resource with a policy (e-mail and phone detectors; developer messages never stored). */
const GUARDED = `resource: memory
id: guarded
type: token_based
max_tokens: 100000
persistence:
  type: redis
  ttl: 1h
privacy_policy:
  detectors: [email, phone]
  non_persistable_message_types: [developer]
`;
/** A resource without a privacy policy. */
const OPEN = `resource: memory
id: open
type: token_based
max_tokens: 100000
persistence:
  type: redis
  ttl: 1h
`;
/** Text that must reach no key, no job and no log line. */
const SECRET = 'zebra-orchid-5521 do not keep';
const CUSTOMER = 'Jane Roe-Whitaker';
const ADDRESS = 'jane.roe@example.com';
const PHONE = '+1 415 555 2671';

describe('privacy: per-message instructions and tool calls through the producer, on Redis', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  const lines: string[] = [];

  beforeAll(async () => {
    ns = createRedisNamespace();
    const registry = createMemoryRegistry(
      [
        parseMemoryResource(GUARDED, 'memories/guarded.yaml').resource!,
        parseMemoryResource(OPEN, 'memories/open.yaml').resource!,
      ],
      {},
    );
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    pipeline = await startPipeline(ns, registry, 'test', { log: pino({ level: 'trace' }, sink) });
  });
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  const stored = async (resource: string, key: string) =>
    (await pipeline.client.read({ resource, key })).messages.map((m) => m.message);

  it('never enqueues, stores or logs a do_not_persist message, and counts it in the receipt', async () => {
    const target = { resource: 'guarded', key: 'dnp:1' };
    const receipt = await pipeline.client.append(target, [
      { role: 'user', content: 'first' },
      { role: 'user', content: SECRET, privacy: { do_not_persist: true } },
      { role: 'developer', content: 'internal' },
      { role: 'assistant', content: 'last', privacy: { do_not_persist: false } },
    ]);
    expect(receipt).toMatchObject({ notPersisted: 1, dropped: 1 });
    expect(receipt.messageIds).toHaveLength(2);
    expect([...receipt.messageIds].sort()).toEqual(receipt.messageIds);
    await pipeline.client.waitFor(receipt.jobId!);
    const messages = await stored('guarded', 'dnp:1');
    expect(messages.map((m) => [m.id, m.content])).toEqual([
      [receipt.messageIds[0], 'first'],
      [receipt.messageIds[1], 'last'],
    ]);
    for (const m of messages) expect(m).not.toHaveProperty('privacy');
    // Every key of the namespace: the log, the job hashes (job data), events, the ledger.
    const everything = await ns.allText();
    expect(everything).toContain(receipt.jobId!);
    expect(everything).not.toContain('zebra-orchid');
    expect(everything).not.toContain('do_not_persist');
    // The pipeline logs at trace level into `lines`; once the messages are counted (the counting
    // thread has loaded its tokenizer and said so), none of them carries the secret.
    await eventually(async () => (await pipeline.client.read(target)).exact, 'exact counts');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join('')).not.toContain('zebra-orchid');
  });

  it('enqueues nothing when every message is do_not_persist', async () => {
    const target = { resource: 'open', key: 'dnp:all' };
    const receipt = await pipeline.client.append(target, [
      { role: 'user', content: SECRET, privacy: { do_not_persist: true } },
      { role: 'assistant', content: SECRET, privacy: { do_not_persist: true } },
    ]);
    expect(receipt).toMatchObject({
      jobId: undefined,
      messageIds: [],
      notPersisted: 2,
      dropped: 0,
    });
    expect(await pipeline.client.backlog()).toBe(0);
    expect(await stored('open', 'dnp:all')).toEqual([]);
    expect(await ns.allText()).not.toContain('zebra-orchid');
    expect(lines.join('')).not.toContain('zebra-orchid');
  });

  it('replaces redact_fields values with the policy replacement, and with [REDACTED] without a policy', async () => {
    const message = (): MessageInput => ({
      role: 'user',
      content: 'see metadata',
      metadata: { customer: CUSTOMER, account: 4417, topic: 'billing' },
      privacy: { redact_fields: ['customer', 'account'] },
    });
    for (const resource of ['guarded', 'open']) {
      const target = { resource, key: 'fields:1' };
      const receipt = await pipeline.client.append(target, [message()]);
      expect(receipt.redactionsByRule).toEqual({ redact_fields: 2 });
      await pipeline.client.waitFor(receipt.jobId!);
      const [kept] = await stored(resource, 'fields:1');
      expect(kept?.metadata).toEqual({
        customer: '[REDACTED]',
        account: '[REDACTED]',
        topic: 'billing',
      });
    }
    const everything = await ns.allText();
    expect(everything).not.toContain(CUSTOMER);
    expect(everything).not.toContain('4417');
  });

  it('redacts personal data at any depth of parts and tool calls, keeping messages valid and calls matched', async () => {
    const target = { resource: 'guarded', key: 'tools:1' };
    const callId = `call:${ADDRESS}`;
    const args = JSON.stringify({
      to: { primary: ADDRESS, others: [{ phone: PHONE, tags: ['vip'] }] },
      callback: 4155552671,
    });
    const receipt = await pipeline.client.append(target, [
      {
        role: 'user',
        content: [
          { type: 'text', text: `mail ${ADDRESS} or call ${PHONE}` },
          { type: 'image_url', image_url: { url: `https://img.test/${ADDRESS}`, detail: 'low' } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: callId, type: 'function', function: { name: 'send', arguments: args } }],
      },
      { role: 'tool', tool_call_id: callId, content: `sent to ${ADDRESS}` },
    ]);
    // 2 in the text part, 1 in the URL, 3 in the arguments, the id in the call and in the
    // result, 1 in the result's content.
    expect(receipt.redactions).toBe(9);
    await pipeline.client.waitFor(receipt.jobId!);
    const messages = await stored('guarded', 'tools:1');
    expect(messages).toHaveLength(3);
    for (const m of messages) expect(MessageSchema.safeParse(m).success).toBe(true);
    const [user, call, result] = messages;
    expect(user?.content).toEqual([
      { type: 'text', text: 'mail [REDACTED] or call [REDACTED]' },
      { type: 'image_url', image_url: { url: 'https://img.test/[REDACTED]', detail: 'low' } },
    ]);
    const storedCall = call?.tool_calls?.[0];
    expect(storedCall?.id).toBe('call:[REDACTED]');
    expect(result?.tool_call_id).toBe(storedCall?.id);
    expect(JSON.parse(storedCall!.function.arguments)).toEqual({
      to: { primary: '[REDACTED]', others: [{ phone: '[REDACTED]', tags: ['vip'] }] },
      callback: '[REDACTED]',
    });
    const everything = await ns.allText();
    expect(everything).not.toContain(ADDRESS);
    expect(everything).not.toContain('4155552671');
    expect(everything).not.toMatch(/415\D{0,3}555\D{0,3}2671/);
  });

  it('write honours do_not_persist and redact_fields', async () => {
    const target = { resource: 'open', key: 'write:1' };
    await pipeline.client.waitFor(
      await pipeline.client.write(target, [
        { role: 'user', content: SECRET, privacy: { do_not_persist: true } },
        {
          role: 'user',
          content: 'kept',
          metadata: { customer: CUSTOMER },
          privacy: { redact_fields: ['customer'] },
        },
      ]),
    );
    const messages = await stored('open', 'write:1');
    expect(messages.map((m) => [m.content, m.metadata])).toEqual([
      ['kept', { customer: '[REDACTED]' }],
    ]);
    const everything = await ns.allText();
    expect(everything).not.toContain('zebra-orchid');
    expect(everything).not.toContain(CUSTOMER);
  });

  it('refuses invalid privacy instructions before anything is enqueued', async () => {
    const target = { resource: 'guarded', key: 'invalid:1' };
    const before = await ns.keys();
    await expect(
      pipeline.client.append(target, [
        { role: 'user', content: SECRET },
        {
          role: 'user',
          content: 'x',
          privacy: { do_not_persist: 'yes' } as unknown as MessageInput['privacy'],
        },
      ]),
    ).rejects.toThrow(PayloadError);
    await expect(
      pipeline.client.append(target, [
        { role: 'user', content: SECRET, privacy: { redact_fields: [''] } },
      ]),
    ).rejects.toThrow(/redact_fields/);
    expect((await ns.keys()).sort()).toEqual(before.sort());
    expect(await ns.allText()).not.toContain('zebra-orchid');
  });
});
