import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import {
  createMemoryRegistry,
  loadMemoryResources,
  parseMemoryResource,
} from '../../../src/config/load-memories.js';
import {
  MEMORY_RESOURCE_KEYS,
  UNSUPPORTED_MEMORY_FIELDS,
  UNSUPPORTED_MEMORY_VALUES,
} from '../../../src/config/memory-resource-schema.js';
import { applyPrivacy } from '../../../src/core/privacy.js';

const BASE = `resource: memory
id: base
type: token_based
max_tokens: 4000
persistence:
  type: redis
  ttl: 24h
`;
const HASH = `privacy_policy:\n  detectors: [email]\n  action: hash\n  hash_key_env: PII_KEY\n`;

const problemsOf = (source: string) =>
  parseMemoryResource(source, 'memories/x.yaml').problems.map((p) => p.message);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'memq-fields-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('fields memq refuses at load', () => {
  // [what, YAML added to BASE (or replacing its persistence), field path, line of the field]
  const cases: [string, string, string, number][] = [
    ['locking.append_ttl', `${BASE}locking:\n  append_ttl: 30s\n`, 'locking.append_ttl', 9],
    [
      'token_allocation.user_defined',
      `${BASE}token_allocation:\n  short_term: 0.5\n  long_term: 0.3\n  system: 0.1\n  user_defined:\n    tools: 0.1\n`,
      'token_allocation.user_defined',
      12,
    ],
    [
      'token_provider.settings',
      `${BASE}token_provider:\n  model: gpt-4o\n  settings:\n    region: eu\n`,
      'token_provider.settings',
      10,
    ],
    [
      'persistence.circuit_breaker',
      `${BASE}  circuit_breaker:\n    enabled: true\n`,
      'persistence.circuit_breaker',
      8,
    ],
  ];

  it.each(cases)('%s: names the file and path, says why and what to use', (field, source, at) => {
    expect(problemsOf(source)[0]).toBe(
      `memories/x.yaml: ${at}: ${UNSUPPORTED_MEMORY_FIELDS[field]}`,
    );
    expect(UNSUPPORTED_MEMORY_FIELDS[field]).toMatch(
      /^not supported by memq: .+; (use|give|remove|the supported)/,
    );
  });

  it.each(cases)('%s: reported on the line of the field', (_field, source, at, line) => {
    const { problems } = parseMemoryResource(source, 'memories/x.yaml');
    expect(problems.find((p) => p.path === at)?.line).toBe(line);
  });

  it('reports only the refusal, except that shares left without user_defined must still sum to 1', () => {
    for (const [field, source] of cases) {
      expect(problemsOf(source), field).toHaveLength(
        field === 'token_allocation.user_defined' ? 2 : 1,
      );
    }
    expect(problemsOf(cases[1]![1])[1]).toBe(
      'memories/x.yaml: token_allocation: expected short_term + long_term + system to sum to 1 (± 0.001), got 0.9 (0.5 + 0.3 + 0.1)',
    );
  });

  it('refuses locking.append_ttl, pointing at the locks memq takes', () => {
    expect(problemsOf(`${BASE}locking:\n  append_ttl: 30s\n`)).toEqual([
      'memories/x.yaml: locking.append_ttl: not supported by memq: appends commit atomically in one Lua script and take no lock; use locking.flush_ttl or locking.clear_ttl for the locks memq takes',
    ]);
  });

  it('refuses persistence.type in_memory, and any other store', () => {
    expect(problemsOf(BASE.replace('type: redis', 'type: in_memory'))).toEqual([
      'memories/x.yaml: persistence.type: not supported by memq: in_memory (every memory is stored in Redis); use type: redis with a ttl',
    ]);
    expect(problemsOf(BASE.replace('type: redis', 'type: postgres'))).toEqual([
      'memories/x.yaml: persistence.type: expected redis, got "postgres"',
    ]);
  });

  it('refuses privacy_scope user, saying what to use instead', () => {
    expect(problemsOf(`${BASE}${HASH}privacy_scope: user\n`)).toEqual([
      `memories/x.yaml: privacy_scope: ${UNSUPPORTED_MEMORY_VALUES.privacy_scope!.user}`,
    ]);
    expect(UNSUPPORTED_MEMORY_VALUES.privacy_scope!.user).toContain('use session');
  });

  it('refuses privacy_scope without a hash policy (nothing to scope)', () => {
    for (const policy of ['', 'privacy_policy:\n  detectors: [email]\n']) {
      expect(problemsOf(`${BASE}${policy}privacy_scope: session\n`)).toEqual([
        'memories/x.yaml: privacy_scope: expected only with privacy_policy.action: hash (privacy_scope scopes hash pseudonyms; redact, mask and drop make none), got "session"',
      ]);
    }
  });

  it('lists only supported keys, and no refused field among them', () => {
    for (const refused of Object.keys(UNSUPPORTED_MEMORY_FIELDS)) {
      const dot = refused.lastIndexOf('.');
      const parent = dot < 0 ? '' : refused.slice(0, dot);
      expect(MEMORY_RESOURCE_KEYS[parent], refused).not.toContain(refused.slice(dot + 1));
      expect(MEMORY_RESOURCE_KEYS[refused], refused).toBeUndefined();
    }
    expect(MEMORY_RESOURCE_KEYS['']).toContain('expiration');
    expect(MEMORY_RESOURCE_KEYS['']).toContain('privacy_scope');
    expect(MEMORY_RESOURCE_KEYS.token_allocation).toEqual(['short_term', 'long_term', 'system']);
  });

  it('makes loading fail with every refused field of a directory, file by file', async () => {
    await writeFile(path.join(dir, 'a.yaml'), `${BASE}locking:\n  append_ttl: 30s\n`);
    await writeFile(
      path.join(dir, 'b.yaml'),
      BASE.replace('id: base', 'id: other').replace('type: redis', 'type: in_memory'),
    );
    const error = await loadMemoryResources(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message.split('\n')).toEqual([
      `${path.join(dir, 'a.yaml')}: locking.append_ttl: ${UNSUPPORTED_MEMORY_FIELDS['locking.append_ttl']}`,
      `${path.join(dir, 'b.yaml')}: persistence.type: ${UNSUPPORTED_MEMORY_VALUES['persistence.type']!.in_memory}`,
    ]);
  });
});

describe('fields memq implements', () => {
  it('expiration: resolved to seconds; 0 means none; whole seconds only', () => {
    const parsed = (yaml: string) => parseMemoryResource(`${BASE}${yaml}`, 'memories/x.yaml');
    expect(parsed('expiration: 2s\n').resource?.expirationSeconds).toBe(2);
    expect(parsed('expiration: 7d\n').resource?.expirationSeconds).toBe(604_800);
    expect(parsed('expiration: 0\n').resource?.expirationSeconds).toBeUndefined();
    expect(parsed('').resource?.expirationSeconds).toBeUndefined();
    expect(parsed('expiration: 1500ms\n').problems.map((p) => p.message)).toEqual([
      'memories/x.yaml: expiration: expected 0 (none) or a duration like 500ms, 30s, 5m, 1h30m, 24h or 7d in whole seconds, got "1500ms"',
    ]);
  });

  it('privacy_scope session: the policy pseudonymises per memory instance', () => {
    const resource = parseMemoryResource(
      `${BASE}${HASH}privacy_scope: session\n`,
      'x.yaml',
    ).resource!;
    expect(resource.privacyScope).toBe('session');
    expect(resource.privacyPolicy?.scope).toBe('session');
    const policy = createMemoryRegistry([resource], { PII_KEY: 'k'.repeat(32) }).get(
      'base',
    ).privacyPolicy!;
    const hashed = (key: string) =>
      applyPrivacy(policy, [{ role: 'user' as const, content: 'jane@example.com' }], {
        project: 'p',
        resource: 'base',
        key,
      }).kept[0]!.content;
    expect(hashed('a')).toMatch(/^pii_[0-9a-f]{16}$/);
    expect(hashed('a')).not.toBe(hashed('b'));
  });

  it('privacy_scope global (the default) with hash: one pseudonym across instances', () => {
    for (const scope of ['', 'privacy_scope: global\n']) {
      const resource = parseMemoryResource(`${BASE}${HASH}${scope}`, 'x.yaml').resource!;
      expect(resource.privacyScope).toBe('global');
      const policy = createMemoryRegistry([resource], { PII_KEY: 'k'.repeat(32) }).get(
        'base',
      ).privacyPolicy!;
      const hashed = (key: string) =>
        applyPrivacy(policy, [{ role: 'user' as const, content: 'jane@example.com' }], {
          project: 'p',
          resource: 'base',
          key,
        }).kept[0]!.content;
      expect(hashed('a')).toBe(hashed('b'));
    }
  });

  it('token_allocation: short_term, long_term and system sum to 1', () => {
    const resource = parseMemoryResource(
      `${BASE}token_allocation:\n  short_term: 0.6\n  long_term: 0.3\n  system: 0.1\n`,
      'x.yaml',
    ).resource!;
    expect(resource.tokenAllocation).toEqual({ shortTerm: 0.6, longTerm: 0.3, system: 0.1 });
  });
});
