-- commit-tokens.lua: replace append-time estimates with token counts, exact or approximate.
-- KEYS: 1 ord, 2 tok, 3 unc, 4 meta
-- ARGV: 1 ttlSeconds (0 = never expires), then triples: id, token count, approximation (''
--       when the count is exact, else how it was approximated, e.g.
--       'o200k_base (approximation for claude-sonnet-4-5)')
-- Only ids still waiting in `unc` are committed; an id no longer in the log (flushed, cleared)
-- is just dropped from `unc`. An approximate count also writes its mark `tok['~' .. id]` =
-- approximation (ids are ULIDs, never starting with '~') and adds to `meta.approximate_tokens`
-- and to the approximation's entry of `meta.approximated_by` (JSON: approximation -> messages).
-- Returns { committed, token_count, estimated_tokens, messages in the log } (what the flush
-- trigger needs, so the caller does not read the memory again).
local ord, tok, unc, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl = tonumber(ARGV[1])
local committed, counted, estimateRemoved, approximateTokens = 0, 0, 0, 0
local approximated = nil -- approximation -> messages committed with it, when any
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  local estimate = redis.call('ZSCORE', unc, id)
  if estimate then
    redis.call('ZREM', unc, id)
    estimateRemoved = estimateRemoved + tonumber(estimate)
    if redis.call('ZSCORE', ord, id) and redis.call('HEXISTS', tok, id) == 0 then
      local count = tonumber(ARGV[i + 1])
      local approximation = ARGV[i + 2]
      if approximation == '' then
        redis.call('HSET', tok, id, count)
      else
        redis.call('HSET', tok, id, count, '~' .. id, approximation)
        approximateTokens = approximateTokens + count
        approximated = approximated or {}
        approximated[approximation] = (approximated[approximation] or 0) + 1
      end
      counted = counted + count
      committed = committed + 1
    end
  end
end
if estimateRemoved > 0 or counted > 0 then
  redis.call('HINCRBY', meta, 'token_count', counted)
  redis.call('HINCRBY', meta, 'estimated_tokens', 0 - estimateRemoved)
end
if approximated then
  redis.call('HINCRBY', meta, 'approximate_tokens', approximateTokens)
  local by = cjson.decode(redis.call('HGET', meta, 'approximated_by') or '{}')
  for approximation, n in pairs(approximated) do
    by[approximation] = (by[approximation] or 0) + n
  end
  redis.call('HSET', meta, 'approximated_by', cjson.encode(by))
end
if committed > 0 then
  -- `tok` may have just been created: give it the instance's expiry time (absolute, so not a ms
  -- later), not a fresh TTL, so it can never outlive `ord` and `meta`, nor the end of the
  -- instance's lifetime (`meta.expires_at`, which caps the TTL of `meta`: see append.lua).
  local expiresAt = redis.call('PEXPIRETIME', meta)
  if expiresAt > 0 then
    redis.call('PEXPIREAT', tok, expiresAt)
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
