-- get.lua: read a timer with Redis' clock, in one round trip.
--
-- A pending or firing timer has a record of its own; a finished one
-- (fired, failed, cancelled) is one field of the finished hash of its
-- id's hour.
--
-- Runs at maxmemory: yes (reads only).
--
-- KEYS[1] timer record (hash)
-- KEYS[2] finished hash of the id's hour
-- ARGV[1] timer id (16 bytes)
--
-- Returns one of
--   {now_ms, 'r', state, due_ms, attempts, next_ms or '', result or ''}
--   {now_ms, 'f', packed finished record}
--   {now_ms} when there is no such timer (never created, or expired)

local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 's', 'd', 'a', 'n', 'r')
if rec[1] then
    return {now, 'r', rec[1], rec[2], rec[3] or '0', rec[4] or '',
        rec[5] or ''}
end
local finished = redis.call('HGET', KEYS[2], ARGV[1])
if finished then
    return {now, 'f', finished}
end
return {now}
