-- retry.lua: schedule a failed timer again, now, with a fresh attempt
-- budget (an operator's retry of a dead letter); replay-safe.
--
-- Only a failed timer is retried: its finished record leaves the
-- finished hash, a pending record (the url from its dead letter, its
-- original due time, attempts 0) is put on the wheel due now, and the
-- dead letter is deleted. A timer that is pending, firing, fired or
-- cancelled is left alone.
--
-- Replay-safe: the pending record keeps the dead letter's entry id it was
-- retried from (field x, on retried timers only); a replay finds it and
-- answers as the first call did.
--
-- Runs at maxmemory: yes (its first write is an HDEL).
--
-- KEYS[1] timer record (hash)
-- KEYS[2] finished hash of the id's hour
-- KEYS[3] bucket index (zset)
-- KEYS[4] minute bucket (zset) of minute ARGV[4]
-- KEYS[5] dead-letter stream
-- KEYS[6] the shard's count of unfinished timers (string)
-- ARGV[1] timer id (16 bytes)
-- ARGV[2] url (from the dead letter)
-- ARGV[3] the dead letter's stream entry id
-- ARGV[4] minute number of KEYS[4]
--
-- Returns {now_ms, code, state}: C_DONE, C_CONFLICT with the state letter
-- of a timer that is not failed, or C_NOT_FOUND.

local now = now_ms()
local id = ARGV[1]
local rec = redis.call('HMGET', KEYS[1], 's', 'x')
local state = rec[1]
if state then
    if state == S_PENDING and rec[2] == ARGV[3] then
        return {now, C_DONE, S_PENDING}
    end
    return {now, C_CONFLICT, state}
end
local finished = redis.call('HGET', KEYS[2], id)
if not finished then
    return {now, C_NOT_FOUND, ''}
end
state = string.sub(finished, 1, 1)
if state ~= S_FAILED then
    return {now, C_CONFLICT, state}
end
local due = string.match(finished, '^[^,]*,(%d+),')
redis.call('HDEL', KEYS[2], id)
redis.call('XDEL', KEYS[5], ARGV[3])
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'd', due, 's', S_PENDING,
    'n', fmt(now), 'x', ARGV[3])
redis.call('ZADD', KEYS[4], now, id)
redis.call('ZADD', KEYS[3], 'LT', now, 'm' .. ARGV[4])
redis.call('INCR', KEYS[6])
return {now, C_DONE, S_PENDING}
