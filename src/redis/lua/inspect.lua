-- inspect.lua: read-only snapshot for stats and health.
-- KEYS: 1 ord, 2 msg, 3 meta, 4 lock, 5 unc, 6 tok
-- ARGV: 1 '1' for a deep check: role counts and the sum of exact counts (O(messages)); '0' skips
-- Returns { ZCARD ord, flat meta HGETALL, TTL of meta (s; -1 none, -2 missing), lock held (0/1),
--           ZCARD unc, flat role counts, sum of tok (-1 when not deep) }
local ord, msg, meta, lock, unc, tok = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local roles = {}
local tokSum = -1
if ARGV[1] == '1' then
  tokSum = 0
  for _, count in ipairs(redis.call('HVALS', tok)) do
    tokSum = tokSum + tonumber(count)
  end
  local counts = {}
  for _, body in ipairs(redis.call('HVALS', msg)) do
    local role = string.match(body, '"role":"(%a+)"') or 'unknown'
    counts[role] = (counts[role] or 0) + 1
  end
  for role, count in pairs(counts) do
    roles[#roles + 1] = role
    roles[#roles + 1] = count
  end
end
return {
  redis.call('ZCARD', ord),
  redis.call('HGETALL', meta),
  redis.call('TTL', meta),
  redis.call('EXISTS', lock),
  redis.call('ZCARD', unc),
  roles,
  tokSum,
}
