/**
 * The backlog ledger: bytes and jobs of append and write job data not yet started, in total and
 * per project, for the byte and per-project bounds of producer backpressure (queues/backpressure.ts
 * `backlogRefusal`). BullMQ counts jobs but not their size or tenant, and reading every waiting
 * job's data to measure it would cost what it measures (up to 1 MiB per job).
 *
 * Keys, all under the queue prefix's hash tag, so one script reaches them and the job hashes on a
 * Redis Cluster (BullMQ's own scripts reach job hashes the same way):
 * - `<prefix>:backlog:ledger:<queue>` ZSET per queue ({@link LEDGER_QUEUES}), one member per
 *   recorded job, `<bytes>|<project>|<job key>`, scored by Redis's clock when it was recorded (ms),
 *   so settling visits the oldest first;
 * - `<prefix>:backlog:totals` HASH, `bytes`, `bytes:<project>`, `jobs:<project>`: the sums of the
 *   members (a field at 0 is deleted).
 *
 * It cannot drift for long: a producer records a job after BullMQ added it (idempotent: the member
 * is the job's own), and an entry leaves when its job has left the backlog, i.e. its hash is gone
 * (removed, or completed and cleaned) or carries `processedOn` (a worker took it; set by BullMQ's
 * `moveToActive`). Workers take a queue's jobs oldest first, so every check settles each ledger
 * from its oldest entry and stops after {@link CHECK_PENDING_RUN} entries in a row are still
 * waiting (at most {@link CHECK_SETTLE_ENTRIES}): a stuck backlog costs a check a few reads, a
 * draining one removes what drained. The maintenance sweep settles every entry and recomputes the
 * totals from the members ({@link BacklogLedger.reconcile}). What is left: a job a producer added
 * but did not record (it crashed in between, or Redis failed the record) is not counted, and a
 * retried job is not counted again once a worker took it (both err on the side of admitting).
 */
import type { RedisConnection } from '../src/redis/connection.js';
import type { BacklogUsage } from './backpressure.js';
import { QUEUES, type QueueName } from './names.js';

/** The queues whose jobs are recorded: appends (`memory-append`) and writes (`memory-cleanup`). */
export const LEDGER_QUEUES = [QUEUES.append, QUEUES.cleanup] as const;

/** Entries of each ledger a check examines at most, oldest first. */
export const CHECK_SETTLE_ENTRIES = 32;

/**
 * Entries in a row still waiting after which a check stops settling a ledger: more than one, so a
 * job recorded a moment after a younger one (two producers) does not stop the settling alone.
 */
export const CHECK_PENDING_RUN = 4;

/** Entries one reconcile page settles: bounds how long one script blocks Redis. */
export const RECONCILE_PAGE_ENTRIES = 500;

/**
 * Removes the entries among `entries` of `ledger` whose job left the backlog, keeping the totals
 * in step; with `stopAfter` > 0, stops after that many entries in a row whose job still waits.
 */
const SETTLE_LUA = `
local function settle(ledger, totals, entries, stopAfter)
  local removed = 0
  local waiting = 0
  for _, member in ipairs(entries) do
    local bytes, project, jobKey = string.match(member, '^(%d+)|([^|]+)|(.+)$')
    local gone = jobKey == nil or redis.call('EXISTS', jobKey) == 0
      or redis.call('HEXISTS', jobKey, 'processedOn') == 1
    if gone then
      waiting = 0
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
    else
      waiting = waiting + 1
      if stopAfter > 0 and waiting >= stopAfter then break end
    end
  end
  return removed
end
`;

/**
 * KEYS: totals, then the ledgers. ARGV: project, entries to examine per ledger, pending run.
 * Settles each ledger from its oldest entry, then returns `[bytes, projectBytes, projectJobs]`.
 */
const CHECK_LUA = `${SETTLE_LUA}
local count = tonumber(ARGV[2])
for i = 2, #KEYS do
  settle(KEYS[i], KEYS[1], redis.call('ZRANGE', KEYS[i], 0, count - 1), tonumber(ARGV[3]))
end
local t = redis.call('HMGET', KEYS[1], 'bytes', 'bytes:' .. ARGV[1], 'jobs:' .. ARGV[1])
return { tonumber(t[1]) or 0, tonumber(t[2]) or 0, tonumber(t[3]) or 0 }
`;

/** KEYS: totals, ledger. ARGV: member, bytes, project. Adds the entry once, scored by Redis's clock. */
const RECORD_LUA = `
local now = redis.call('TIME')
local score = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if redis.call('ZADD', KEYS[2], 'NX', score, ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'bytes:' .. ARGV[3], ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'jobs:' .. ARGV[3], 1)
  return 1
end
return 0
`;

/**
 * KEYS: totals, ledger. ARGV: first rank, entries. Settles one page; returns `[examined, removed]`
 * (the next page starts at `first + examined - removed`).
 */
const SETTLE_PAGE_LUA = `${SETTLE_LUA}
local first = tonumber(ARGV[1])
local entries = redis.call('ZRANGE', KEYS[2], first, first + tonumber(ARGV[2]) - 1)
return { #entries, settle(KEYS[2], KEYS[1], entries, 0) }
`;

/**
 * KEYS: totals, then the ledgers. Rewrites the totals as the sums of the members; returns the
 * member count.
 */
const RECOUNT_LUA = `
local sums = {}
local count = 0
for i = 2, #KEYS do
  local entries = redis.call('ZRANGE', KEYS[i], 0, -1)
  count = count + #entries
  for _, member in ipairs(entries) do
    local bytes, project = string.match(member, '^(%d+)|([^|]+)|')
    if bytes ~= nil then
      local b = tonumber(bytes)
      sums['bytes'] = (sums['bytes'] or 0) + b
      sums['bytes:' .. project] = (sums['bytes:' .. project] or 0) + b
      sums['jobs:' .. project] = (sums['jobs:' .. project] or 0) + 1
    end
  end
end
redis.call('DEL', KEYS[1])
for field, value in pairs(sums) do redis.call('HSET', KEYS[1], field, string.format('%d', value)) end
return count
`;

/** Script commands and their key counts (totals first; the ledgers of {@link LEDGER_QUEUES}). */
const COMMANDS = {
  memqBacklogCheck: { lua: CHECK_LUA, numberOfKeys: 1 + LEDGER_QUEUES.length },
  memqBacklogRecord: { lua: RECORD_LUA, numberOfKeys: 2 },
  memqBacklogSettlePage: { lua: SETTLE_PAGE_LUA, numberOfKeys: 2 },
  memqBacklogRecount: { lua: RECOUNT_LUA, numberOfKeys: 1 + LEDGER_QUEUES.length },
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
   * Settles each ledger from its oldest entry (see the module comment), then reads the totals for
   * `project`. One script call; changes nothing but settled entries.
   * @throws the Redis error (never read as "empty").
   */
  check(project: string): Promise<BacklogUsage>;
  /**
   * Records a job BullMQ has added: `bytes` of its data, for `project`. Idempotent per job.
   * @param queueName The job's queue, one of {@link LEDGER_QUEUES}.
   * @param jobId The job's id.
   * @param bytes UTF-8 bytes of the job's JSON data, >= 0.
   * @throws the Redis error.
   */
  record(queueName: LedgerQueue, jobId: string, project: string, bytes: number): Promise<void>;
  /**
   * Settles every entry (in pages of {@link RECONCILE_PAGE_ENTRIES}), then recomputes the totals
   * from the entries left: the periodic repair (the maintenance sweep calls it).
   * @throws the Redis error.
   */
  reconcile(): Promise<LedgerReconcile>;
  /** The raw totals hash (field -> number), for tests and inspection. */
  totals(): Promise<Record<string, number>>;
}

/** One of {@link LEDGER_QUEUES}. */
export type LedgerQueue = (typeof LEDGER_QUEUES)[number];

/**
 * The ledger keys of `queuePrefix` (a BullMQ prefix with a hash tag, e.g. `{memq}`).
 * @returns `totals` and the ledger of each of {@link LEDGER_QUEUES}.
 */
export function backlogLedgerKeys(queuePrefix: string): {
  totals: string;
  ledgers: Readonly<Record<LedgerQueue, string>>;
} {
  const ledger = (queue: QueueName) => `${queuePrefix}:backlog:ledger:${queue}`;
  return {
    totals: `${queuePrefix}:backlog:totals`,
    ledgers: { [QUEUES.append]: ledger(QUEUES.append), [QUEUES.cleanup]: ledger(QUEUES.cleanup) },
  };
}

/**
 * Creates the {@link BacklogLedger} of `queuePrefix` on `connection` (registers its scripts on the
 * connection with `defineCommand`: EVALSHA, falling back to EVAL, as src/redis/scripts.ts does).
 */
export function createBacklogLedger(
  connection: RedisConnection,
  queuePrefix: string,
): BacklogLedger {
  const redis = connection as LedgerRedis;
  for (const [name, { lua, numberOfKeys }] of Object.entries(COMMANDS)) {
    if (typeof (redis as unknown as Record<string, unknown>)[name] !== 'function') {
      connection.defineCommand(name, { numberOfKeys, lua });
    }
  }
  const { totals, ledgers } = backlogLedgerKeys(queuePrefix);
  const allLedgers = LEDGER_QUEUES.map((queue) => ledgers[queue]);
  return {
    async check(project) {
      const [bytes, projectBytes, projectJobs] = (await redis.memqBacklogCheck(
        totals,
        ...allLedgers,
        project,
        CHECK_SETTLE_ENTRIES,
        CHECK_PENDING_RUN,
      )) as [number, number, number];
      return { bytes, projectBytes, projectJobs };
    },

    async record(queueName, jobId, project, bytes) {
      const member = `${bytes}|${project}|${queuePrefix}:${queueName}:${jobId}`;
      await redis.memqBacklogRecord(totals, ledgers[queueName], member, bytes, project);
    },

    async reconcile() {
      let settled = 0;
      for (const ledger of allLedgers) {
        let first = 0;
        for (;;) {
          const [examined, removed] = (await redis.memqBacklogSettlePage(
            totals,
            ledger,
            first,
            RECONCILE_PAGE_ENTRIES,
          )) as [number, number];
          settled += removed;
          first += examined - removed;
          if (examined < RECONCILE_PAGE_ENTRIES) break;
        }
      }
      const entries = (await redis.memqBacklogRecount(totals, ...allLedgers)) as number;
      return { settled, entries };
    },

    async totals() {
      const fields = await connection.hgetall(totals);
      return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Number(v)]));
    },
  };
}
