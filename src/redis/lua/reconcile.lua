-- reconcile.lua: recompute an instance's counters from its log and drop orphaned entries.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta
-- ARGV: none
-- Effects: removes `tok`, `unc` and `msg` entries whose id is not in `ord` (orphans); sets
-- `message_count` = ZCARD ord, `token_count` = sum of `tok` for ids in `ord` + `summary_tokens`,
-- `estimated_tokens` = sum of `unc` scores for ids in `ord`. A field is written only when its
-- value differs, so a consistent instance is left byte-for-byte unchanged (a no-op). It changes
-- no message, summary, watermark, accounting count (accepted/folded/evicted), epoch or TTL: a
-- flush planned before stays valid, and reconciling is not activity.
-- A missing instance (no `meta`) is not touched and no key is created: returns { 'MISSING' }.
-- Cost: O(messages + orphans), every entry of ord/msg/tok/unc is read once.
-- Returns { 'OK', message_count before, after, token_count before, after,
--           estimated_tokens before, after, orphan tok, orphan unc, orphan msg,
--           ids in ord without a body (reported, not repairable here) }.
local ord, msg, tok, unc, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', meta) == 0 then
  return { 'MISSING' }
end

local function field(name)
  return tonumber(redis.call('HGET', meta, name) or '0')
end

local orphanTok, orphanUnc, orphanMsg, missingBodies = 0, 0, 0, 0
local tokSum, uncSum = 0, 0

local tokFlat = redis.call('HGETALL', tok)
for i = 1, #tokFlat, 2 do
  local id = tokFlat[i]
  if redis.call('ZSCORE', ord, id) then
    tokSum = tokSum + tonumber(tokFlat[i + 1])
  else
    redis.call('HDEL', tok, id)
    orphanTok = orphanTok + 1
  end
end

local uncFlat = redis.call('ZRANGE', unc, 0, -1, 'WITHSCORES')
for i = 1, #uncFlat, 2 do
  local id = uncFlat[i]
  if redis.call('ZSCORE', ord, id) then
    uncSum = uncSum + tonumber(uncFlat[i + 1])
  else
    redis.call('ZREM', unc, id)
    orphanUnc = orphanUnc + 1
  end
end

for _, id in ipairs(redis.call('HKEYS', msg)) do
  if not redis.call('ZSCORE', ord, id) then
    redis.call('HDEL', msg, id)
    orphanMsg = orphanMsg + 1
  end
end

for _, id in ipairs(redis.call('ZRANGE', ord, 0, -1)) do
  if redis.call('HEXISTS', msg, id) == 0 then
    missingBodies = missingBodies + 1
  end
end

local messageBefore, tokenBefore, estimatedBefore =
  field('message_count'), field('token_count'), field('estimated_tokens')
local messageAfter = redis.call('ZCARD', ord)
local tokenAfter = tokSum + field('summary_tokens')
local estimatedAfter = uncSum
if messageAfter ~= messageBefore then
  redis.call('HSET', meta, 'message_count', messageAfter)
end
if tokenAfter ~= tokenBefore then
  redis.call('HSET', meta, 'token_count', tokenAfter)
end
if estimatedAfter ~= estimatedBefore then
  redis.call('HSET', meta, 'estimated_tokens', estimatedAfter)
end

return {
  'OK', messageBefore, messageAfter, tokenBefore, tokenAfter, estimatedBefore, estimatedAfter,
  orphanTok, orphanUnc, orphanMsg, missingBodies,
}
