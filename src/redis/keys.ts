/**
 * The only place that builds Redis key strings (docs/architecture.md, "Redis layout").
 *
 * Every key of one memory instance shares the hash tag `{<mid>}`, so every Lua script touching an
 * instance is cluster-safe. `<mid>` is `<project>/<resource>/<key>`; `{`, `}`, `/` and `%` inside
 * the parts are percent-encoded so user input cannot end the tag early or collide with another mid.
 */

import type { MemoryRef } from '../core/memory-key.js';

/**
 * One memory instance: `project`, `resource`, `key`, each validated before it gets here. The type
 * is derived from `MemoryRefSchema` (src/core/memory-key.ts) and re-exported for the layers above.
 */
export type { MemoryRef } from '../core/memory-key.js';

/** Key names of one instance's families (see {@link memoryKeys}). */
export interface MemoryKeys {
  /** ZSET, all scores 0: message ids in lexicographic (= time) order. */
  readonly ord: string;
  /** HASH: id -> message JSON. */
  readonly msg: string;
  /** HASH: id -> exact token count (absent = not counted yet). */
  readonly tok: string;
  /** ZSET: uncounted id -> append-time token estimate. */
  readonly unc: string;
  /** HASH: counters, summary, watermark, timestamps. */
  readonly meta: string;
  /** ZSET: id -> accepted-at ms, the idempotency window. */
  readonly seen: string;
  /** STRING: instance lock token. */
  readonly lock: string;
  /** HASH: message id -> `count:lastMs` of reads (only when `flushing.track_access` is on). */
  readonly acc: string;
  /**
   * STRING: the erasure tombstone, ms since epoch: the enqueue time of the latest delete or clear
   * job (`job.timestamp`, the producer's clock). `append.lua` and `write.lua` refuse a job enqueued
   * at or before it. Written by `delete.lua` and `clear.lua` with its own TTL (never lowered,
   * survives the delete that removes every other family).
   */
  readonly erased: string;
  /**
   * ZSET, all scores 0: ids of the log's pinned messages (`PINNED_ROLES`: system, developer), so a
   * context read finds them without reading the whole log. Complete once `meta.pins_indexed` is
   * set (every instance created, written or cleared since the family exists; an older instance is
   * indexed by its first context read, `context.lua`).
   */
  readonly pin: string;
  /**
   * HASH: the instance's session data, entry key -> value (at most 64 entries, keys 1..128
   * characters, values at most 4 KiB), plus the field `''` (never an entry key) holding when the
   * map was put, ms since epoch: a delete requested at or after that time removes it, an older
   * one keeps it.
   */
  readonly data: string;
}

/** Number of index shards (`<prefix>idx:0` .. `idx:15`). */
export const INDEX_SHARDS = 16;

const escapePart = (part: string): string =>
  part.replace(
    /[%{}/]/g,
    (ch) => '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'),
  );

/**
 * The memory id `<project>/<resource>/<key>` with `%`, `{`, `}` and `/` percent-encoded in each
 * part, so the string is unambiguous and safe inside a hash tag.
 */
export function memoryId(ref: MemoryRef): string {
  return [ref.project, ref.resource, ref.key].map(escapePart).join('/');
}

/**
 * Key names of one instance.
 * @param prefix Key prefix, e.g. `memq:` (tests use a unique prefix each).
 */
export function memoryKeys(prefix: string, ref: MemoryRef): MemoryKeys {
  const base = `${prefix}m:{${memoryId(ref)}}:`;
  return {
    ord: `${base}ord`,
    msg: `${base}msg`,
    tok: `${base}tok`,
    unc: `${base}unc`,
    meta: `${base}meta`,
    seen: `${base}seen`,
    lock: `${base}lock`,
    acc: `${base}acc`,
    erased: `${base}erased`,
    pin: `${base}pin`,
    data: `${base}data`,
  };
}

/**
 * The activity-index shard key for an instance: a ZSET of mid -> last activity ms that
 * maintenance scans. Sharded by FNV-1a of the mid (http://www.isthe.com/chongo/tech/comp/fnv/)
 * so no single key grows with every instance.
 */
export function indexKey(prefix: string, ref: MemoryRef): string {
  return indexShardKey(prefix, fnv1a(memoryId(ref)) % INDEX_SHARDS);
}

/**
 * The per-(project, resource) activity index: a ZSET of instance key -> last activity ms (the
 * same score as the instance's entry in its global shard, {@link indexKey}), read by the
 * instance listing. `<prefix>ridx:{<project>/<resource>}`, both parts percent-encoded as in
 * {@link memoryId}: one hash tag, so one Cluster slot, per project and resource, and never a
 * key of another project.
 */
export function resourceIndexKey(prefix: string, project: string, resource: string): string {
  return `${prefix}ridx:{${escapePart(project)}/${escapePart(resource)}}`;
}

/** The key of index shard `shard` (0-based, < {@link INDEX_SHARDS}). */
export function indexShardKey(prefix: string, shard: number): string {
  return `${prefix}idx:${shard}`;
}

/** Parses a mid produced by {@link memoryId} back into its ref. Returns undefined if malformed. */
export function parseMemoryId(mid: string): MemoryRef | undefined {
  const parts = mid.split('/');
  if (parts.length !== 3) return undefined;
  const [project, resource, key] = parts.map(decodeURIComponent) as [string, string, string];
  return { project, resource, key };
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
