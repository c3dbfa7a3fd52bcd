import { contentText } from '../../src/core/message.js';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../src/config/load-memories.js';
import { JOBS } from '../../queues/names.js';
import { eventually, startPipeline, type TestPipeline } from '../helpers/pipeline.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

const HASHED = `resource: memory
id: hashed
type: token_based
max_tokens: 100000
persistence:
  type: redis
  ttl: 1h
privacy_policy:
  detectors: [email, phone]
  action: hash
  hash_key_env: TEST_PII_KEY
`;
const KEY = 'a-test-key-that-is-long-enough';
const ADDRESS = 'jane.doe@example.com';
const PHONE = '+1 (555) 123-4567';
const MARKER = 'purple-elephant-7731';

describe('privacy: hash action end to end, and logs that never carry content', () => {
  let ns: RedisNamespace;
  let pipeline: TestPipeline;
  const lines: string[] = [];

  beforeAll(async () => {
    ns = createRedisNamespace();
    const registry = createMemoryRegistry(
      [parseMemoryResource(HASHED, 'memories/hashed.yaml').resource!],
      { TEST_PII_KEY: KEY },
    );
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    pipeline = await startPipeline(ns, registry, 'test', {
      log: pino({ level: 'debug' }, sink),
    });
  });
  afterAll(async () => {
    await pipeline.close();
    await ns.cleanup();
  });

  it('stores the same pseudonym for the same address in every message, never the address', async () => {
    const target = { resource: 'hashed', key: 'hash:1' };
    const receipts = [];
    for (let i = 0; i < 5; i++) {
      receipts.push(
        await pipeline.client.append(target, [
          { role: 'user', content: `${MARKER} ${i}: write to ${ADDRESS} or call ${PHONE}` },
        ]),
      );
    }
    for (const r of receipts) await pipeline.client.waitFor(r.jobId!);
    const window = await pipeline.client.read(target);
    const contents = window.messages.map((m) => m.message.content);
    expect(contents).toHaveLength(5);
    const pseudonyms = contents.map((c) => contentText(c).match(/pii_[0-9a-f]{16}/g));
    expect(new Set(pseudonyms.map((p) => p?.[0])).size).toBe(1); // one address, one pseudonym
    expect(new Set(pseudonyms.map((p) => p?.[1])).size).toBe(1); // one phone, one pseudonym
    expect(pseudonyms[0]![0]).not.toBe(pseudonyms[0]![1]);
    expect(receipts.every((r) => r.redactions === 2)).toBe(true);
    const everything = await ns.allText();
    expect(everything).not.toContain(ADDRESS);
    expect(everything).not.toContain(PHONE);
  });

  it('logs job ids but no content, also for an invalid job and a failing flush request', async () => {
    const queue = pipeline.workers.queues.append;
    const bad = await queue.add(JOBS.append, {
      ref: { project: 'test', resource: 'hashed', key: 'hash:bad' },
      messages: [{ role: 'user', content: `${MARKER} invalid, no id` }],
    });
    await eventually(async () => (await bad.getState()) === 'failed', 'the invalid job to fail');
    const unknown = await queue.add(JOBS.append, {
      ref: { project: 'test', resource: 'not-declared', key: 'hash:x' },
      messages: [
        {
          id: '01JC0000000000000000000000',
          role: 'user',
          content: `${MARKER} for an undeclared memory`,
          created_at: new Date().toISOString(),
        },
      ],
    });
    await eventually(async () => (await unknown.getState()) === 'failed', 'the job to fail');
    const log = lines.join('');
    expect(log).toContain(bad.id!);
    expect(log).toContain(unknown.id!);
    expect(log).not.toContain(MARKER);
    expect(log).not.toContain('jane');
    // The phone in any formatting; not a bare '555', which a log line's epoch-ms `time` field
    // can contain (it did: 1796168085552, failing a CI run).
    expect(log).not.toContain(PHONE);
    expect(log).not.toMatch(/555\D{0,3}123\D{0,3}4567/);
  });
});
