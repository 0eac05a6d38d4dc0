-- retry.lua: schedule a failed timer again, now, with a fresh attempt
-- budget (an operator's retry of a dead letter); replay-safe.
--
-- Only a failed timer is retried: its finished record leaves the
-- finished hash, a pending record (the url from its dead letter, its
-- original due time, attempts 0, its request and attempt history) is
-- put on the wheel due now, and the dead letter is deleted. An
-- occurrence keeps its schedule's id (field g), so that its end counts
-- in that schedule again. The record remembers the dead letter it came
-- from (field p), so the same retry sent twice (a lost reply) answers
-- C_DONE again and changes nothing; it is replay-safe. A timer that is pending, firing, fired or cancelled is
-- left alone, and so is a failed one whose dead letter ARGV[3] is gone:
-- retried already (a replay of a retry after which the timer failed
-- again, under another dead letter) or trimmed away (C_CONFLICT, failed).
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
local rec = redis.call('HMGET', KEYS[1], 's', 'p')
if rec[1] and rec[2] == ARGV[3] then
    return {now, C_DONE, rec[1]}
end
local state = rec[1]
if state then
    return {now, C_CONFLICT, state}
end
local finished = redis.call('HGET', KEYS[2], id)
if not finished then
    return {now, C_NOT_FOUND, ''}
end
state = string.sub(finished, 1, 1)
if state ~= S_FAILED
        or #redis.call('XRANGE', KEYS[5], ARGV[3], ARGV[3]) == 0 then
    return {now, C_CONFLICT, state}
end
local due = string.match(finished, '^[^,]*,(%d+),')
local extras = redis.call('HMGET', KEYS[2], id .. 'q', id .. 'h', id .. 'g')
redis.call('HDEL', KEYS[2], id, id .. 'q', id .. 'h', id .. 'g')
redis.call('XDEL', KEYS[5], ARGV[3])
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'd', due, 's', S_PENDING,
    'n', fmt(now), 'p', ARGV[3])
if extras[3] then
    redis.call('HSET', KEYS[1], 'g', extras[3])
end
store_request(KEYS[1], extras[1] or '')
-- The failing attempt itself (in the packed record's head) rejoins the
-- history the finished record kept beside it.
local history = extras[2] or nil
local took, due_at, delta, result = string.match(finished,
    '^%a%d+:?(%d*),(%d+),(-?%d+),(.*)$')
if took and took ~= '' then
    local sent = tonumber(due_at) + tonumber(delta) - tonumber(took)
    history = push_history(history, fmt(sent) .. ',' .. took .. ','
        .. result, 5)
end
store_history(KEYS[1], history)
redis.call('ZADD', KEYS[4], now, id)
redis.call('ZADD', KEYS[3], 'LT', now, 'm' .. ARGV[4])
redis.call('INCR', KEYS[6])
return {now, C_DONE, S_PENDING}
