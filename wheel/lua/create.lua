-- create.lua: store a new timer and put it on the wheel.
--
-- The due time is Redis' own clock plus the delay. A timer already due
-- (delay 0) goes straight into the shard's ready stream.
--
-- The caller picks the slot from its estimate of Redis' clock, so that the
-- slot key can be declared in KEYS. The slot must be the due minute or the
-- one before it: an earlier slot only costs the ticker a look, a later one
-- would fire the timer late, so it is refused.
--
-- KEYS[1] timer record (hash)
-- KEYS[2] wheel slot (zset) of minute ARGV[3]
-- KEYS[3] slot index (zset)
-- KEYS[4] ready stream
-- ARGV[1] timer id
-- ARGV[2] url
-- ARGV[3] slot minute chosen by the caller
-- ARGV[4] delay in ms (>= 0)
--
-- Returns {code, now_ms, due_ms}: code 1 created, 0 the id exists already,
-- -1 the slot does not fit the due time (retry with a clock from now_ms).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delay = tonumber(ARGV[4])
local due = now + delay
local minute = tonumber(ARGV[3])
local due_minute = math.floor(due / 60000)

if delay > 0 and (minute > due_minute or minute < due_minute - 1) then
    return {-1, now, due}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
    return {0, now, due}
end

-- Only what is needed: every byte here is paid per pending timer. The
-- attempt counter appears with the first claim.
local due_s = string.format('%d', due)
redis.call('HSET', KEYS[1], 'url', ARGV[2], 'due', due_s, 'state', 'pending')
if delay == 0 then
    redis.call('XADD', KEYS[4], '*', 'id', ARGV[1])
else
    redis.call('ZADD', KEYS[2], due_s, ARGV[1])
    redis.call('ZADD', KEYS[3], minute, minute)
end
return {1, now, due}
