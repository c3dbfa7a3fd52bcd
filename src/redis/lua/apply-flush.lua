-- apply-flush.lua: commit a flush plan, fenced by the lock token and the epoch.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta, 6 lock, 7 acc, 8 pin (ids of pinned messages),
--       9 data (session data: TTL slid only)
-- ARGV: 1 lock token, 2 expected epoch, 3 ttlSeconds (0 = never expires), 4 nowMs,
--       5 summary JSON ('' = keep the current summary), 6 summary tokens,
--       7 new watermark id ('' = keep), 8 number of folded ids F,
--       9 how the new summary's tokens were approximated ('' = exact; ignored without a new
--       summary), then F folded ids (must be <= the new watermark), then evicted ids.
-- Effects: removes exactly the planned ids still in the log (their counts or estimates leave
-- the counters; an approximate count, marked `tok['~' .. id]`, also leaves approximate_tokens
-- and approximated_by; a pinned id also leaves `pin`, though no strategy plans one), replaces the summary (its tokens replace the old summary's in
-- token_count; summary_approximated_by is set or removed with it), raises the watermark,
-- counts folded/evicted, epoch + 1, slides the TTL (capped at `meta.expires_at`, the end of
-- the instance's lifetime, when it has one: see append.lua).
-- Returns { 'OK', removed folded, removed evicted, message_count, token_count, epoch } or
-- { 'LOCK_LOST' } / { 'EPOCH_CHANGED', current epoch } / { 'INVALID_PLAN', reason }
-- with nothing changed.
local ord, msg, tok, unc, meta, lock = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local acc = KEYS[7]
if redis.call('GET', lock) ~= ARGV[1] then
  return { 'LOCK_LOST' }
end
local epoch = tonumber(redis.call('HGET', meta, 'epoch') or '0')
if epoch ~= tonumber(ARGV[2]) then
  return { 'EPOCH_CHANGED', epoch }
end
local ttl = tonumber(ARGV[3])
local now = ARGV[4]
local summary = ARGV[5]
local summaryTokens = tonumber(ARGV[6])
local newWatermark = ARGV[7]
local folded = tonumber(ARGV[8])
local summaryApproximation = ARGV[9]
local FIRST = 10 -- index of the first folded id
local oldWatermark = redis.call('HGET', meta, 'watermark') or ''
if newWatermark ~= '' and newWatermark < oldWatermark then
  return { 'INVALID_PLAN', 'watermark would move backwards' }
end
local mark = newWatermark ~= '' and newWatermark or oldWatermark
for i = FIRST, FIRST + folded - 1 do
  if ARGV[i] > mark then
    return { 'INVALID_PLAN', 'folded id above the watermark: ' .. ARGV[i] }
  end
end
if folded > 0 and summary == '' and newWatermark == '' then
  return { 'INVALID_PLAN', 'folded messages need a summary and a watermark' }
end

local removedFolded, removedEvicted, counted, estimated, approximateTokens = 0, 0, 0, 0, 0
local approximated = nil -- approximation -> removed messages counted with it, when any
for i = FIRST, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', ord, id) == 1 then
    redis.call('HDEL', msg, id)
    redis.call('HDEL', acc, id)
    redis.call('ZREM', KEYS[8], id)
    local count = redis.call('HGET', tok, id)
    if count then
      counted = counted + tonumber(count)
      local approximation = redis.call('HGET', tok, '~' .. id)
      if approximation then
        approximateTokens = approximateTokens + tonumber(count)
        approximated = approximated or {}
        approximated[approximation] = (approximated[approximation] or 0) + 1
        redis.call('HDEL', tok, id, '~' .. id)
      else
        redis.call('HDEL', tok, id)
      end
    end
    local estimate = redis.call('ZSCORE', unc, id)
    if estimate then
      estimated = estimated + tonumber(estimate)
      redis.call('ZREM', unc, id)
    end
    if i < FIRST + folded then removedFolded = removedFolded + 1 else removedEvicted = removedEvicted + 1 end
  end
end

local removed = removedFolded + removedEvicted
redis.call('HINCRBY', meta, 'message_count', 0 - removed)
redis.call('HINCRBY', meta, 'token_count', 0 - counted)
redis.call('HINCRBY', meta, 'estimated_tokens', 0 - estimated)
if approximated then
  redis.call('HINCRBY', meta, 'approximate_tokens', 0 - approximateTokens)
  local by = cjson.decode(redis.call('HGET', meta, 'approximated_by') or '{}')
  local left = false
  for approximation, n in pairs(approximated) do
    local remaining = (by[approximation] or 0) - n
    if remaining > 0 then by[approximation] = remaining else by[approximation] = nil end
  end
  for _ in pairs(by) do left = true end
  if left then
    redis.call('HSET', meta, 'approximated_by', cjson.encode(by))
  else
    redis.call('HDEL', meta, 'approximated_by')
  end
end
redis.call('HINCRBY', meta, 'folded_count', removedFolded)
redis.call('HINCRBY', meta, 'evicted_count', removedEvicted)
if summary ~= '' then
  local oldSummaryTokens = tonumber(redis.call('HGET', meta, 'summary_tokens') or '0')
  redis.call('HINCRBY', meta, 'token_count', summaryTokens - oldSummaryTokens)
  redis.call('HSET', meta, 'summary', summary, 'summary_tokens', summaryTokens)
  if summaryApproximation ~= '' then
    redis.call('HSET', meta, 'summary_approximated_by', summaryApproximation)
  else
    redis.call('HDEL', meta, 'summary_approximated_by')
  end
end
if newWatermark ~= '' then
  redis.call('HSET', meta, 'watermark', newWatermark)
end
local newEpoch = redis.call('HINCRBY', meta, 'epoch', 1)
redis.call('HSET', meta, 'last_flush_at', now, 'updated_at', now)

local deadline = tonumber(redis.call('HGET', meta, 'expires_at') or '')
for _, key in ipairs({ ord, msg, tok, unc, meta, KEYS[8], KEYS[9] }) do
  if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
  if deadline then redis.call('PEXPIREAT', key, deadline, 'LT') end
end
return {
  'OK', removedFolded, removedEvicted,
  tonumber(redis.call('HGET', meta, 'message_count')),
  tonumber(redis.call('HGET', meta, 'token_count')),
  newEpoch,
}
