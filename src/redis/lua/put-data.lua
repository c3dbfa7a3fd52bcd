-- put-data.lua: replace an instance's session data (a small map beside the log).
-- KEYS: 1 data, 2 meta, 3 ord, 4 msg, 5 unc, 6 seen, 7 tok, 8 acc, 9 pin
-- ARGV: 1 ttlSeconds (0 = never expires), 2 nowMs (the put time), 3 expirationSeconds, the
--       instance's absolute lifetime ('' or 0 = none), then pairs: entry key, value (keys
--       1..128 characters, so never the reserved field '')
-- Effects: the map becomes exactly these entries plus `data['']` = nowMs, the put time that
-- delete.lua compares with a delete's request time. A put is activity on the instance: the TTL
-- of every key family (data included) is set as append.lua sets it (EXPIRE ttl, or PERSIST for
-- 0), capped at `meta.expires_at` (`PEXPIREAT ... LT`), the end of the instance's lifetime, so
-- the map and the log expire together and never after that end.
-- Lifetime: an instance already past `meta.expires_at` is removed first, as append.lua and
-- write.lua do. A put that finds no `meta` (a new instance, one holding only session data, or
-- one just deleted or removed here) starts the instance's lifetime as an append does:
-- `meta.created_at` = nowMs and, with an expiration, `meta.expires_at` = nowMs + expiration; and
-- `meta.pins_indexed` (its log is empty, so `pin` holds every pinned message of it). An existing
-- `meta` keeps its `expires_at` (a changed expiration reaches it at its next append or write).
-- No pair deletes the map, and a `meta` that only a put made (no log and no `epoch`: no append,
-- write or clear ever ran) goes with it: the instance is gone. TTLs are left as they are.
-- No tombstone check: a put is not a queued job; its order against a delete is its put time.
-- Returns the number of entries stored.
local data, meta = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local expiration = tonumber(ARGV[3])
local FIRST = 4 -- index of the first pair
local deadline = tonumber(redis.call('HGET', meta, 'expires_at') or '')
if deadline and deadline <= now then
  redis.call('DEL', meta, KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
  deadline = nil
end
redis.call('DEL', data)
local entries = (#ARGV - FIRST + 1) / 2
if entries == 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('HEXISTS', meta, 'epoch') == 0 then
    redis.call('DEL', meta)
  end
  return 0
end
if redis.call('EXISTS', meta) == 0 then
  redis.call('HSET', meta, 'created_at', now)
  -- Only an empty log is fully indexed; a log whose meta is gone (evicted) is indexed by the
  -- first context read, as a log stored before the index was.
  if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('HSET', meta, 'pins_indexed', 1) end
  if expiration and expiration > 0 then
    deadline = now + expiration * 1000
    redis.call('HSET', meta, 'expires_at', deadline)
  end
end
redis.call('HSET', data, '', ARGV[2], unpack(ARGV, FIRST))
for _, key in ipairs({ data, meta, KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9] }) do
  if ttl > 0 then
    redis.call('EXPIRE', key, ttl)
  else
    redis.call('PERSIST', key)
  end
  if deadline then redis.call('PEXPIREAT', key, deadline, 'LT') end
end
return entries
