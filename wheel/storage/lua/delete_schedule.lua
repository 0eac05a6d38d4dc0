-- delete_schedule.lua: delete a schedule, atomically against its
-- roller; replay-safe.
--
-- The record goes, and with it the schedule's next occurrence (its
-- member of the schedules set) and its place in the listing: no roll
-- can create an occurrence after this (a roll is a compare-and-set on
-- the record). Occurrences already handed to the workers are timers of
-- their own and complete as usual. A small marker (field z) is left in
-- the record's place for ARGV[2] ms, so a replay of this call (a lost
-- reply) or a second DELETE answers C_DONE again, as a cancel does.
--
-- Runs at maxmemory: yes (its first write is a ZREM).
--
-- KEYS[1] schedule record (hash)
-- KEYS[2] the shard's schedules set, by next occurrence (zset)
-- KEYS[3] the shard's set of every schedule (zset, by id)
-- ARGV[1] schedule id (16 bytes)
-- ARGV[2] how long the deletion marker lives, in ms
--
-- Returns {now_ms, code}: C_DONE (deleted, now or before) or
-- C_NOT_FOUND.

local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'v', 'z')
if rec[1] then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'z', 1)
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {now, C_DONE}
end
if rec[2] then
    return {now, C_DONE}
end
return {now, C_NOT_FOUND}
