-- release.lua: drop a lease, only if the caller still owns it.
--
-- KEYS[1] lease (string)
-- ARGV[1] owner token
--
-- Returns 1 when released, 0 when the lease was not the caller's.

if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
