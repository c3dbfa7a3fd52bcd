-- read.lua: a consistent snapshot of one page of the window plus the instance's meta.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 meta, 5 acc
-- ARGV: 1 offset (>= 0), 2 limit (>= 1), 3 record access (0/1), 4 nowMs,
--       5 also return access stats of the page (0/1)
-- With ARGV[3] = 1 every id returned gets its read count + 1 and last read = now in `acc`
-- (HASH id -> "count:lastMs"), which takes the expiry time of `ord` (absolute, so not a ms later;
-- so never past `meta.expires_at`, the end of the instance's lifetime: see append.lua).
-- Returns: { total, ids, message JSONs, token counts (false = uncounted), flat meta HGETALL,
--            access values of the ids (false = never read; empty unless ARGV[5] = 1),
--            approximation marks of the ids (false = exact or uncounted; empty when the instance
--            holds no approximate count), HLEN tok (counts + marks) }
local ord, msg, tok, meta, acc = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local record = ARGV[3] == '1'
local now = ARGV[4]
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
local access = {}
if #ids > 0 and ARGV[5] == '1' then
  access = redis.call('HMGET', acc, unpack(ids))
end
local marks = {}
if #ids > 0 and redis.call('HEXISTS', meta, 'approximated_by') == 1 then
  local fields = {}
  for i, id in ipairs(ids) do fields[i] = '~' .. id end
  marks = redis.call('HMGET', tok, unpack(fields))
end
if record and #ids > 0 then
  for _, id in ipairs(ids) do
    local count = tonumber(string.match(redis.call('HGET', acc, id) or '', '^(%d+):') or '0')
    redis.call('HSET', acc, id, (count + 1) .. ':' .. now)
  end
  local expiresAt = redis.call('PEXPIRETIME', ord)
  if expiresAt > 0 then redis.call('PEXPIREAT', acc, expiresAt) else redis.call('PERSIST', acc) end
end
return { total, ids, bodies, counts, redis.call('HGETALL', meta), access, marks,
  redis.call('HLEN', tok) }
