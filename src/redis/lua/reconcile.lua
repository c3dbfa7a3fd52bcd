-- reconcile.lua: recompute an instance's counters from its log and drop orphaned entries.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta
-- ARGV: none
-- `tok` holds id -> token count and, for an approximate count, '~' .. id -> approximation.
-- Effects: removes `tok`, `unc` and `msg` entries whose id is not in `ord`, and approximation
-- marks without a count (orphans); sets `message_count` = ZCARD ord, `token_count` = sum of
-- `tok` counts for ids in `ord` + `summary_tokens`, `estimated_tokens` = sum of `unc` scores for
-- ids in `ord`, `approximate_tokens` = sum of the counts that have a mark, `approximated_by` =
-- JSON approximation -> marks (absent when none). A field is written only when its value
-- differs, so a consistent instance is left byte-for-byte unchanged (a no-op). It changes
-- no message, summary, watermark, accounting count (accepted/folded/evicted), epoch or TTL: a
-- flush planned before stays valid, and reconciling is not activity.
-- A missing instance (no `meta`) is not touched and no key is created: returns { 'MISSING' }.
-- Cost: O(messages + orphans), every entry of ord/msg/tok/unc is read once.
-- Returns { 'OK', message_count before, after, token_count before, after,
--           estimated_tokens before, after, orphan tok (counts and marks), orphan unc,
--           orphan msg, ids in ord without a body (reported, not repairable here),
--           approximate messages (sum of approximated_by) before, after,
--           approximate_tokens before, after, approximated_by rewritten (0/1) }.
local ord, msg, tok, unc, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', meta) == 0 then
  return { 'MISSING' }
end

local function field(name)
  return tonumber(redis.call('HGET', meta, name) or '0')
end

local orphanTok, orphanUnc, orphanMsg, missingBodies = 0, 0, 0, 0
local tokSum, uncSum, approximateSum, approximateMessages = 0, 0, 0, 0

local counts, marks = {}, {}
local tokFlat = redis.call('HGETALL', tok)
for i = 1, #tokFlat, 2 do
  local id = tokFlat[i]
  if string.sub(id, 1, 1) == '~' then
    marks[string.sub(id, 2)] = tokFlat[i + 1]
  elseif redis.call('ZSCORE', ord, id) then
    counts[id] = tonumber(tokFlat[i + 1])
    tokSum = tokSum + counts[id]
  else
    redis.call('HDEL', tok, id)
    orphanTok = orphanTok + 1
  end
end

local approximated = {}
for id, approximation in pairs(marks) do
  if counts[id] then
    approximateSum = approximateSum + counts[id]
    approximateMessages = approximateMessages + 1
    approximated[approximation] = (approximated[approximation] or 0) + 1
  else
    redis.call('HDEL', tok, '~' .. id)
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

local messageBefore, tokenBefore, estimatedBefore, approximateTokensBefore =
  field('message_count'), field('token_count'), field('estimated_tokens'),
  field('approximate_tokens')
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
if approximateSum ~= approximateTokensBefore then
  redis.call('HSET', meta, 'approximate_tokens', approximateSum)
end

-- approximated_by: compared entry by entry (JSON key order is not stable), rewritten on a
-- difference; an unparseable value counts as different.
local storedBy = redis.call('HGET', meta, 'approximated_by')
local ok, before = pcall(cjson.decode, storedBy or '{}')
if not ok or type(before) ~= 'table' then before = nil end
local approximateMessagesBefore, byDiffers = 0, before == nil
for approximation, n in pairs(before or {}) do
  approximateMessagesBefore = approximateMessagesBefore + (tonumber(n) or 0)
  if approximated[approximation] ~= n then byDiffers = true end
end
for approximation, n in pairs(approximated) do
  if before == nil or before[approximation] ~= n then byDiffers = true end
end
if storedBy and approximateMessages == 0 then
  redis.call('HDEL', meta, 'approximated_by')
  byDiffers = true
elseif byDiffers and approximateMessages > 0 then
  redis.call('HSET', meta, 'approximated_by', cjson.encode(approximated))
else
  byDiffers = false
end

return {
  'OK', messageBefore, messageAfter, tokenBefore, tokenAfter, estimatedBefore, estimatedAfter,
  orphanTok, orphanUnc, orphanMsg, missingBodies,
  approximateMessagesBefore, approximateMessages, approximateTokensBefore, approximateSum,
  byDiffers and 1 or 0,
}
