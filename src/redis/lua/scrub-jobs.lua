-- scrub-jobs.lua: remove one memory instance's messages from BullMQ job hashes.
-- KEYS: job hashes (`<queue prefix>:<queue>:<job id>`), all of one queue prefix's hash tag
-- ARGV: 1 erasedAtMs (the instance's erasure tombstone), 2 project, 3 resource, 4 key,
--       5 the instance's ref as JSON (`{"project":..,"resource":..,"key":..}`)
-- A job hash is rewritten when it still exists, its `timestamp` (enqueue time, kept across
-- retries) is at or before erasedAtMs, and its `data` is JSON whose `ref` is exactly this
-- instance and which has a `messages` array: `data` becomes
-- `{"ref":<ARGV[5]>,"erased_ids":[<the messages' ids>]}` (ids are ULIDs: time and randomness,
-- no content). Anything else (another instance, a job enqueued after the erasure, a job already
-- scrubbed, a job removed meanwhile) is left alone. Returns the number of hashes rewritten.
local erasedAt = tonumber(ARGV[1])
local project, resource, key = ARGV[2], ARGV[3], ARGV[4]
local scrubbed = 0
for _, job in ipairs(KEYS) do
  local fields = redis.call('HMGET', job, 'data', 'timestamp')
  local data, enqueuedAt = fields[1], tonumber(fields[2])
  -- The plain-text search skips the JSON decode of every job of other instances.
  if data and enqueuedAt and enqueuedAt <= erasedAt and string.find(data, key, 1, true) then
    local ok, decoded = pcall(cjson.decode, data)
    local ref = ok and type(decoded) == 'table' and decoded.ref
    if type(ref) == 'table' and ref.project == project and ref.resource == resource
        and ref.key == key and type(decoded.messages) == 'table' then
      local ids = {}
      for _, message in ipairs(decoded.messages) do
        if type(message) == 'table' and type(message.id) == 'string' then
          ids[#ids + 1] = cjson.encode(message.id)
        end
      end
      redis.call('HSET', job, 'data',
        '{"ref":' .. ARGV[5] .. ',"erased_ids":[' .. table.concat(ids, ',') .. ']}')
      scrubbed = scrubbed + 1
    end
  end
end
return scrubbed
