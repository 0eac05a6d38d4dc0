-- create_schedule.lua: store a new schedule and put its first
-- occurrence on the wheel; replay-safe.
--
-- The caller chooses the id before the call and computes the first
-- occurrence (Python reads cron), so a call sent twice (a retry after a
-- lost reply) finds its own record and answers C_EXISTS with the same
-- next occurrence, writing nothing. The record holds the version (v,
-- 1), the definition's chunks (d1..dN, N in d: Python alone reads
-- them) and the next occurrence (n); the id joins the shard's schedules
-- set scored by that instant (the one next occurrence on the wheel) and
-- the shard's set of every schedule (the listing's).
--
-- Runs at maxmemory: no. Its first write is the record's HSET, so a full
-- Redis refuses the call before anything is written.
--
-- KEYS[1] schedule record (hash)
-- KEYS[2] the shard's schedules set, by next occurrence (zset)
-- KEYS[3] the shard's set of every schedule (zset, by id)
-- ARGV[1] schedule id (16 bytes)
-- ARGV[2] the first occurrence, ms
-- ARGV[3..] the definition's chunks (at most 60 bytes each)
--
-- Returns {now_ms, code, next_ms}: C_DONE (created) or C_EXISTS (this
-- id exists: its next occurrence, '' when paused or ended; or deleted).

local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'v', 'n', 'z')
if rec[1] or rec[3] then
    return {now, C_EXISTS, rec[2] or ''}
end
redis.call('HSET', KEYS[1], 'v', 1, 'n', ARGV[2], 'd', #ARGV - 2)
for i = 3, #ARGV do
    redis.call('HSET', KEYS[1], 'd' .. (i - 2), ARGV[i])
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return {now, C_DONE, ARGV[2]}
