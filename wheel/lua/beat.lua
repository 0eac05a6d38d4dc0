-- beat.lua: record that a process is alive and list the live ones.
--
-- KEYS[1] registry of one role (zset: member -> last beat in ms)
-- ARGV[1] member (the process' name)
-- ARGV[2] how long a beat stays fresh, in ms
--
-- Returns the members whose beat is fresh, the caller among them; stale
-- members are removed.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
