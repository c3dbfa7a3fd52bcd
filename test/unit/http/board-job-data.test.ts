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
