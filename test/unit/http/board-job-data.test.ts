import { describe, expect, it } from 'vitest';
import { createMemoryRegistry, parseMemoryResource } from '../../../src/config/load-memories.js';
import { boardJobData } from '../../../src/http/board.js';

const ADDRESS = 'jane.doe@example.com';

const resourceYaml = (id: string, scope: string) => `resource: memory
id: ${id}
type: token_based
max_tokens: 100000
persistence:
  type: redis
  ttl: 1h
privacy_policy:
  detectors: [email]
  action: hash
  hash_key_env: TEST_PII_KEY
privacy_scope: ${scope}
`;

const registry = createMemoryRegistry(
  ['session', 'global'].map(
    (scope) => parseMemoryResource(resourceYaml(scope, scope), `${scope}.yaml`).resource!,
  ),
  { TEST_PII_KEY: 'a-test-key-that-is-long-enough' },
);

/** The contents Bull Board would show for an append job of `resource`/`key` carrying the address. */
function shown(resource: string, key: string, ref: unknown = undefined): string {
  const data = boardJobData(registry, {
    ref: ref ?? { project: 'p', resource, key },
    messages: [
      {
        id: '01J00000000000000000000000',
        role: 'user',
        content: `mail ${ADDRESS}`,
        created_at: '2026-12-02T00:00:00.000Z',
      },
    ],
  }) as { messages: { content: string }[] };
  return data.messages[0]!.content;
}

describe('Bull Board job data under a hash policy', () => {
  it('shows per-instance pseudonyms for privacy_scope session, never the address', () => {
    const one = shown('session', 'chat:1');
    const two = shown('session', 'chat:2');
    expect(one).toMatch(/^mail pii_[0-9a-f]{16}$/);
    expect(two).toMatch(/^mail pii_[0-9a-f]{16}$/);
    expect(one).not.toBe(two);
  });

  it('shows one pseudonym across instances for privacy_scope global', () => {
    expect(shown('global', 'chat:1')).toBe(shown('global', 'chat:2'));
    expect(shown('global', 'chat:1')).toMatch(/^mail pii_[0-9a-f]{16}$/);
  });

  it('hides the messages of a session-scoped job whose ref is not a memory instance', () => {
    const content = shown('session', 'chat:1', { resource: 'session', key: 42 });
    expect(content).not.toContain(ADDRESS);
    expect(content).toMatch(/hidden by memq/);
  });
});

describe('Bull Board job data with content parts and tool calls', () => {
  const ref = { project: 'p', resource: 'global', key: 'chat:1' };
  const job = (messages: unknown[], resource = 'global') =>
    JSON.stringify(boardJobData(registry, { ref: { ...ref, resource }, messages }));

  it('redacts text parts, image URLs and tool-call arguments; null content stays null', () => {
    const shownJob = job([
      {
        id: '01J00000000000000000000001',
        role: 'user',
        content: [
          { type: 'text', text: `write to ${ADDRESS}` },
          { type: 'image_url', image_url: { url: `https://img.example/${ADDRESS}.png` } },
        ],
        created_at: '2026-12-02T00:00:00.000Z',
      },
      {
        id: '01J00000000000000000000002',
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'send_mail', arguments: `{"to":"${ADDRESS}"}` },
          },
        ],
        created_at: '2026-12-02T00:00:00.000Z',
      },
    ]);
    expect(shownJob).not.toContain(ADDRESS);
    const data = JSON.parse(shownJob) as {
      messages: [
        { content: { type: string; text?: string }[] },
        { content: null; tool_calls: { function: { arguments: string } }[] },
      ];
    };
    expect(data.messages[0].content[0]!.text).toMatch(/^write to pii_[0-9a-f]{16}$/);
    expect(data.messages[1].content).toBeNull();
    expect(data.messages[1].tool_calls[0]!.function.arguments).toMatch(
      /^\{"to":"pii_[0-9a-f]{16}"\}$/,
    );
  });

  it('hides every field but id and role of a message of an undeclared resource', () => {
    const data = JSON.parse(
      job(
        [
          {
            id: '01J00000000000000000000003',
            role: 'assistant',
            content: null,
            name: ADDRESS,
            tool_calls: [
              { id: 'c', type: 'function', function: { name: 'f', arguments: ADDRESS } },
            ],
            metadata: { mail: ADDRESS },
          },
          'not a message',
        ],
        'undeclared',
      ),
    ) as { messages: unknown[] };
    expect(data.messages).toEqual([
      {
        id: '01J00000000000000000000003',
        role: 'assistant',
        content: expect.stringMatching(/hidden by memq/) as unknown,
      },
      { content: expect.stringMatching(/hidden by memq/) as unknown },
    ]);
  });
});

describe('Bull Board job data of a batched append job (group commit)', () => {
  const message = (id: string, content: string) => ({
    id,
    role: 'user',
    content,
    name: `from ${ADDRESS}`,
    metadata: { mail: ADDRESS, n: 1 },
    created_at: '2026-12-02T00:00:00.000Z',
  });
  const sessionRef = (key: string) => ({ project: 'p', resource: 'session', key });
  const erased = { ref: sessionRef('chat:9'), erased_ids: ['01J00000000000000000000009'] };
  const batched = {
    entries: [
      { ref: sessionRef('chat:1'), messages: [message('01J00000000000000000000001', ADDRESS)] },
      { ref: sessionRef('chat:2'), messages: [message('01J00000000000000000000002', ADDRESS)] },
      {
        ref: { project: 'p', resource: 'global', key: 'chat:3' },
        messages: [message('01J00000000000000000000003', `mail ${ADDRESS}`)],
      },
      {
        ref: { project: 'p', resource: 'undeclared', key: 'chat:4' },
        messages: [message('01J00000000000000000000004', ADDRESS)],
      },
      erased,
    ],
  };
  type Shown = {
    entries: Array<{
      ref: unknown;
      messages: Array<{ content: string; name?: string; metadata?: Record<string, unknown> }>;
    }>;
  };
  const view = boardJobData(registry, batched) as Shown;

  it('shows no string of any entry raw, at any depth', () => {
    expect(JSON.stringify(view)).not.toContain(ADDRESS);
    expect(JSON.stringify(view)).not.toContain('jane.doe');
  });

  it("redacts each entry through its own resource's policy and its own instance", () => {
    const [one, two, global] = view.entries.map((e) => e.messages?.[0]);
    expect(one!.content).toMatch(/^pii_[0-9a-f]{16}$/);
    expect(two!.content).toMatch(/^pii_[0-9a-f]{16}$/);
    // privacy_scope session: per-instance pseudonyms, so two entries of two chats differ
    expect(one!.content).not.toBe(two!.content);
    expect(one!.name).toMatch(/^from pii_[0-9a-f]{16}$/);
    expect(one!.metadata).toEqual({
      mail: expect.stringMatching(/^pii_[0-9a-f]{16}$/) as unknown,
      n: 1,
    });
    // privacy_scope global: the same pseudonym as a lone job of that resource shows
    expect(global!.content).toBe(shown('global', 'chat:3'));
    expect(view.entries.map((e) => e.ref)).toEqual(batched.entries.map((e) => e.ref));
  });

  it('hides the messages of an entry of an undeclared resource; shows an erased entry as it is', () => {
    expect(view.entries[3]!.messages).toEqual([
      {
        id: '01J00000000000000000000004',
        role: 'user',
        content: expect.stringMatching(/hidden by memq/) as unknown,
      },
    ]);
    expect(view.entries[4]).toEqual(erased);
  });

  it('hides what the job contract does not allow: other fields, non-ULID ids, other shapes', () => {
    const odd = boardJobData(registry, {
      note: ADDRESS,
      entries: [
        { ref: sessionRef('chat:1'), erased_ids: [ADDRESS] },
        { ref: { key: ADDRESS }, messages: [], extra: ADDRESS },
        ADDRESS,
      ],
    });
    expect(JSON.stringify(odd)).not.toContain(ADDRESS);
    expect(odd).toEqual({
      note: expect.stringMatching(/hidden by memq/) as unknown,
      entries: [
        {
          ref: sessionRef('chat:1'),
          erased_ids: expect.stringMatching(/hidden by memq/) as unknown,
        },
        {
          ref: expect.stringMatching(/hidden by memq/) as unknown,
          messages: [],
          extra: expect.stringMatching(/hidden by memq/) as unknown,
        },
        expect.stringMatching(/hidden by memq/) as unknown,
      ],
    });
  });
});
