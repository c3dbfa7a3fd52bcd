-- uncounted.lua: the messages still waiting for an exact token count, in one round trip.
-- KEYS: 1 unc, 2 msg, 3 meta
-- ARGV: 1 max ids to return (>= 1), 2 '1' to take the token-count burst first (clear
--       `token_count_pending_at`, so appends from now on open a new burst), else '0'
-- Returns { ids, bodies }: up to `max` ids from `unc` (smallest estimates first) and each id's
-- message JSON from `msg`, or nil where the body is gone (flushed or cleared since the append).
-- Taking the burst before reading keeps the order the token-count job relies on: an append
-- after this call either is read here or opens a new burst (and enqueues a new job).
local unc, msg, meta = KEYS[1], KEYS[2], KEYS[3]
if ARGV[2] == '1' then
  redis.call('HDEL', meta, 'token_count_pending_at')
end
local ids = redis.call('ZRANGE', unc, 0, tonumber(ARGV[1]) - 1)
if #ids == 0 then
  return { {}, {} }
end
return { ids, redis.call('HMGET', msg, unpack(ids)) }
