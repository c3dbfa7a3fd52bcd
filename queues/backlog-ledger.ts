/**
 * The backlog ledger: messages and bytes of append and write jobs not yet started, in total and
 * per project, for producer backpressure (queues/backpressure.ts): the global message marks of the
 * gate (`BacklogLedger.backlog`) and the per-project and byte bounds (`backlogRefusal`). BullMQ
 * counts jobs but not their messages, size or tenant (with group commit one append job carries 1
 * to `MEMQ_APPEND_BATCH_MAX` messages), and reading every waiting job's data to measure it would
 * cost what it measures (up to 1 MiB per job).
 *
 * Keys, all under the queue prefix's hash tag, so one script reaches them and the job hashes on a
 * Redis Cluster (BullMQ's own scripts reach job hashes the same way):
 * - `<prefix>:backlog:ledger:<queue>` ZSET per queue ({@link LEDGER_QUEUES}), one member per
 *   recorded job, `<bytes>|<messages>|<project>|<job key>`, scored by Redis's clock when it was
 *   recorded (ms), so settling visits the oldest first (a member `<bytes>|<project>|<job key>`,
 *   recorded without a message count, counts 0 messages);
 * - `<prefix>:backlog:totals` HASH, `messages`, `messages:<project>`, `bytes`, `bytes:<project>`:
 *   the sums of the members (a field at 0 is deleted).
 *
 * It cannot drift for long: a producer records a job after BullMQ added it (idempotent: the member
 * is the job's own), and an entry leaves when its job has left the backlog, i.e. its hash is gone
 * (removed, or completed and cleaned) or carries `processedOn` (a worker took it; set by BullMQ's
 * `moveToActive`). Workers take a queue's jobs oldest first, so every check settles each ledger
 * from its oldest entry and stops after {@link CHECK_PENDING_RUN} entries in a row are still
 * waiting (at most {@link CHECK_SETTLE_ENTRIES}; {@link BACKLOG_SETTLE_ENTRIES} for the gate's
 * backlog read): a stuck backlog costs a check a few reads, a draining one removes what drained. The maintenance sweep settles every entry and recomputes the
 * totals from the members ({@link BacklogLedger.reconcile}). What is left: a job a producer added
 * but did not record (it crashed in between, or Redis failed the record) is not counted, and a
 * retried job is not counted again once a worker took it (both err on the side of admitting); a
 * job whose messages an erasure replaced by their ids still counts them until a worker takes it.
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
 * Entries of each ledger {@link BacklogLedger.backlog} examines at most, oldest first: the
 * reconcile page's bound on one script. The gate reads the backlog about every 250 ms per
 * process, so one producer process settles up to ~2,000 drained jobs a second this way (on top of
 * its checks), and a drained job is settled once whichever process reaches it.
 */
export const BACKLOG_SETTLE_ENTRIES = RECONCILE_PAGE_ENTRIES;

/**
 * `parse(member)`: bytes, messages, project and job key of a ledger member, or nil for a member of
 * neither form. `settle`: removes the entries among `entries` of `ledger` whose job left the
 * backlog, keeping the totals in step; with `stopAfter` > 0, stops after that many entries in a row
 * whose job still waits.
 */
const SETTLE_LUA = `
local function parse(member)
  local bytes, messages, project, jobKey = string.match(member, '^(%d+)|(%d+)|([^|]+)|(.+)$')
  if jobKey ~= nil then return tonumber(bytes), tonumber(messages), project, jobKey end
  bytes, project, jobKey = string.match(member, '^(%d+)|([^|]+)|(.+)$')
  if jobKey ~= nil then return tonumber(bytes), 0, project, jobKey end
  return nil
end
local function settle(ledger, totals, entries, stopAfter)
  local removed = 0
  local waiting = 0
  for _, member in ipairs(entries) do
    local bytes, messages, project, jobKey = parse(member)
    local gone = jobKey == nil or redis.call('EXISTS', jobKey) == 0
      or redis.call('HEXISTS', jobKey, 'processedOn') == 1
    if gone then
      waiting = 0
      redis.call('ZREM', ledger, member)
      removed = removed + 1
      if jobKey ~= nil then
        local fields = { 'messages', 'messages:' .. project, 'bytes', 'bytes:' .. project }
        local by = { messages, messages, bytes, bytes }
        for i = 1, 4 do
          if by[i] > 0 and redis.call('HINCRBY', totals, fields[i], -by[i]) <= 0 then
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
 * KEYS: totals, then the ledgers. ARGV: project (empty: none), entries to examine per ledger,
 * pending run. Settles each ledger from its oldest entry, then returns `[messages, bytes,
 * projectMessages, projectBytes]` (the project's as 0 without one).
 */
const CHECK_LUA = `${SETTLE_LUA}
local count = tonumber(ARGV[2])
for i = 2, #KEYS do
  settle(KEYS[i], KEYS[1], redis.call('ZRANGE', KEYS[i], 0, count - 1), tonumber(ARGV[3]))
end
local fields = { 'messages', 'bytes' }
if ARGV[1] ~= '' then
  fields[3] = 'messages:' .. ARGV[1]
  fields[4] = 'bytes:' .. ARGV[1]
end
local t = redis.call('HMGET', KEYS[1], unpack(fields))
return { tonumber(t[1]) or 0, tonumber(t[2]) or 0, tonumber(t[3]) or 0, tonumber(t[4]) or 0 }
`;

/**
 * KEYS: totals, ledger. ARGV: member, bytes, messages, project. Adds the entry once, scored by
 * Redis's clock.
 */
const RECORD_LUA = `
local now = redis.call('TIME')
local score = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if redis.call('ZADD', KEYS[2], 'NX', score, ARGV[1]) == 1 then
  local fields = { 'messages', 'messages:' .. ARGV[4], 'bytes', 'bytes:' .. ARGV[4] }
  local by = { ARGV[3], ARGV[3], ARGV[2], ARGV[2] }
  for i = 1, 4 do
    if tonumber(by[i]) > 0 then redis.call('HINCRBY', KEYS[1], fields[i], by[i]) end
  end
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
 * KEYS: totals, then the ledgers. Rewrites the totals as the sums of the members (fields at 0
 * left out); returns the member count.
 */
const RECOUNT_LUA = `${SETTLE_LUA}
local sums = {}
local count = 0
local function add(field, value) sums[field] = (sums[field] or 0) + value end
for i = 2, #KEYS do
  local entries = redis.call('ZRANGE', KEYS[i], 0, -1)
  count = count + #entries
  for _, member in ipairs(entries) do
    local bytes, messages, project = parse(member)
    if bytes ~= nil then
      add('messages', messages)
      add('messages:' .. project, messages)
      add('bytes', bytes)
      add('bytes:' .. project, bytes)
    end
  end
end
redis.call('DEL', KEYS[1])
for field, value in pairs(sums) do
  if value > 0 then redis.call('HSET', KEYS[1], field, string.format('%d', value)) end
end
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
   * Settles up to {@link CHECK_SETTLE_ENTRIES} entries of each ledger from its oldest (see the
   * module comment), then reads the totals, everyone's and `project`'s. One script call; changes
   * nothing but settled entries.
   * @throws the Redis error (never read as "empty").
   */
  check(project: string): Promise<BacklogUsage>;
  /**
   * Settles up to {@link BACKLOG_SETTLE_ENTRIES} entries of each ledger from its oldest, then
   * reads everyone's totals: the backlog the global high/low-water marks compare. One script call.
   * @returns `messages` and `bytes` of append and write jobs not yet started, every project.
   * @throws the Redis error (never read as "empty").
   */
  backlog(): Promise<Pick<BacklogUsage, 'messages' | 'bytes'>>;
  /**
   * Records a job BullMQ has added: its `messages` and the `bytes` of its data, for `project`.
   * Idempotent per job.
   * @param queueName The job's queue, one of {@link LEDGER_QUEUES}.
   * @param jobId The job's id.
   * @param usage `messages`: messages the job carries (all entries of an append job; a write's
   *   new log), an integer >= 0; `bytes`: UTF-8 bytes of the job's JSON data, an integer >= 0.
   * @throws RangeError when a count is not an integer >= 0 (nothing recorded).
   * @throws the Redis error.
   */
  record(
    queueName: LedgerQueue,
    jobId: string,
    project: string,
    usage: { readonly messages: number; readonly bytes: number },
  ): Promise<void>;
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
  const read = async (project: string, entries: number) =>
    (await redis.memqBacklogCheck(totals, ...allLedgers, project, entries, CHECK_PENDING_RUN)) as [
      number,
      number,
      number,
      number,
    ];
  return {
    async check(project) {
      const [messages, bytes, projectMessages, projectBytes] = await read(
        project,
        CHECK_SETTLE_ENTRIES,
      );
      return { messages, bytes, projectMessages, projectBytes };
    },

    async backlog() {
      const [messages, bytes] = await read('', BACKLOG_SETTLE_ENTRIES);
      return { messages, bytes };
    },

    async record(queueName, jobId, project, { messages, bytes }) {
      for (const [name, value] of [
        ['messages', messages],
        ['bytes', bytes],
      ] as const) {
        if (!(Number.isInteger(value) && value >= 0)) {
          throw new RangeError(`backlog ledger: ${name}: expected an integer >= 0, got ${value}`);
        }
      }
      const member = `${bytes}|${messages}|${project}|${queuePrefix}:${queueName}:${jobId}`;
      await redis.memqBacklogRecord(totals, ledgers[queueName], member, bytes, messages, project);
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
