-- commit-tokens.lua: replace append-time estimates with exact token counts.
-- KEYS: 1 ord, 2 tok, 3 unc, 4 meta
-- ARGV: 1 ttlSeconds (0 = never expires), then pairs: id, exact token count
-- Only ids still waiting in `unc` are committed; an id no longer in the log (flushed, cleared)
-- is just dropped from `unc`. Returns { committed, token_count, estimated_tokens, messages in
-- the log } (what the flush trigger needs, so the caller does not read the memory again).
local ord, tok, unc, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl = tonumber(ARGV[1])
local committed, exact, estimateRemoved = 0, 0, 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local estimate = redis.call('ZSCORE', unc, id)
  if estimate then
    redis.call('ZREM', unc, id)
    estimateRemoved = estimateRemoved + tonumber(estimate)
    if redis.call('ZSCORE', ord, id) and redis.call('HEXISTS', tok, id) == 0 then
      local count = tonumber(ARGV[i + 1])
      redis.call('HSET', tok, id, count)
      exact = exact + count
      committed = committed + 1
    end
  end
end
if estimateRemoved > 0 or exact > 0 then
  redis.call('HINCRBY', meta, 'token_count', exact)
  redis.call('HINCRBY', meta, 'estimated_tokens', 0 - estimateRemoved)
end
if committed > 0 then
  -- `tok` may have just been created: give it the instance's remaining TTL, not a fresh one,
  -- so it can never outlive `ord` and `meta`.
  local remaining = redis.call('PTTL', meta)
  if remaining > 0 then
    redis.call('PEXPIRE', tok, remaining)
  elseif ttl > 0 then
    redis.call('EXPIRE', tok, ttl)
  end
end
return {
  committed,
  tonumber(redis.call('HGET', meta, 'token_count') or '0'),
  tonumber(redis.call('HGET', meta, 'estimated_tokens') or '0'),
  redis.call('ZCARD', ord),
}
