-- inspect.lua: read-only snapshot for stats and health.
-- KEYS: 1 ord, 2 msg, 3 meta, 4 lock, 5 unc, 6 tok, 7 data (session data)
-- ARGV: 1 '1' for a deep check: role counts and a recount of `tok` (O(messages)); '0' skips
-- `tok` holds id -> token count and, for an approximate count, '~' .. id -> approximation.
-- Returns { ZCARD ord, flat meta HGETALL, TTL of meta (s; -1 none, -2 missing), lock held (0/1),
--           ZCARD unc, flat role counts, sum of the counts (-1 when not deep),
--           sum of the approximate counts (-1 when not deep),
--           flat approximation -> messages of the approximate counts (empty when not deep),
--           HLEN data (the entries plus the put-time field '', 0 without session data) }
-- A mark counts only with its count (a mark without one is an orphan reconcile removes).
local ord, msg, meta, lock, unc, tok = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local roles = {}
local tokSum, approximateSum = -1, -1
local approximated = {}
if ARGV[1] == '1' then
  tokSum, approximateSum = 0, 0
  local counts, marks = {}, {}
  local flat = redis.call('HGETALL', tok)
  for i = 1, #flat, 2 do
    local field = flat[i]
    if string.sub(field, 1, 1) == '~' then
      marks[string.sub(field, 2)] = flat[i + 1]
    else
      counts[field] = tonumber(flat[i + 1])
      tokSum = tokSum + counts[field]
    end
  end
  local byApproximation = {}
  for id, approximation in pairs(marks) do
    if counts[id] then
      approximateSum = approximateSum + counts[id]
      byApproximation[approximation] = (byApproximation[approximation] or 0) + 1
    end
  end
  for approximation, n in pairs(byApproximation) do
    approximated[#approximated + 1] = approximation
    approximated[#approximated + 1] = n
  end
  local roleCounts = {}
  for _, body in ipairs(redis.call('HVALS', msg)) do
    local role = string.match(body, '"role":"(%a+)"') or 'unknown'
    roleCounts[role] = (roleCounts[role] or 0) + 1
  end
  for role, count in pairs(roleCounts) do
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
  approximateSum,
  approximated,
  redis.call('HLEN', KEYS[7]),
}
