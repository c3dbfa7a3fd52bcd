-- prune-seen.lua: shrink the idempotency window of one instance and raise its floor.
-- KEYS: 1 seen, 2 ord, 3 meta
-- ARGV: 1 acceptedBeforeMs (ms since epoch; entries accepted strictly before it are pruned)
-- Effects: removes `seen` entries with accepted-at < acceptedBeforeMs, except ids still in `ord`
-- (a logged id is kept so it stays a duplicate however it later leaves the log); raises
-- `meta.seen_floor_ms` to acceptedBeforeMs, never lowers it. From then on append.lua treats an id
-- at/below the summary watermark whose ULID time is older than `seen_floor_ms` as a duplicate
-- even though its `seen` entry is gone. The floor is raised before anything is removed in the
-- same atomic step, so no append can observe a pruned entry without the floor covering it.
-- A missing instance (no `meta`) is not touched and no key is created: returns 0. TTLs are left
-- alone (pruning is not activity).
-- Cost: O(pruned candidates * log n).
-- Returns the number of `seen` entries removed.
local seen, ord, meta = KEYS[1], KEYS[2], KEYS[3]
local before = tonumber(ARGV[1])
if redis.call('EXISTS', meta) == 0 then
  return 0
end
local floor = tonumber(redis.call('HGET', meta, 'seen_floor_ms') or '0')
if before > floor then
  redis.call('HSET', meta, 'seen_floor_ms', ARGV[1])
end
local pruned = 0
for _, id in ipairs(redis.call('ZRANGE', seen, '-inf', '(' .. ARGV[1], 'BYSCORE')) do
  if not redis.call('ZSCORE', ord, id) then
    redis.call('ZREM', seen, id)
    pruned = pruned + 1
  end
end
return pruned
