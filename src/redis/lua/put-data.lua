-- put-data.lua: replace an instance's session data (a small map beside the log).
-- KEYS: 1 data, 2 meta, 3 ord, 4 msg, 5 unc, 6 seen, 7 tok, 8 acc, 9 pin
-- ARGV: 1 ttlSeconds (0 = never expires), 2 nowMs (the put time), then pairs: entry key, value
--       (keys 1..128 characters, so never the reserved field '')
-- Effects: the map becomes exactly these entries plus `data['']` = nowMs, the put time that
-- delete.lua compares with a delete's request time; no pair deletes the map. TTL as the other
-- families (EXPIRE ttl, or PERSIST for 0), capped at `meta.expires_at` (`PEXPIREAT ... LT`), the
-- end of the instance's lifetime (see append.lua). An instance already past that end is
-- removed first, as append.lua and write.lua do: the put starts a new instance.
-- No tombstone check: a put is not a queued job; its order against a delete is its put time.
-- Returns the number of entries stored.
local data, meta = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local deadline = tonumber(redis.call('HGET', meta, 'expires_at') or '')
if deadline and deadline <= now then
  redis.call('DEL', meta, KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
  deadline = nil
end
redis.call('DEL', data)
local entries = (#ARGV - 2) / 2
if entries == 0 then
  return 0
end
redis.call('HSET', data, '', ARGV[2], unpack(ARGV, 3))
if ttl > 0 then redis.call('EXPIRE', data, ttl) end
if deadline then redis.call('PEXPIREAT', data, deadline, 'LT') end
return entries
