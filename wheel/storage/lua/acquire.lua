-- acquire.lua: take a free lease, or extend one the caller already holds.
--
-- Runs at maxmemory: yes. Renewing is a PEXPIRE; taking a free lease
-- first deletes the (absent) key, a write that cannot grow memory, so
-- the SET after it is allowed too.
--
-- KEYS[1] lease (string)
-- ARGV[1] owner token
-- ARGV[2] time to live in ms
--
-- Returns {now_ms, held}: held is 1 when the caller holds the lease
-- afterwards, 0 when another owner holds it.

local now = now_ms()
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {now, 1}
end
if owner then
    return {now, 0}
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {now, 1}
