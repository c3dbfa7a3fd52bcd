-- delete.lua: remove every key family of an instance (not the lock, whose holder releases it).
-- KEYS: 1 ord, 2 msg, 3 tok, 4 unc, 5 meta, 6 seen, 7 acc
-- Returns the number of messages that were in the log.
local removed = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return removed
