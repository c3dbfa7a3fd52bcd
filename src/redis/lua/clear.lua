-- clear.lua: empty an instance but keep its identity.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta, 6 acc, 7 erased (the erasure tombstone),
--       8 pin (ids of pinned messages)
-- ARGV: 1 nowMs, 2 requestedAtMs (the clear job's enqueue time), 3 tombstone TTL seconds (> 0)
-- Effects: raises the tombstone to requestedAtMs (never lowers it) and sets its TTL, even when the
-- instance does not exist yet (an append accepted before the clear may still be queued: the
-- tombstone refuses it); removes every message, token count (and approximation mark) and the
-- summary; counters become 0 (approximate_tokens, approximated_by and
-- summary_approximated_by are removed: absent reads as 0 / none);
-- epoch + 1 (fences any flush planned before); `pin` goes with the log and `meta.pins_indexed`
-- is set (an empty log is fully indexed). The idempotency window (`seen`) and the watermark
-- stay, so a late retry of a message accepted before the clear cannot bring it back. The
-- session data (`data`) is not conversation: it stays.
-- Returns { messages removed, epoch, tombstone ms }.
local ord, msg, tok, unc, meta, acc = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local erasedAt = redis.call('GET', KEYS[7])
if not erasedAt or tonumber(ARGV[2]) > tonumber(erasedAt) then erasedAt = ARGV[2] end
redis.call('SET', KEYS[7], erasedAt, 'EX', ARGV[3])
local removed = redis.call('ZCARD', ord)
redis.call('DEL', ord, msg, tok, unc, acc, KEYS[8])
if redis.call('EXISTS', meta) == 0 then
  return { removed, 0, tonumber(erasedAt) }
end
redis.call('HDEL', meta, 'summary', 'token_count_pending_at', 'approximate_tokens',
  'approximated_by', 'summary_approximated_by')
redis.call('HSET', meta,
  'message_count', 0, 'token_count', 0, 'estimated_tokens', 0, 'summary_tokens', 0,
  'accepted_count', 0, 'folded_count', 0, 'evicted_count', 0, 'updated_at', ARGV[1],
  'pins_indexed', 1)
local epoch = redis.call('HINCRBY', meta, 'epoch', 1)
return { removed, epoch, tonumber(erasedAt) }
