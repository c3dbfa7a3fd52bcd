/**
 * Loads `memories/*.yaml` into frozen {@link MemoryResource}s: YAML (duplicate keys and syntax
 * errors are problems with line numbers) -> strict zod schema -> camelCase, deeply frozen
 * resources -> cross-file checks (duplicate ids). Every file is checked in one pass; problems are
 * collected, never thrown one at a time.
 */

import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError, MemoryNotFoundError } from '../core/errors.js';
import type { MemoryResource } from '../core/memory-resource.js';
import { createPseudonymizer, HASH_KEY_MIN_CHARS } from '../core/privacy.js';
import {
  explainUnknownKey,
  MEMORY_DEFAULTS,
  MemoryResourceFileSchema,
} from './memory-resource-schema.js';
import type { MemoryResourceFile } from './memory-resource-schema.js';

/** One thing wrong with a memory resource file (or the directory). */
export interface ConfigProblem {
  /** The file as reached from the given directory, e.g. `memories/support.yaml`. */
  readonly file: string;
  /** Dotted field path (`flushing.summarize_threshold`, `privacy_policy.redact_patterns[1]`); `''` for the whole file. */
  readonly path: string;
  /** 1-based line of the offending YAML node, when known. */
  readonly line?: number;
  /**
   * The one-line message users see: `<file>: <path>: <what is allowed>, got <what was found>`,
   * e.g. `memories/support.yaml: flushing.summarize_threshold: expected a number in (0, 1], got 1.5`.
   * YAML-level problems use `line N, column M` in place of the path.
   */
  readonly message: string;
}

/** The outcome of checking one file: the resource when valid, else at least one problem. */
export interface MemoryFileResult {
  /** The resolved, frozen resource; absent when there are problems. */
  readonly resource?: MemoryResource;
  /** Every problem found in the file, in document order. */
  readonly problems: readonly ConfigProblem[];
}

/** The outcome of checking a directory. */
export interface MemoryCheckResult {
  /** Valid resources (a file with problems or a duplicate id contributes none). */
  resources: MemoryResource[];
  /** Every problem of every file, files in name order. */
  problems: ConfigProblem[];
}

/** The loaded memory resources, frozen, looked up by id. */
export interface MemoryRegistry {
  /**
   * The resource with this id.
   * @throws MemoryNotFoundError when no file declares `id`; the message names it and the known ids.
   */
  get(id: string): MemoryResource;
  /** Whether a file declares `id`. */
  has(id: string): boolean;
  /** Every resource, sorted by id. */
  list(): readonly MemoryResource[];
}

const MEMORY_FILE = /\.ya?ml$/;

/**
 * Parses one memory resource file's text. Pure: no I/O.
 *
 * @param source The YAML text.
 * @param file The name used in problem messages (e.g. `memories/support.yaml`).
 * @returns The resource, or every problem found.
 */
export function parseMemoryResource(source: string, file: string): MemoryFileResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, uniqueKeys: true, prettyErrors: true });
  const yamlProblems = [...doc.errors, ...doc.warnings].map((error): ConfigProblem => {
    const position = error.linePos?.[0];
    const where = position ? `line ${position.line}, column ${position.col}` : '';
    const what = describeYamlError(error.code, error.message, source, error.pos[0]);
    return {
      file,
      path: '',
      ...(position ? { line: position.line } : {}),
      message: [file, where, what].filter((part) => part !== '').join(': '),
    };
  });
  if (yamlProblems.length > 0) return { problems: yamlProblems };

  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined) {
    return {
      problems: [
        problem(file, [], 'expected a mapping of memory resource keys, got an empty file'),
      ],
    };
  }
  const parsed = MemoryResourceFileSchema.safeParse(raw);
  if (!parsed.success) {
    const locate = (issuePath: readonly PropertyKey[]) => lineOf(doc, lineCounter, issuePath);
    return {
      problems: parsed.error.issues.flatMap((issue) => issueProblems(file, raw, issue, locate)),
    };
  }
  return { resource: deepFreeze(toMemoryResource(parsed.data, file)), problems: [] };
}

/**
 * Reads and parses one memory resource file. Never throws: a read error is a problem.
 *
 * @param filePath Path of the file; used as is in problem messages.
 */
export async function checkMemoryFile(filePath: string): Promise<MemoryFileResult> {
  let source: string;
  try {
    source = await readFile(filePath, 'utf8');
  } catch (error) {
    return {
      problems: [problem(filePath, [], `expected a readable file, got ${errorCode(error)}`)],
    };
  }
  return parseMemoryResource(source, filePath);
}

/**
 * Checks every `*.yaml` / `*.yml` file directly in `dir` (names sorted; dot-files and
 * subdirectories ignored) in one pass, then ids across files. Never throws for bad content: a
 * missing, non-directory or empty `dir` is reported as a problem too.
 *
 * @param dir The memories directory, e.g. `memories`.
 */
export async function checkMemoryResources(dir: string): Promise<MemoryCheckResult> {
  const names = await listMemoryFiles(dir);
  if (typeof names === 'string') return { resources: [], problems: [problem(dir, [], names)] };

  const results = await Promise.all(names.map((name) => checkMemoryFile(path.join(dir, name))));
  const resources: MemoryResource[] = [];
  const problems: ConfigProblem[] = [];
  const firstFileById = new Map<string, string>();
  for (const result of results) {
    problems.push(...result.problems);
    const resource = result.resource;
    if (resource === undefined) continue;
    const first = firstFileById.get(resource.id);
    if (first !== undefined) {
      problems.push(
        problem(
          resource.sourceFile,
          ['id'],
          `expected an id unique across ${dir}, got ${JSON.stringify(resource.id)} (also declared in ${first})`,
        ),
      );
      continue;
    }
    firstFileById.set(resource.id, resource.sourceFile);
    resources.push(resource);
  }
  return { resources, problems };
}

/**
 * Loads every memory resource in `dir` into a registry.
 *
 * @param dir The memories directory, e.g. `memories` (env `MEMQ_MEMORIES_DIR`).
 * @param env Where secrets named by the files are read (`privacy_policy.hash_key_env`); default
 *   none, so a resource with `action: hash` then fails to load.
 * @throws ConfigError when there is any problem (missing or empty directory, invalid file,
 *   duplicate id, missing hash key); the message lists every problem, one per line, and
 *   `details.problems` holds them.
 */
export async function loadMemoryResources(
  dir: string,
  env: Readonly<Record<string, string | undefined>> = {},
): Promise<MemoryRegistry> {
  const { resources, problems } = await checkMemoryResources(dir);
  if (problems.length > 0) {
    throw new ConfigError(problems.map((p) => p.message).join('\n'), { details: { problems } });
  }
  return createMemoryRegistry(resources, env);
}

/**
 * The resource with its `hash` pseudonym function bound to the key from `env`; unchanged for
 * other actions.
 * @throws ConfigError when the variable is unset or the key is shorter than 16 characters (the
 *   message names the variable, never the value).
 */
function withHashKey(
  resource: MemoryResource,
  env: Readonly<Record<string, string | undefined>>,
): MemoryResource {
  const policy = resource.privacyPolicy;
  if (policy?.action !== 'hash' || policy.pseudonym) return resource;
  const name = policy.hashKeyEnv ?? MEMORY_DEFAULTS.hashKeyEnv;
  const key = env[name];
  if (key === undefined || key === '') {
    throw new ConfigError(
      `${resource.sourceFile}: privacy_policy.hash_key_env: environment variable ${name} is not set (action hash needs a key shared by producers and workers)`,
    );
  }
  if (key.length < HASH_KEY_MIN_CHARS) {
    throw new ConfigError(
      `${resource.sourceFile}: privacy_policy.hash_key_env: expected ${name} to hold at least ${HASH_KEY_MIN_CHARS} characters, got ${key.length}`,
    );
  }
  return Object.freeze({
    ...resource,
    privacyPolicy: Object.freeze({ ...policy, pseudonym: createPseudonymizer(key) }),
  });
}

/**
 * Builds a frozen registry from resolved resources (for loaders and tests).
 *
 * @param env Where `privacy_policy.hash_key_env` keys are read; default none.
 * @throws ConfigError when two resources share an id, or a `hash` policy's key is missing or
 *   too short.
 */
export function createMemoryRegistry(
  input: readonly MemoryResource[],
  env: Readonly<Record<string, string | undefined>> = {},
): MemoryRegistry {
  const resources = input.map((resource) => withHashKey(resource, env));
  const byId = new Map<string, MemoryResource>();
  for (const resource of resources) {
    const existing = byId.get(resource.id);
    if (existing !== undefined) {
      throw new ConfigError(
        `${resource.sourceFile}: id: expected a unique id, got ${JSON.stringify(resource.id)} (also declared in ${existing.sourceFile})`,
      );
    }
    byId.set(resource.id, resource);
  }
  const sorted = Object.freeze(
    [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
  );
  return Object.freeze({
    get(id: string): MemoryResource {
      const resource = byId.get(id);
      if (resource === undefined) {
        const known = sorted.map((r) => r.id).join(', ') || '(none)';
        throw new MemoryNotFoundError(
          `memory resource ${JSON.stringify(id)} is not declared; known ids: ${known}`,
          {
            details: { id, known: sorted.map((r) => r.id) },
          },
        );
      }
      return resource;
    },
    has: (id: string) => byId.has(id),
    list: () => sorted,
  });
}

async function listMemoryFiles(dir: string): Promise<string[] | string> {
  const allowed = 'expected a directory of memory resource files (*.yaml, *.yml)';
  try {
    if (!(await stat(dir)).isDirectory()) return `${allowed}, got a file`;
    const entries = await readdir(dir, { withFileTypes: true });
    const names = entries
      .filter(
        (entry) => entry.isFile() && MEMORY_FILE.test(entry.name) && !entry.name.startsWith('.'),
      )
      .map((entry) => entry.name)
      .sort();
    return names.length > 0 ? names : `${allowed}, got a directory with none`;
  } catch (error) {
    const code = errorCode(error);
    return `${allowed}, got ${code === 'ENOENT' ? 'nothing (the directory does not exist)' : code}`;
  }
}

function toMemoryResource(file: MemoryResourceFile, sourceFile: string): MemoryResource {
  const { flushing, persistence, locking, token_provider: provider } = file;
  return {
    id: file.id,
    ...(file.description !== undefined ? { description: file.description } : {}),
    ...(file.version !== undefined ? { version: file.version } : {}),
    type: file.type,
    ...(file.max_tokens !== undefined ? { maxTokens: file.max_tokens } : {}),
    ...(file.max_messages !== undefined ? { maxMessages: file.max_messages } : {}),
    ...(file.max_context_ratio !== undefined ? { maxContextRatio: file.max_context_ratio } : {}),
    ...(file.token_allocation
      ? {
          tokenAllocation: {
            shortTerm: file.token_allocation.short_term,
            longTerm: file.token_allocation.long_term,
            system: file.token_allocation.system,
          },
        }
      : {}),
    flushing: {
      type: flushing.type,
      summarizeThreshold: flushing.summarize_threshold,
      ...(flushing.summary_tokens !== undefined ? { summaryTokens: flushing.summary_tokens } : {}),
      summarizeOldestPercent: flushing.summarize_oldest_percent,
      targetRatio: flushing.target_ratio,
      trackAccess: flushing.track_access,
      ...(flushing.summarizer
        ? {
            summarizer: {
              endpoint: flushing.summarizer.endpoint,
              model: flushing.summarizer.model,
              ...(flushing.summarizer.api_key_env !== undefined
                ? { apiKeyEnv: flushing.summarizer.api_key_env }
                : {}),
              timeoutMs: flushing.summarizer.timeout_ms,
            },
          }
        : {}),
    },
    persistence: {
      type: persistence.type,
      ttlSeconds: (persistence.ttl ?? 0) / 1000,
    },
    ...(file.privacy_policy
      ? {
          privacyPolicy: {
            redactPatterns: file.privacy_policy.redact_patterns,
            detectors: file.privacy_policy.detectors,
            action: file.privacy_policy.action,
            nonPersistableMessageTypes: file.privacy_policy.non_persistable_message_types,
            defaultRedactionString: file.privacy_policy.default_redaction_string,
            hashKeyEnv: file.privacy_policy.hash_key_env,
            scope: file.privacy_scope,
          },
        }
      : {}),
    privacyScope: file.privacy_scope,
    ...(file.expiration ? { expirationSeconds: file.expiration / 1000 } : {}),
    locking: {
      clearTtlMs: locking.clear_ttl,
      flushTtlMs: locking.flush_ttl,
    },
    tokenProvider: {
      provider: provider.provider,
      model: provider.model,
      ...(provider.api_key_env !== undefined ? { apiKeyEnv: provider.api_key_env } : {}),
      ...(provider.endpoint !== undefined ? { endpoint: provider.endpoint } : {}),
    },
    ...(file.default_key_template !== undefined
      ? { defaultKeyTemplate: file.default_key_template }
      : {}),
    sourceFile,
  };
}

function issueProblems(
  file: string,
  raw: unknown,
  issue: z.core.$ZodIssue,
  locate: (issuePath: readonly PropertyKey[]) => number | undefined,
): ConfigProblem[] {
  if (issue.code === 'unrecognized_keys') {
    const holder = valueAt(raw, issue.path);
    return issue.keys.flatMap((key) =>
      explainUnknownKey(
        issue.path.map(pathSegment),
        key,
        isRecord(holder) ? holder[key] : undefined,
      ).map((unknown) => problem(file, unknown.path, unknown.message, locate(unknown.path))),
    );
  }
  const params =
    issue.code === 'custom'
      ? (issue.params as { got?: unknown; refused?: boolean } | undefined)
      : undefined;
  if (params?.refused === true) {
    // A refused value: the message names it and says what to use instead.
    return [problem(file, issue.path.map(pathSegment), issue.message, locate(issue.path))];
  }
  const got =
    typeof params?.got === 'string' ? params.got : describeValue(valueAt(raw, issue.path));
  return [
    problem(file, issue.path.map(pathSegment), `${issue.message}, got ${got}`, locate(issue.path)),
  ];
}

function problem(
  file: string,
  fieldPath: readonly (string | number)[],
  what: string,
  line?: number,
): ConfigProblem {
  const dotted = formatPath(fieldPath);
  return {
    file,
    path: dotted,
    ...(line !== undefined ? { line } : {}),
    message: dotted === '' ? `${file}: ${what}` : `${file}: ${dotted}: ${what}`,
  };
}

function formatPath(fieldPath: readonly (string | number)[]): string {
  return fieldPath.reduce<string>(
    (text, segment) =>
      typeof segment === 'number'
        ? `${text}[${segment}]`
        : text === ''
          ? segment
          : `${text}.${segment}`,
    '',
  );
}

function pathSegment(segment: PropertyKey): string | number {
  return typeof segment === 'number' ? segment : String(segment);
}

/**
 * The line of the deepest existing YAML node on `issuePath`: the line of its key when the path
 * ends at a key of a mapping (so a key whose value is a nested mapping is reported where it is
 * written), else of the value.
 */
function lineOf(
  doc: Document,
  lineCounter: LineCounter,
  issuePath: readonly PropertyKey[],
): number | undefined {
  const last = issuePath.at(-1);
  if (typeof last === 'string') {
    const holder: unknown =
      issuePath.length === 1
        ? doc.contents
        : doc.getIn(issuePath.slice(0, -1).map(pathSegment), true);
    if (isMap(holder)) {
      const pair = holder.items.find((item) => isScalar(item.key) && item.key.value === last);
      const range = isScalar(pair?.key) ? pair.key.range : undefined;
      if (range) return lineCounter.linePos(range[0]).line;
    }
  }
  for (let depth = issuePath.length; depth >= 0; depth--) {
    const node: unknown =
      depth === 0 ? doc.contents : doc.getIn(issuePath.slice(0, depth).map(pathSegment), true);
    const range = isRecord(node) ? node.range : undefined;
    if (Array.isArray(range) && typeof range[0] === 'number')
      return lineCounter.linePos(range[0]).line;
  }
  return undefined;
}

function valueAt(raw: unknown, issuePath: readonly PropertyKey[]): unknown {
  let value = raw;
  for (const segment of issuePath) {
    if (!isRecord(value) && !Array.isArray(value)) return undefined;
    value = (value as Record<PropertyKey, unknown>)[segment];
  }
  return value;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return `a ${typeof value}`;
}

function describeYamlError(code: string, message: string, source: string, offset: number): string {
  if (code === 'DUPLICATE_KEY') {
    const key =
      /^[^:\n]*/
        .exec(source.slice(offset))?.[0]
        .trim()
        .replace(/^["']|["']$/g, '') ?? '';
    return `expected each key once per mapping, got duplicate key ${JSON.stringify(key)}`;
  }
  // yaml's messages end with " at line L, column C:" plus a code excerpt; the position is ours.
  const first = message.split('\n')[0] ?? message;
  return `invalid YAML: ${first.replace(/ at line \d+, column \d+:?$/, '')}`;
}

function errorCode(error: unknown): string {
  return isRecord(error) && typeof error.code === 'string' ? error.code : String(error);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
