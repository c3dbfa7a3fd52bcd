-- write.lua: atomically replace an instance's log with the given messages.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta, 6 seen, 7 acc, 8 erased (the erasure tombstone, ms),
--       9 pin (ids of pinned messages), 10 data (session data: kept, TTL set with the others)
-- ARGV: 1 ttlSeconds (0 = never expires), 2 nowMs, 3 enqueuedAtMs of the write job ('' = not a
--       queued job: no tombstone check), 4 expirationSeconds, the instance's absolute lifetime
--       ('' = keep `meta.expires_at` as it is, 0 = none), then quadruples: id, message JSON,
--       estimate, pinned ('1' for a system or developer message, else '0')
-- A write enqueued at or before the tombstone (a delete or clear requested after it has
-- committed; same millisecond included) changes nothing: returns { message_count, epoch, 1 }.
-- Effects: the log becomes exactly these messages (uncounted; the caller enqueues a token
-- count; approximate_tokens, approximated_by and summary_approximated_by removed), the
-- summary and watermark are removed, the accounting restarts (accepted = n,
-- folded = evicted = 0), the ids join the idempotency window, epoch + 1 (fences any flush
-- planned before), `pin` rebuilt and `meta.pins_indexed` set, TTL set on every family.
-- Returns { message_count, epoch, 0 (not refused) }.
-- Lifetime as in append.lua: created_at stays, every TTL is capped at `meta.expires_at`, and an
-- instance past it is removed first, session data included (the write starts a new instance).
local ord, msg, tok, unc, meta, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local enqueuedAt = tonumber(ARGV[3])
local expiration = tonumber(ARGV[4])
local FIRST = 5 -- index of the first quadruple
if enqueuedAt then
  local erasedAt = tonumber(redis.call('GET', KEYS[8]) or '')
  if erasedAt and enqueuedAt <= erasedAt then
    return { tonumber(redis.call('HGET', meta, 'message_count') or '0'),
      tonumber(redis.call('HGET', meta, 'epoch') or '0'), 1 }
  end
end
redis.call('DEL', KEYS[7]) -- access stats belong to the replaced log
local ttl = tonumber(ARGV[1])
local now = tonumber(ARGV[2])

-- The end of the instance's lifetime under this call's expiration (ms), or nil for none.
local function lifetimeEnd()
  if expiration == nil then return tonumber(redis.call('HGET', meta, 'expires_at') or '') end
  local created = tonumber(redis.call('HGET', meta, 'created_at') or '')
  if expiration <= 0 or created == nil then return nil end
  return created + expiration * 1000
end
local ended = lifetimeEnd()
if ended and ended <= now then
  redis.call('DEL', meta, seen, KEYS[10])
end

redis.call('DEL', ord, msg, tok, unc, KEYS[9])
local n, estimated = 0, 0
for i = FIRST, #ARGV, 4 do
  local id = ARGV[i]
  local estimate = tonumber(ARGV[i + 2])
  redis.call('ZADD', ord, 0, id)
  redis.call('HSET', msg, id, ARGV[i + 1])
  redis.call('ZADD', unc, estimate, id)
  redis.call('ZADD', seen, now, id)
  if ARGV[i + 3] == '1' then redis.call('ZADD', KEYS[9], 0, id) end
  n = n + 1
  estimated = estimated + estimate
end
redis.call('HDEL', meta, 'summary', 'watermark', 'token_count_pending_at', 'approximate_tokens',
  'approximated_by', 'summary_approximated_by')
redis.call('HSET', meta,
  'message_count', n, 'token_count', 0, 'estimated_tokens', estimated, 'summary_tokens', 0,
  'accepted_count', n, 'folded_count', 0, 'evicted_count', 0, 'updated_at', now,
  'pins_indexed', 1)
redis.call('HSETNX', meta, 'created_at', now)
local epoch = redis.call('HINCRBY', meta, 'epoch', 1)
if expiration then
  local ends = lifetimeEnd()
  if ends then redis.call('HSET', meta, 'expires_at', ends) else redis.call('HDEL', meta, 'expires_at') end
end
local deadline = tonumber(redis.call('HGET', meta, 'expires_at') or '')
for _, key in ipairs({ ord, msg, unc, meta, seen, KEYS[9], KEYS[10] }) do
  if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
  if deadline then redis.call('PEXPIREAT', key, deadline, 'LT') end
end
return { n, epoch, 0 }
