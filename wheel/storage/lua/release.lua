-- release.lua: drop a lease, only if the caller still owns it.
--
-- Runs at maxmemory: yes (DEL).
--
-- KEYS[1] lease (string)
-- ARGV[1] owner token
--
-- Returns {now_ms, released}: 1 when released, 0 when the lease was not
-- the caller's.

local now = now_ms()
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return {now, 1}
end
return {now, 0}
