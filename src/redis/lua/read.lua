-- read.lua: a consistent snapshot of one page of the window plus the instance's meta.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 meta
-- ARGV: 1 offset (>= 0), 2 limit (>= 1)
-- Returns: { total, ids, message JSONs, token counts (false = uncounted), flat meta HGETALL }
local ord, msg, tok, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local total = redis.call('ZCARD', ord)
local ids = {}
if offset < total then
  ids = redis.call('ZRANGE', ord, offset, offset + limit - 1)
end
local bodies, counts = {}, {}
if #ids > 0 then
  bodies = redis.call('HMGET', msg, unpack(ids))
  counts = redis.call('HMGET', tok, unpack(ids))
end
return { total, ids, bodies, counts, redis.call('HGETALL', meta) }
