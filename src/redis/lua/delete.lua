-- delete.lua: remove every key family of an instance (not the lock, whose holder releases it, and
-- not the erasure tombstone, which this script raises).
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta, 6 seen, 7 acc, 8 erased (the erasure tombstone),
--       9 pin (ids of pinned messages), 10 data (session data)
-- ARGV: 1 requestedAtMs (the delete job's enqueue time), 2 tombstone TTL seconds (> 0)
-- The tombstone is raised to requestedAtMs (never lowered) with its TTL, even when the instance
-- does not exist yet: it is what refuses an append or write accepted before the delete and run
-- after it, since `seen` goes with the rest.
-- Session data is removed unless it was put after the delete was requested: `data['']` (the put
-- time, ms) > requestedAtMs keeps it (a tie goes to erasure), so a delete that waited in the
-- queue never erases a map put after it was asked for.
-- Returns { messages that were in the log, tombstone ms, 1 when session data was kept else 0 }.
local erasedAt = redis.call('GET', KEYS[8])
if not erasedAt or tonumber(ARGV[1]) > tonumber(erasedAt) then erasedAt = ARGV[1] end
redis.call('SET', KEYS[8], erasedAt, 'EX', ARGV[2])
local removed = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[9])
local putAt = tonumber(redis.call('HGET', KEYS[10], '') or '')
local kept = 0
if putAt and putAt > tonumber(ARGV[1]) then
  kept = 1
else
  redis.call('DEL', KEYS[10])
end
return { removed, tonumber(erasedAt), kept }
