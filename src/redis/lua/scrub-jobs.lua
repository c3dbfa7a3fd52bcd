-- scrub-jobs.lua: find the BullMQ job hashes that may carry one memory instance's messages.
-- KEYS: job hashes (`<queue prefix>:<queue>:<job id>`), all of one queue prefix's hash tag
-- ARGV: 1 erasedAtMs (the instance's erasure tombstone), 2 the instance's key field as JSON
--       writes it (`"key":"<key>"`, plain text)
-- A hash is a candidate when it still exists, its `timestamp` (enqueue time, kept across
-- retries) is at or before erasedAtMs and its `data` contains that key field (which skips
-- the jobs of other instances without decoding them). Returns a flat array
-- `{ job key, data, job key, data, ... }` of the candidates; the caller decodes each `data`
-- (JSON, as BullMQ stored it), rewrites the instance's entries and writes it back with
-- replace-job-data.lua, which checks that `data` did not change in between. Decoding and
-- re-encoding here would go through cjson, which turns an empty array into `{}` and rounds
-- numbers to 14 digits in the other entries' metadata.
local erasedAt = tonumber(ARGV[1])
local key = ARGV[2]
local found = {}
for _, job in ipairs(KEYS) do
  local fields = redis.call('HMGET', job, 'data', 'timestamp')
  local data, enqueuedAt = fields[1], tonumber(fields[2])
  if data and enqueuedAt and enqueuedAt <= erasedAt and string.find(data, key, 1, true) then
    found[#found + 1] = job
    found[#found + 1] = data
  end
end
return found
