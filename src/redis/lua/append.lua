-- append.lua: atomically append a batch of messages to one memory instance.
-- KEYS: 1 ord, 2 msg, 3 unc, 4 meta, 5 seen, 6 tok, 7 acc (access stats: TTL slid only),
--       8 erased (the erasure tombstone: enqueue time of the latest delete or clear, ms),
--       9 pin (ids of pinned messages), 10 data (session data: TTL slid only)
-- ARGV: 1 ttlSeconds (0 = never expires), 2 nowMs, 3 token-count pending window ms,
--       4 enqueuedAtMs of the append job ('' = not a queued job: no tombstone check),
--       5 expirationSeconds, the instance's absolute lifetime ('' = keep `meta.expires_at` as it
--       is, 0 = none), then quadruples: id, message JSON, estimated tokens, pinned ('1' for a
--       system or developer message, else '0')
-- Returns: { added, duplicates, needTokenCount (0/1), message_count, erased }
-- A batch enqueued at or before the tombstone (same millisecond included: erasure wins a tie)
-- was accepted before a delete or clear that has since committed: it is refused whole (erased =
-- its size) and nothing is written, not even a key, so the instance is not recreated.
-- An id is a duplicate if it is in the idempotency window (seen) or still in the log, or if it
-- is at/below the summary watermark AND older than `meta.seen_floor_ms` (the accepted-at time
-- below which maintenance pruned `seen`, so its absence from `seen` proves nothing). A late
-- first-time id below the watermark (an append that committed after a flush planned without
-- it) is stored, not dropped: the next flush folds it. Duplicates change nothing.
-- A stored pinned message joins `pin`; an append that creates the instance marks it
-- `meta.pins_indexed` (its `pin` holds every pinned message of the log).
-- Lifetime: with an expiration, `meta.expires_at` = created_at + expiration (ms) and every key
-- family's TTL is capped at it (`PEXPIREAT ... LT`), so the sliding TTL never extends the
-- instance past it. An instance already past it (Redis expires keys lazily, or the expiration
-- was shortened) is removed first, session data included: the append starts a new instance.
local ord, msg, unc, meta, seen, tok = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ttl = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local pendingWindow = tonumber(ARGV[3])
local enqueuedAt = tonumber(ARGV[4])
local expiration = tonumber(ARGV[5])
local FIRST = 6 -- index of the first quadruple
if enqueuedAt then
  local erasedAt = tonumber(redis.call('GET', KEYS[8]) or '')
  if erasedAt and enqueuedAt <= erasedAt then
    return { 0, 0, 0, tonumber(redis.call('HGET', meta, 'message_count') or '0'),
      (#ARGV - FIRST + 1) / 4 }
  end
end

-- The end of the instance's lifetime under this call's expiration (ms), or nil for none.
local function lifetimeEnd()
  if expiration == nil then return tonumber(redis.call('HGET', meta, 'expires_at') or '') end
  local created = tonumber(redis.call('HGET', meta, 'created_at') or '')
  if expiration <= 0 or created == nil then return nil end
  return created + expiration * 1000
end
local ended = lifetimeEnd()
if ended and ended <= now then
  redis.call('DEL', ord, msg, unc, meta, seen, tok, KEYS[7], KEYS[9], KEYS[10])
end
local fresh = redis.call('EXISTS', meta, ord) == 0
local watermark = redis.call('HGET', meta, 'watermark') or ''
local seenFloor = tonumber(redis.call('HGET', meta, 'seen_floor_ms') or '0')

local CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
-- Milliseconds encoded in a ULID's first 10 characters (https://github.com/ulid/spec).
local function ulidTime(id)
  local t = 0
  for i = 1, 10 do
    t = t * 32 + (string.find(CROCKFORD, string.sub(id, i, i), 1, true) or 1) - 1
  end
  return t
end

local added, duplicates, estimated = 0, 0, 0
for i = FIRST, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('ZSCORE', seen, id) or redis.call('ZSCORE', ord, id)
      or (watermark ~= '' and id <= watermark and seenFloor > 0 and ulidTime(id) < seenFloor) then
    duplicates = duplicates + 1
  else
    local estimate = tonumber(ARGV[i + 2])
    redis.call('ZADD', seen, now, id)
    redis.call('ZADD', ord, 0, id)
    redis.call('HSET', msg, id, ARGV[i + 1])
    redis.call('ZADD', unc, estimate, id)
    if ARGV[i + 3] == '1' then redis.call('ZADD', KEYS[9], 0, id) end
    added = added + 1
    estimated = estimated + estimate
  end
end

local needTokenCount = 0
if added > 0 then
  redis.call('HINCRBY', meta, 'message_count', added)
  redis.call('HINCRBY', meta, 'accepted_count', added)
  redis.call('HINCRBY', meta, 'estimated_tokens', estimated)
  redis.call('HSETNX', meta, 'token_count', 0)
  redis.call('HSETNX', meta, 'epoch', 0)
  redis.call('HSETNX', meta, 'created_at', now)
  redis.call('HSET', meta, 'updated_at', now)
  if fresh then redis.call('HSET', meta, 'pins_indexed', 1) end
  local pendingAt = tonumber(redis.call('HGET', meta, 'token_count_pending_at') or '0')
  if now - pendingAt > pendingWindow then
    redis.call('HSET', meta, 'token_count_pending_at', now)
    needTokenCount = 1
  end
end

if expiration and redis.call('EXISTS', meta) == 1 then
  local ends = lifetimeEnd()
  if ends then redis.call('HSET', meta, 'expires_at', ends) else redis.call('HDEL', meta, 'expires_at') end
end
local deadline = tonumber(redis.call('HGET', meta, 'expires_at') or '')
for _, key in ipairs({ ord, msg, unc, meta, seen, tok, KEYS[7], KEYS[9], KEYS[10] }) do
  if ttl > 0 then
    redis.call('EXPIRE', key, ttl)
  else
    redis.call('PERSIST', key)
  end
  if deadline then redis.call('PEXPIREAT', key, deadline, 'LT') end
end

return { added, duplicates, needTokenCount, tonumber(redis.call('HGET', meta, 'message_count') or '0'), 0 }
