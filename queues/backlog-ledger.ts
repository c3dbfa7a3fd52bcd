/**
 * The backlog ledger: bytes and jobs of append and write job data not yet started, in total and
 * per project, for the byte and per-project bounds of producer backpressure (queues/backpressure.ts
 * `backlogRefusal`). BullMQ counts jobs but not their size or tenant, and reading every waiting
 * job's data to measure it would cost what it measures (up to 1 MiB per job).
 *
 * Keys, all under the queue prefix's hash tag, so one script reaches them and the job hashes on a
 * Redis Cluster (BullMQ's own scripts reach job hashes the same way):
 * - `<prefix>:backlog:ledger` ZSET, one member per recorded job, `<bytes>|<project>|<job key>`,
 *   scored by when it was recorded (ms), so settling visits the oldest first;
 * - `<prefix>:backlog:totals` HASH, `bytes`, `bytes:<project>`, `jobs:<project>`: the sums of the
 *   members (a field at 0 is deleted).
 *
 * It cannot drift for long: a producer records a job after BullMQ added it (idempotent: the member
 * is the job's own), and an entry leaves when its job has left the backlog, i.e. its hash is gone
 * (removed, or completed and cleaned) or carries `processedOn` (a worker took it; set by BullMQ's
 * `moveToActive`). Every check settles the oldest {@link CHECK_SETTLE_ENTRIES} entries first (jobs
 * start roughly in the order they were added), and the maintenance sweep settles every entry and
 * recomputes the totals from the members ({@link BacklogLedger.reconcile}). What is left: a job a
 * producer added but did not record (it crashed in between, or Redis failed the record) is not
 * counted, and a retried job is not counted again once a worker took it (both err on the side of
 * admitting).
 */
import type { RedisConnection } from '../src/redis/connection.js';
import type { BacklogUsage } from './backpressure.js';

/** Ledger entries a check settles first, oldest first: a bounded cost per append (2 reads each). */
export const CHECK_SETTLE_ENTRIES = 32;

/** Entries one reconcile page settles: bounds how long one script blocks Redis. */
export const RECONCILE_PAGE_ENTRIES = 500;

/** Removes the entries among `entries` whose job left the backlog, keeping the totals in step. */
const SETTLE_LUA = `
local function settle(ledger, totals, entries)
  local removed = 0
  for _, member in ipairs(entries) do
    local bytes, project, jobKey = string.match(member, '^(%d+)|([^|]+)|(.+)$')
    local gone = jobKey == nil or redis.call('EXISTS', jobKey) == 0
      or redis.call('HEXISTS', jobKey, 'processedOn') == 1
    if gone then
      redis.call('ZREM', ledger, member)
      removed = removed + 1
      if jobKey ~= nil then
        local fields = { 'bytes', 'bytes:' .. project, 'jobs:' .. project }
        local by = { -tonumber(bytes), -tonumber(bytes), -1 }
        for i = 1, 3 do
          if redis.call('HINCRBY', totals, fields[i], by[i]) <= 0 then
            redis.call('HDEL', totals, fields[i])
          end
        end
      end
    end
  end
  return removed
end
`;

/**
 * KEYS: ledger, totals. ARGV: project, entries to settle. Settles the oldest entries, then returns
 * `[bytes, projectBytes, projectJobs]`.
 */
const CHECK_LUA = `${SETTLE_LUA}
settle(KEYS[1], KEYS[2], redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1))
local t = redis.call('HMGET', KEYS[2], 'bytes', 'bytes:' .. ARGV[1], 'jobs:' .. ARGV[1])
return { tonumber(t[1]) or 0, tonumber(t[2]) or 0, tonumber(t[3]) or 0 }
`;

/** KEYS: ledger, totals. ARGV: member, score, bytes, project. Adds the entry once. */
const RECORD_LUA = `
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'bytes', ARGV[3])
  redis.call('HINCRBY', KEYS[2], 'bytes:' .. ARGV[4], ARGV[3])
  redis.call('HINCRBY', KEYS[2], 'jobs:' .. ARGV[4], 1)
  return 1
end
return 0
`;

/**
 * KEYS: ledger, totals. ARGV: first rank, entries. Settles one page; returns `[examined, removed]`
 * (the next page starts at `first + examined - removed`).
 */
const SETTLE_PAGE_LUA = `${SETTLE_LUA}
local first = tonumber(ARGV[1])
local entries = redis.call('ZRANGE', KEYS[1], first, first + tonumber(ARGV[2]) - 1)
return { #entries, settle(KEYS[1], KEYS[2], entries) }
`;

/** KEYS: ledger, totals. Rewrites the totals as the sums of the members; returns the member count. */
const RECOUNT_LUA = `
local sums = {}
local entries = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, member in ipairs(entries) do
  local bytes, project = string.match(member, '^(%d+)|([^|]+)|')
  if bytes ~= nil then
    local b = tonumber(bytes)
    sums['bytes'] = (sums['bytes'] or 0) + b
    sums['bytes:' .. project] = (sums['bytes:' .. project] or 0) + b
    sums['jobs:' .. project] = (sums['jobs:' .. project] or 0) + 1
  end
end
redis.call('DEL', KEYS[2])
for field, value in pairs(sums) do redis.call('HSET', KEYS[2], field, string.format('%d', value)) end
return #entries
`;

const COMMANDS = {
  memqBacklogCheck: CHECK_LUA,
  memqBacklogRecord: RECORD_LUA,
  memqBacklogSettlePage: SETTLE_PAGE_LUA,
  memqBacklogRecount: RECOUNT_LUA,
} as const;

type LedgerRedis = RedisConnection & {
  [K in keyof typeof COMMANDS]: (...args: (string | number)[]) => Promise<unknown>;
};

/** What {@link BacklogLedger.reconcile} did. */
export interface LedgerReconcile {
  /** Entries removed because their job had left the backlog. */
  readonly settled: number;
  /** Entries left (jobs still waiting), whose sums are now the totals. */
  readonly entries: number;
}

/** The ledger of one BullMQ prefix (see the module comment). */
export interface BacklogLedger {
  /**
   * Settles the oldest {@link CHECK_SETTLE_ENTRIES} entries, then reads the totals for `project`.
   * One script call; changes nothing but settled entries.
   * @throws the Redis error (never read as "empty").
   */
  check(project: string): Promise<BacklogUsage>;
  /**
   * Records a job BullMQ has added: `bytes` of its data, for `project`. Idempotent per job.
   * @param queueName The job's queue, e.g. `memory-append`.
   * @param jobId The job's id.
   * @param bytes UTF-8 bytes of the job's JSON data, >= 0.
   * @throws the Redis error.
   */
  record(queueName: string, jobId: string, project: string, bytes: number): Promise<void>;
  /**
   * Settles every entry (in pages of {@link RECONCILE_PAGE_ENTRIES}), then recomputes the totals
   * from the entries left: the periodic repair (the maintenance sweep calls it).
   * @throws the Redis error.
   */
  reconcile(): Promise<LedgerReconcile>;
  /** The raw totals hash (field -> number), for tests and inspection. */
  totals(): Promise<Record<string, number>>;
}

/**
 * The ledger keys of `queuePrefix` (a BullMQ prefix with a hash tag, e.g. `{memq}`).
 * @returns `{ ledger, totals }` key names.
 */
export function backlogLedgerKeys(queuePrefix: string): { ledger: string; totals: string } {
  return { ledger: `${queuePrefix}:backlog:ledger`, totals: `${queuePrefix}:backlog:totals` };
}

/**
 * Creates the {@link BacklogLedger} of `queuePrefix` on `connection` (registers its scripts on the
 * connection with `defineCommand`: EVALSHA, falling back to EVAL, as src/redis/scripts.ts does).
 */
export function createBacklogLedger(
  connection: RedisConnection,
  queuePrefix: string,
  options: { now?: () => number } = {},
): BacklogLedger {
  const now = options.now ?? Date.now;
  const redis = connection as LedgerRedis;
  for (const [name, lua] of Object.entries(COMMANDS)) {
    if (typeof (redis as unknown as Record<string, unknown>)[name] !== 'function') {
      connection.defineCommand(name, { numberOfKeys: 2, lua });
    }
  }
  const { ledger, totals } = backlogLedgerKeys(queuePrefix);
  return {
    async check(project) {
      const [bytes, projectBytes, projectJobs] = (await redis.memqBacklogCheck(
        ledger,
        totals,
        project,
        CHECK_SETTLE_ENTRIES,
      )) as [number, number, number];
      return { bytes, projectBytes, projectJobs };
    },

    async record(queueName, jobId, project, bytes) {
      const member = `${bytes}|${project}|${queuePrefix}:${queueName}:${jobId}`;
      await redis.memqBacklogRecord(ledger, totals, member, now(), bytes, project);
    },

    async reconcile() {
      let settled = 0;
      let first = 0;
      for (;;) {
        const [examined, removed] = (await redis.memqBacklogSettlePage(
          ledger,
          totals,
          first,
          RECONCILE_PAGE_ENTRIES,
        )) as [number, number];
        settled += removed;
        first += examined - removed;
        if (examined < RECONCILE_PAGE_ENTRIES) break;
      }
      const entries = (await redis.memqBacklogRecount(ledger, totals)) as number;
      return { settled, entries };
    },

    async totals() {
      const fields = await connection.hgetall(totals);
      return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Number(v)]));
    },
  };
}
