-- clear.lua: empty an instance but keep its identity.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta, 6 acc
-- ARGV: 1 nowMs
-- Effects: removes every message, token count and the summary; counters become 0; epoch + 1
-- (fences any flush planned before). The idempotency window (`seen`) and the watermark stay,
-- so a late retry of a message accepted before the clear cannot bring it back.
-- Returns { messages removed, epoch }.
local ord, msg, tok, unc, meta, acc = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local removed = redis.call('ZCARD', ord)
redis.call('DEL', ord, msg, tok, unc, acc)
if redis.call('EXISTS', meta) == 0 then
  return { removed, 0 }
end
redis.call('HDEL', meta, 'summary', 'token_count_pending_at')
redis.call('HSET', meta,
  'message_count', 0, 'token_count', 0, 'estimated_tokens', 0, 'summary_tokens', 0,
  'accepted_count', 0, 'folded_count', 0, 'evicted_count', 0, 'updated_at', ARGV[1])
local epoch = redis.call('HINCRBY', meta, 'epoch', 1)
return { removed, epoch }
