-- get.lua: read a timer's record with Redis' clock, in one round trip.
--
-- KEYS[1] timer record (hash)
--
-- Returns {now_ms, due_ms, state, attempts}, or {now_ms} when there is no
-- such timer (never created, or expired after its retention).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rec = redis.call('HMGET', KEYS[1], 'due', 'state', 'attempts')
if not rec[1] then
    return {now}
end
return {now, tonumber(rec[1]), rec[2], tonumber(rec[3]) or 0}
