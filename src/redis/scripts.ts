import { readFileSync } from 'node:fs';
import type { RedisConnection } from './connection.js';

/**
 * memq's Lua commit scripts, registered on an ioredis client with `defineCommand`: ioredis sends
 * EVALSHA and falls back to EVAL (which loads the script) on NOSCRIPT, so each script's body
 * crosses the wire once per connection (and again only after a Redis restart or SCRIPT FLUSH).
 * `numberOfKeys: undefined` means a variable number of keys: the caller passes the count first.
 */
export const SCRIPTS = {
  memqAppend: { file: 'append.lua', numberOfKeys: 10 },
  memqCommitTokens: { file: 'commit-tokens.lua', numberOfKeys: 4 },
  memqUncounted: { file: 'uncounted.lua', numberOfKeys: 3 },
  memqRead: { file: 'read.lua', numberOfKeys: 5 },
  memqApplyFlush: { file: 'apply-flush.lua', numberOfKeys: 9 },
  memqWrite: { file: 'write.lua', numberOfKeys: 10 },
  memqClear: { file: 'clear.lua', numberOfKeys: 8 },
  memqDelete: { file: 'delete.lua', numberOfKeys: 10 },
  memqInspect: { file: 'inspect.lua', numberOfKeys: 7 },
  memqReconcile: { file: 'reconcile.lua', numberOfKeys: 5 },
  memqPruneSeen: { file: 'prune-seen.lua', numberOfKeys: 3 },
  memqPutData: { file: 'put-data.lua', numberOfKeys: 9 },
  memqContext: { file: 'context.lua', numberOfKeys: 5 },
  memqScrubJobs: { file: 'scrub-jobs.lua', numberOfKeys: undefined },
  memqReplaceJobData: { file: 'replace-job-data.lua', numberOfKeys: 1 },
} as const;

/** Names of the registered script commands. */
export type ScriptName = keyof typeof SCRIPTS;

/** A client with memq's script commands registered. */
export type ScriptedRedis = RedisConnection & {
  [K in ScriptName]: (...args: (string | number)[]) => Promise<unknown>;
};

const sources = new Map<string, string>();

function source(file: string): string {
  let text = sources.get(file);
  if (text === undefined) {
    text = readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
    sources.set(file, text);
  }
  return text;
}

/** Registers every memq script on `client` (idempotent) and returns it typed. */
export function withScripts(client: RedisConnection): ScriptedRedis {
  const scripted = client as ScriptedRedis;
  for (const [name, spec] of Object.entries(SCRIPTS)) {
    if (typeof (scripted as unknown as Record<string, unknown>)[name] !== 'function') {
      client.defineCommand(name, { numberOfKeys: spec.numberOfKeys, lua: source(spec.file) });
    }
  }
  return scripted;
}

/**
 * Loads every memq script into the server's script cache (`SCRIPT LOAD`, idempotent): the
 * readiness probe's proof that Redis accepts and compiles them. Resolves with how many loaded.
 * @throws the server's error when a script does not compile or Redis is unreachable.
 */
export async function loadScripts(client: RedisConnection): Promise<number> {
  const shas = await Promise.all(
    Object.values(SCRIPTS).map(
      (spec) => client.script('LOAD', source(spec.file)) as Promise<string>,
    ),
  );
  return shas.length;
}
