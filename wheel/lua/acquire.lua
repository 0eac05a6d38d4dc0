-- acquire.lua: take a free lease, or extend one the caller already holds.
--
-- KEYS[1] lease (string)
-- ARGV[1] owner token
-- ARGV[2] time to live in ms
--
-- Returns 1 when the caller holds the lease afterwards, 0 when another
-- owner holds it.

local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if owner then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
