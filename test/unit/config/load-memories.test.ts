import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, MemoryNotFoundError } from '../../../src/core/errors.js';
import { applyPrivacy } from '../../../src/core/privacy.js';
import {
  createMemoryRegistry,
  checkMemoryFile,
  checkMemoryResources,
  loadMemoryResources,
  parseMemoryResource,
} from '../../../src/config/load-memories.js';

const INVALID = 'test/fixtures/memories/invalid';
const VALID = 'test/fixtures/memories/valid';

const VALID_BASE = `resource: memory
id: base
type: token_based
max_tokens: 4000
persistence:
  type: redis
  ttl: 24h
`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'memq-memories-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('invalid memory resource files', () => {
  // [fixture, field path, what the user reads after "<file>: <path>: "]
  const cases: [string, string, string][] = [
    ['unknown-key', 'max_token', 'unknown key, did you mean max_tokens?'],
    ['doc-only-key', 'key', 'unknown key, did you mean default_key_template?'],
    ['doc-only-flushing-strategy', 'flushing_strategy', 'unknown key, did you mean flushing?'],
    [
      'threshold-did-you-mean',
      'flushing.threshold',
      'unknown key, did you mean summarize_threshold?',
    ],
    [
      'allocation-sum',
      'token_allocation',
      'expected short_term + long_term + system to sum to 1 (± 0.001), got 0.9 (0.5 + 0.3 + 0.1)',
    ],
    [
      'hybrid-missing-summary-tokens',
      'flushing.summary_tokens',
      'required for type hybrid_summary: expected a positive integer, got nothing',
    ],
    [
      'ratio-without-model',
      'token_provider.model',
      'required with max_context_ratio (the ratio applies to the model context window): expected a model name like gpt-4o, got nothing',
    ],
    [
      'unknown-openai-model',
      'token_provider.model',
      'expected a model with a known tiktoken encoding (e.g. gpt-4o, gpt-4.1, gpt-5, o3, gpt-4, gpt-3.5-turbo), got "llama-3-70b"',
    ],
    [
      'ratio-unknown-context-window',
      'token_provider.model',
      'expected a model with a known context window for max_context_ratio (a name starting with gpt-5, gpt-4.1, gpt-4.5, gpt-4o, chatgpt-4o, gpt-4-turbo, gpt-4-32k, gpt-4, gpt-3.5-turbo, o1-mini, o1, o3, o4-mini, claude-, gemini-1.5-pro, gemini-), got "mistral-large"',
    ],
    [
      'bad-duration',
      'locking.clear_ttl',
      'expected a duration like 500ms, 30s, 5m, 1h30m, 24h or 7d (greater than 0), got "30 seconds"',
    ],
    [
      'ttl-without-unit',
      'persistence.ttl',
      'expected 0 (none) or a duration like 500ms, 30s, 5m, 1h30m, 24h or 7d in whole seconds, got 3600 (a number needs a unit, e.g. 3600s)',
    ],
    [
      'missing-ttl',
      'persistence.ttl',
      'required for persistence type redis: expected 0 (never expires) or a duration like 500ms, 30s, 5m, 1h30m, 24h or 7d, got nothing',
    ],
    [
      'bad-type',
      'type',
      'expected one of token_based, message_count_based, buffer, got "token_count"',
    ],
    ['bad-resource', 'resource', 'expected "memory", got "agent"'],
    [
      'bad-id',
      'id',
      'expected 1-100 characters of A-Z a-z 0-9 _ - starting with a letter or digit, got "-starts-with-dash"',
    ],
    [
      'threshold-out-of-range',
      'flushing.summarize_threshold',
      'expected a number in (0, 1], got 1.5',
    ],
    [
      'target-above-threshold',
      'flushing.target_ratio',
      'expected a number below summarize_threshold (0.6), got 0.7',
    ],
    [
      'bad-flush-type',
      'flushing.type',
      'expected one of simple_fifo, hybrid_summary, lru, lfu, token_aware_lru, priority (fifo = simple_fifo), got "time_based"',
    ],
    [
      'bad-regex',
      'privacy_policy.redact_patterns[1]',
      'expected a regular expression RE2 accepts (matched in linear time: no lookarounds, no backreferences), got "(\\\\w+) \\\\1" (invalid escape sequence: `\\1`)',
    ],
    [
      'redaction-string-redactable',
      'privacy_policy.default_redaction_string',
      'expected a redaction string that redact_patterns[0] does not match (or redaction would not be idempotent), got "[HIDDEN]"',
    ],
    [
      'literal-api-key',
      'token_provider.api_key',
      'literal API keys are not allowed, expected api_key_env naming the environment variable that holds the key, got a literal key (not shown)',
    ],
    [
      'bad-api-key-env',
      'token_provider.api_key_env',
      'expected an environment variable name matching ^[A-Z_][A-Z0-9_]*$, got "openai-key"',
    ],
    [
      'bad-role-in-non-persistable',
      'privacy_policy.non_persistable_message_types[1]',
      'expected one of system, developer, user, assistant, tool, got "function"',
    ],
    [
      'bad-key-template',
      'default_key_template',
      'expected key characters [A-Za-z0-9_:-@.] and placeholders like {{ .conversation_id }}, got "support:{{ conversation_id }}" (placeholder "{{ conversation_id }}" is not a dotted path starting with ".")',
    ],
    [
      'token-based-without-limit',
      'max_tokens',
      'required for type token_based (or max_context_ratio): expected a positive integer, got nothing',
    ],
    [
      'message-count-without-max-messages',
      'max_messages',
      'required for type message_count_based: expected a positive integer, got nothing',
    ],
  ];

  it.each(cases)('%s.yaml -> %s', async (name, fieldPath, text) => {
    await copyFile(path.join(INVALID, `${name}.yaml`), path.join(dir, `${name}.yaml`));
    const { resources, problems } = await checkMemoryResources(dir);
    const file = path.join(dir, `${name}.yaml`);
    expect(resources).toEqual([]);
    expect(problems.map((p) => p.message)).toContain(`${file}: ${fieldPath}: ${text}`);
    expect(problems.find((p) => p.path === fieldPath)?.line).toBeGreaterThan(0);
  });

  it('reports a duplicate YAML key with its line number', async () => {
    const file = path.join(INVALID, 'duplicate-yaml-key.yaml');
    const { problems } = await checkMemoryFile(file);
    expect(problems).toEqual([
      {
        file,
        path: '',
        line: 5,
        message: `${file}: line 5, column 1: expected each key once per mapping, got duplicate key "max_tokens"`,
      },
    ]);
  });

  it('reports a YAML syntax error with its line number', async () => {
    const file = path.join(INVALID, 'yaml-syntax.yaml');
    const { problems } = await checkMemoryFile(file);
    expect(problems).toHaveLength(1);
    expect(problems[0]?.message).toBe(
      `${file}: line 8, column 1: invalid YAML: Missing closing "quote`,
    );
  });

  it('also points at threshold inside a doc-only flushing_strategy', () => {
    const { problems } = parseMemoryResource(
      `${VALID_BASE}flushing_strategy:\n  type: simple_fifo\n  threshold: 0.9\n`,
      'memories/x.yaml',
    );
    expect(problems.map((p) => p.message)).toEqual([
      'memories/x.yaml: flushing_strategy: unknown key, did you mean flushing?',
      'memories/x.yaml: flushing_strategy.threshold: unknown key, did you mean summarize_threshold?',
    ]);
  });

  it('never echoes a literal API key', async () => {
    const { problems } = await checkMemoryFile(path.join(INVALID, 'literal-api-key.yaml'));
    expect(problems.map((p) => p.message).join('\n')).not.toContain('sk-live');
  });

  it('suggests api_key_env for a ${VAR} api_key', () => {
    const { problems } = parseMemoryResource(
      `${VALID_BASE}token_provider:\n  api_key: \${OPENAI_API_KEY}\n`,
      'memories/x.yaml',
    );
    expect(problems[0]?.message).toBe(
      'memories/x.yaml: token_provider.api_key: literal API keys are not allowed, expected api_key_env naming the environment variable that holds the key, got a reference to ${OPENAI_API_KEY} (did you mean api_key_env: OPENAI_API_KEY?)',
    );
  });

  it('lists the allowed keys when no known key is close', () => {
    const { problems } = parseMemoryResource(
      `${VALID_BASE}locking:\n  timeout: 5s\n`,
      'memories/x.yaml',
    );
    expect(problems[0]?.message).toBe(
      'memories/x.yaml: locking.timeout: unknown key, expected one of clear_ttl, flush_ttl',
    );
  });

  it.each([
    [
      'an empty file',
      '',
      'memories/x.yaml: expected a mapping of memory resource keys, got an empty file',
    ],
    [
      'a list',
      '- a\n- b\n',
      'memories/x.yaml: expected a mapping of memory resource keys, got a list of 2',
    ],
    [
      'a number for a mapping',
      VALID_BASE.replace('persistence:\n  type: redis\n  ttl: 24h\n', 'persistence: 24h\n'),
      'memories/x.yaml: persistence: expected a mapping with type and ttl, got "24h"',
    ],
    [
      'an unquoted numeric version',
      `${VALID_BASE}version: 1.0\n`,
      'memories/x.yaml: version: expected a string (quote versions like "1.0"), got 1',
    ],
    [
      'a fractional token limit',
      VALID_BASE.replace('max_tokens: 4000', 'max_tokens: 40.5'),
      'memories/x.yaml: max_tokens: expected a positive integer, got 40.5',
    ],
    [
      'a summary as large as the limit',
      `${VALID_BASE}flushing:\n  type: hybrid_summary\n  summarize_threshold: 0.8\n  summary_tokens: 4000\n`,
      'memories/x.yaml: flushing.summary_tokens: expected a positive integer below max_tokens (4000), got 4000',
    ],
    [
      'a TTL that is not whole seconds',
      VALID_BASE.replace('ttl: 24h', 'ttl: 1500ms'),
      'memories/x.yaml: persistence.ttl: expected 0 (none) or a duration like 500ms, 30s, 5m, 1h30m, 24h or 7d in whole seconds, got "1500ms"',
    ],
    [
      'a zero lock TTL',
      `${VALID_BASE}locking:\n  flush_ttl: 0\n`,
      'memories/x.yaml: locking.flush_ttl: expected a duration like 500ms, 30s, 5m, 1h30m, 24h or 7d (greater than 0), got 0',
    ],
    [
      'an unbalanced key template',
      `${VALID_BASE}default_key_template: "support:{{ .id }"\n`,
      'memories/x.yaml: default_key_template: expected key characters [A-Za-z0-9_:-@.] and placeholders like {{ .conversation_id }}, got "support:{{ .id }" (unclosed "{{" at offset 8)',
    ],
    [
      'a stray brace in a key template',
      `${VALID_BASE}default_key_template: "support:{ .id }"\n`,
      'memories/x.yaml: default_key_template: expected key characters [A-Za-z0-9_:-@.] and placeholders like {{ .conversation_id }}, got "support:{ .id }" (an unbalanced brace "{" at offset 8)',
    ],
    [
      'a redact pattern that matches the empty string',
      `${VALID_BASE}privacy_policy:\n  redact_patterns: ['\\d*']\n`,
      'memories/x.yaml: privacy_policy.redact_patterns[0]: expected a regular expression that does not match the empty string, got "\\\\d*"',
    ],
    [
      'a template with a pipeline',
      `${VALID_BASE}default_key_template: "u:{{ .user | lower }}"\n`,
      'memories/x.yaml: default_key_template: expected key characters [A-Za-z0-9_:-@.] and placeholders like {{ .conversation_id }}, got "u:{{ .user | lower }}" (placeholder "{{ .user | lower }}" is not a dotted path starting with ".")',
    ],
  ])('rejects %s', (_what, source, message) => {
    const { resource, problems } = parseMemoryResource(source, 'memories/x.yaml');
    expect(resource).toBeUndefined();
    expect(problems.map((p) => p.message)).toEqual([message]);
  });

  it('checks every file in one pass: two bad files give two problems', async () => {
    await copyFile(path.join(INVALID, 'bad-type.yaml'), path.join(dir, 'a.yaml'));
    await copyFile(path.join(INVALID, 'threshold-out-of-range.yaml'), path.join(dir, 'b.yml'));
    await writeFile(path.join(dir, 'c.yaml'), VALID_BASE);
    const { resources, problems } = await checkMemoryResources(dir);
    expect(problems.map((p) => p.message)).toEqual([
      `${path.join(dir, 'a.yaml')}: type: expected one of token_based, message_count_based, buffer, got "token_count"`,
      `${path.join(dir, 'b.yml')}: flushing.summarize_threshold: expected a number in (0, 1], got 1.5`,
    ]);
    expect(resources.map((r) => r.id)).toEqual(['base']);
  });

  it('reports every invalid fixture when the whole directory is checked', async () => {
    const { resources, problems } = await checkMemoryResources(INVALID);
    expect(resources).toEqual([]);
    const files = new Set(problems.map((p) => path.basename(p.file)));
    expect(files.size).toBeGreaterThanOrEqual(18);
    expect(files.size).toBe(cases.length + 2);
  });

  it('reports a duplicate id across files, naming both files', async () => {
    await writeFile(path.join(dir, 'a.yaml'), VALID_BASE);
    await writeFile(path.join(dir, 'b.yaml'), VALID_BASE);
    const { resources, problems } = await checkMemoryResources(dir);
    expect(resources).toHaveLength(1);
    expect(problems.map((p) => p.message)).toEqual([
      `${path.join(dir, 'b.yaml')}: id: expected an id unique across ${dir}, got "base" (also declared in ${path.join(dir, 'a.yaml')})`,
    ]);
  });
});

describe('loadMemoryResources', () => {
  it('loads the three shipped memories', async () => {
    const registry = await loadMemoryResources('memories');
    expect(registry.list().map((r) => r.id)).toEqual([
      'agent-memory',
      'chat-buffer',
      'customer-support',
    ]);
  });

  it('resolves customer-support as the replay tool needs it', async () => {
    const support = (await loadMemoryResources('memories')).get('customer-support');
    expect(support).toMatchObject({
      type: 'token_based',
      maxTokens: 4_000,
      flushing: { type: 'hybrid_summary', summaryTokens: 400 },
      persistence: { type: 'redis', ttlSeconds: 86_400 },
      privacyPolicy: {
        nonPersistableMessageTypes: ['system', 'tool'],
        defaultRedactionString: '[REDACTED]',
      },
      defaultKeyTemplate: 'support:{{ .conversation_id }}',
      sourceFile: path.join('memories', 'customer-support.yaml'),
    });
    const redact = (content: string) =>
      applyPrivacy(support.privacyPolicy, [{ role: 'user' as const, content }]).kept[0]!.content;
    expect(redact('mail jane.doe@example.com or call +1 (555) 123-4567 / 555-123-4567')).toBe(
      'mail [REDACTED] or call [REDACTED] / [REDACTED]',
    );
  });

  it('resolves agent-memory with a hybrid summary sized by the model', async () => {
    const agent = (await loadMemoryResources('memories')).get('agent-memory');
    expect(agent.maxTokens).toBeUndefined();
    expect(agent).toMatchObject({
      maxContextRatio: 0.5,
      tokenProvider: { provider: 'openai', model: 'gpt-4o' },
      tokenAllocation: { shortTerm: 0.6, longTerm: 0.3, system: 0.1 },
      flushing: { type: 'hybrid_summary', summarizeThreshold: 0.8, summaryTokens: 1000 },
    });
  });

  it('resolves chat-buffer as a message-count buffer, fifo read as simple_fifo', async () => {
    const chat = (await loadMemoryResources('memories')).get('chat-buffer');
    expect(chat).toMatchObject({
      type: 'message_count_based',
      maxMessages: 50,
      flushing: { type: 'simple_fifo' },
      persistence: { ttlSeconds: 3600 },
      expirationSeconds: 86_400,
    });
  });

  it('applies every default to a minimal file', async () => {
    const minimal = (await loadMemoryResources(VALID)).get('minimal');
    expect(minimal).toEqual({
      id: 'minimal',
      type: 'token_based',
      maxTokens: 2000,
      flushing: {
        type: 'simple_fifo',
        summarizeThreshold: 0.8,
        summarizeOldestPercent: 0.3,
        targetRatio: 0.5,
        trackAccess: false,
      },
      persistence: { type: 'redis', ttlSeconds: 5400 },
      privacyScope: 'global',
      locking: { clearTtlMs: 10_000, flushTtlMs: 300_000 },
      tokenProvider: { provider: 'openai', model: 'gpt-4o' },
      sourceFile: path.join(VALID, 'minimal.yaml'),
    });
  });

  it('reads ttl "0" and ttl 0 as never expiring', async () => {
    const registry = await loadMemoryResources(VALID);
    expect(registry.get('shared-memory').persistence.ttlSeconds).toBe(0);
    expect(registry.get('numeric-zero-ttl').persistence.ttlSeconds).toBe(0);
    expect(registry.get('shared-memory').locking).toEqual({
      clearTtlMs: 60_000,
      flushTtlMs: 120_000,
    });
  });

  it('halves a low summarize_threshold for the default target ratio', async () => {
    const buffer = (await loadMemoryResources(VALID)).get('numeric-zero-ttl');
    expect(buffer.flushing).toMatchObject({ summarizeThreshold: 0.4, targetRatio: 0.2 });
  });

  it('returns deeply frozen resources and a frozen registry', async () => {
    const registry = await loadMemoryResources('memories');
    const support = registry.get('customer-support');
    expect(Object.isFrozen(registry)).toBe(true);
    expect(Object.isFrozen(registry.list())).toBe(true);
    expect(Object.isFrozen(support)).toBe(true);
    expect(Object.isFrozen(support.flushing)).toBe(true);
    expect(Object.isFrozen(support.privacyPolicy?.redactPatterns)).toBe(true);
    expect(Object.isFrozen(support.tokenProvider)).toBe(true);
    expect(() => {
      (support as { maxTokens?: number }).maxTokens = 1;
    }).toThrow(TypeError);
  });

  it('answers has() and get(), naming the known ids for an unknown one', async () => {
    const registry = await loadMemoryResources('memories');
    expect(registry.has('chat-buffer')).toBe(true);
    expect(registry.has('nope')).toBe(false);
    expect(() => registry.get('nope')).toThrow(MemoryNotFoundError);
    expect(() => registry.get('nope')).toThrow(
      'memory resource "nope" is not declared; known ids: agent-memory, chat-buffer, customer-support',
    );
  });

  it('throws one ConfigError listing every problem, one per line', async () => {
    await copyFile(path.join(INVALID, 'bad-type.yaml'), path.join(dir, 'a.yaml'));
    await copyFile(path.join(INVALID, 'bad-resource.yaml'), path.join(dir, 'b.yaml'));
    const error = await loadMemoryResources(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message.split('\n')).toEqual([
      `${path.join(dir, 'a.yaml')}: type: expected one of token_based, message_count_based, buffer, got "token_count"`,
      `${path.join(dir, 'b.yaml')}: resource: expected "memory", got "agent"`,
    ]);
  });

  it('rejects a missing directory with a ConfigError', async () => {
    const missing = path.join(dir, 'nope');
    await expect(loadMemoryResources(missing)).rejects.toThrow(ConfigError);
    await expect(loadMemoryResources(missing)).rejects.toThrow(
      `${missing}: expected a directory of memory resource files (*.yaml, *.yml), got nothing (the directory does not exist)`,
    );
  });

  it('rejects a directory without YAML files with a ConfigError', async () => {
    await mkdir(path.join(dir, 'sub.yaml'));
    await writeFile(path.join(dir, 'README.md'), '# not a memory');
    await expect(loadMemoryResources(dir)).rejects.toThrow(
      `${dir}: expected a directory of memory resource files (*.yaml, *.yml), got a directory with none`,
    );
  });
});

describe('privacy_policy action hash', () => {
  const HASHED = `${VALID_BASE}privacy_policy:\n  detectors: [email]\n  action: hash\n  hash_key_env: SUPPORT_PII_KEY\n`;
  const resource = () => parseMemoryResource(HASHED, 'memories/x.yaml').resource!;

  it('binds the key from the environment, and the same key pseudonymises alike', () => {
    const env = { SUPPORT_PII_KEY: 'k'.repeat(32) };
    const first = createMemoryRegistry([resource()], env).get('base').privacyPolicy!;
    const second = createMemoryRegistry([resource()], env).get('base').privacyPolicy!;
    expect(first.pseudonym!('jane@example.com')).toBe(second.pseudonym!('jane@example.com'));
    expect(JSON.stringify(first)).not.toContain('k'.repeat(32));
  });

  it('refuses to load without the key, naming the variable and never a value', () => {
    expect(() => createMemoryRegistry([resource()], {})).toThrow(
      'memories/x.yaml: privacy_policy.hash_key_env: environment variable SUPPORT_PII_KEY is not set (action hash needs a key shared by producers and workers)',
    );
    expect(() => createMemoryRegistry([resource()], { SUPPORT_PII_KEY: 'secret-short' })).toThrow(
      'memories/x.yaml: privacy_policy.hash_key_env: expected SUPPORT_PII_KEY to hold at least 16 characters, got 12',
    );
  });

  it('rejects a pattern that would match its own pseudonyms', () => {
    const { problems } = parseMemoryResource(
      `${VALID_BASE}privacy_policy:\n  redact_patterns: ['[0-9a-f]{16}']\n  action: hash\n`,
      'memories/x.yaml',
    );
    expect(problems.map((p) => p.message)).toEqual([
      'memories/x.yaml: privacy_policy.action: expected patterns that do not match a hash pseudonym such as pii_0f1e2d3c4b5a6978 (rule 0 does, so hashing would not be idempotent), got hash',
    ]);
  });
});
