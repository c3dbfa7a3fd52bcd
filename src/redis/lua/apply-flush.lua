-- apply-flush.lua: commit a flush plan, fenced by the lock token and the epoch.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta, 6 lock, 7 acc
-- ARGV: 1 lock token, 2 expected epoch, 3 ttlSeconds (0 = never expires), 4 nowMs,
--       5 summary JSON ('' = keep the current summary), 6 summary tokens,
--       7 new watermark id ('' = keep), 8 number of folded ids F,
--       then F folded ids (must be <= the new watermark), then evicted ids.
-- Effects: removes exactly the planned ids still in the log (their exact tokens or estimates
-- leave the counters), replaces the summary (its tokens replace the old summary's in
-- token_count), raises the watermark, counts folded/evicted, epoch + 1, slides the TTL.
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
local oldWatermark = redis.call('HGET', meta, 'watermark') or ''
if newWatermark ~= '' and newWatermark < oldWatermark then
  return { 'INVALID_PLAN', 'watermark would move backwards' }
end
local mark = newWatermark ~= '' and newWatermark or oldWatermark
for i = 9, 8 + folded do
  if ARGV[i] > mark then
    return { 'INVALID_PLAN', 'folded id above the watermark: ' .. ARGV[i] }
  end
end
if folded > 0 and summary == '' and newWatermark == '' then
  return { 'INVALID_PLAN', 'folded messages need a summary and a watermark' }
end

local removedFolded, removedEvicted, exact, estimated = 0, 0, 0, 0
for i = 9, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', ord, id) == 1 then
    redis.call('HDEL', msg, id)
    redis.call('HDEL', acc, id)
    local count = redis.call('HGET', tok, id)
    if count then
      exact = exact + tonumber(count)
      redis.call('HDEL', tok, id)
    end
    local estimate = redis.call('ZSCORE', unc, id)
    if estimate then
      estimated = estimated + tonumber(estimate)
      redis.call('ZREM', unc, id)
    end
    if i <= 8 + folded then removedFolded = removedFolded + 1 else removedEvicted = removedEvicted + 1 end
  end
end

local removed = removedFolded + removedEvicted
redis.call('HINCRBY', meta, 'message_count', 0 - removed)
redis.call('HINCRBY', meta, 'token_count', 0 - exact)
redis.call('HINCRBY', meta, 'estimated_tokens', 0 - estimated)
redis.call('HINCRBY', meta, 'folded_count', removedFolded)
redis.call('HINCRBY', meta, 'evicted_count', removedEvicted)
if summary ~= '' then
  local oldSummaryTokens = tonumber(redis.call('HGET', meta, 'summary_tokens') or '0')
  redis.call('HINCRBY', meta, 'token_count', summaryTokens - oldSummaryTokens)
  redis.call('HSET', meta, 'summary', summary, 'summary_tokens', summaryTokens)
end
if newWatermark ~= '' then
  redis.call('HSET', meta, 'watermark', newWatermark)
end
local newEpoch = redis.call('HINCRBY', meta, 'epoch', 1)
redis.call('HSET', meta, 'last_flush_at', now, 'updated_at', now)

for _, key in ipairs({ ord, msg, tok, unc, meta }) do
  if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
return {
  'OK', removedFolded, removedEvicted,
  tonumber(redis.call('HGET', meta, 'message_count')),
  tonumber(redis.call('HGET', meta, 'token_count')),
  newEpoch,
}
