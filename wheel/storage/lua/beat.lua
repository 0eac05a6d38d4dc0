-- beat.lua: record that a process is alive and list the live ones.
--
-- Runs at maxmemory: yes (its first write removes stale members).
--
-- KEYS[1] registry of one role (zset: member -> last beat in ms)
-- ARGV[1] member (the process' name)
-- ARGV[2] how long a beat stays fresh, in ms
--
-- Returns {now_ms, member...}: Redis' time and the members whose beat is
-- fresh, the caller among them.

local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
local out = {now}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    out[#out + 1] = member
end
return out
