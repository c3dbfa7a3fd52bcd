-- context.lua: one page of the log from its newest end, for a context read
-- (src/store/context-read.ts), plus on the first page every pinned message.
-- KEYS: 1 ord, 2 msg, 3 tok, 4 meta, 5 pin
-- ARGV: 1 before id ('' = from the newest message), 2 limit (>= 1), 3 '1' on the first page:
--       return the pinned messages and the whole `meta`, else '0'
-- The page is the `limit` newest ids below `before` (keyset on the id, `ZRANGE BYLEX REV`), so
-- appends and flushes between pages shift nothing; it is returned in log (id) order.
-- Pinned messages (system, developer) are read from `pin`. An instance whose `pin` predates the
-- family (`meta.pins_indexed` absent) is indexed first, once: every body is scanned for a pinned
-- role (a plain-text test, then a JSON decode of the candidates), O(messages) inside Redis, and
-- `pin` takes `ord`'s expiry time. That is this script's only write.
-- Returns { ZCARD ord, ids, bodies (false = gone), token counts (false = uncounted),
--           approximation marks (false = exact or uncounted; empty without approximate counts),
--           1 when older messages exist else 0, epoch, created_at (false when absent),
--           flat meta HGETALL (first page only, else empty),
--           pinned ids, their bodies, counts and marks (first page only, else empty) }
local ord, msg, tok, meta, pin = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local before = ARGV[1]
local limit = tonumber(ARGV[2])
local first = ARGV[3] == '1'
local CHUNK = 1000 -- ids per HMGET: Lua's unpack has a stack limit
local approximate = redis.call('HEXISTS', meta, 'approximated_by') == 1

-- Bodies, counts and approximation marks of `ids`, appended to the three tables.
local function fetch(ids, bodies, counts, marks)
  for start = 1, #ids, CHUNK do
    local chunk = { unpack(ids, start, math.min(#ids, start + CHUNK - 1)) }
    for _, v in ipairs(redis.call('HMGET', msg, unpack(chunk))) do bodies[#bodies + 1] = v end
    for _, v in ipairs(redis.call('HMGET', tok, unpack(chunk))) do counts[#counts + 1] = v end
    if approximate then
      local fields = {}
      for i, id in ipairs(chunk) do fields[i] = '~' .. id end
      for _, v in ipairs(redis.call('HMGET', tok, unpack(fields))) do marks[#marks + 1] = v end
    end
  end
end

local newestFirst = redis.call('ZRANGE', ord, before == '' and '+' or '(' .. before, '-',
  'BYLEX', 'REV', 'LIMIT', 0, limit + 1)
local older = 0
if #newestFirst > limit then
  older = 1
  newestFirst[#newestFirst] = nil
end
local ids = {}
for i = #newestFirst, 1, -1 do ids[#ids + 1] = newestFirst[i] end
local bodies, counts, marks = {}, {}, {}
fetch(ids, bodies, counts, marks)

local metaFlat, pinIds, pinBodies, pinCounts, pinMarks = {}, {}, {}, {}, {}
if first then
  if redis.call('EXISTS', meta) == 1 and redis.call('HEXISTS', meta, 'pins_indexed') == 0 then
    local n = redis.call('ZCARD', ord)
    for start = 0, n - 1, CHUNK do
      local chunk = redis.call('ZRANGE', ord, start, start + CHUNK - 1)
      local chunkBodies = redis.call('HMGET', msg, unpack(chunk))
      for i, id in ipairs(chunk) do
        local body = chunkBodies[i]
        if body and (string.find(body, '"role":"system"', 1, true)
            or string.find(body, '"role":"developer"', 1, true)) then
          local ok, message = pcall(cjson.decode, body)
          if ok and type(message) == 'table'
              and (message.role == 'system' or message.role == 'developer') then
            redis.call('ZADD', pin, 0, id)
          end
        end
      end
    end
    redis.call('HSET', meta, 'pins_indexed', 1)
    local expiresAt = redis.call('PEXPIRETIME', ord)
    if expiresAt > 0 then redis.call('PEXPIREAT', pin, expiresAt) end
  end
  metaFlat = redis.call('HGETALL', meta)
  pinIds = redis.call('ZRANGE', pin, 0, -1)
  fetch(pinIds, pinBodies, pinCounts, pinMarks)
end
local epochAndCreated = redis.call('HMGET', meta, 'epoch', 'created_at')
return { redis.call('ZCARD', ord), ids, bodies, counts, marks, older, epochAndCreated[1],
  epochAndCreated[2], metaFlat, pinIds, pinBodies, pinCounts, pinMarks }
