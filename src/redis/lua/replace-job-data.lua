-- replace-job-data.lua: compare-and-set of a BullMQ job hash's `data`.
-- KEYS: 1 the job hash
-- ARGV: 1 the data the caller read, 2 the data to write
-- Writes ARGV[2] only when the hash exists and its `data` is still exactly ARGV[1]. Returns 1
-- when written, 0 when the data changed (or the job is gone) since the caller read it.
if redis.call('HGET', KEYS[1], 'data') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1
