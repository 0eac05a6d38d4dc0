-- advance.lua: move due timers of one shard from minute buckets into the
-- ready stream, in one atomic step, if the caller holds the shard's
-- lease.
--
-- In each given bucket, ids scored at or before Redis' clock are appended
-- to the ready stream and removed from the bucket together, oldest first,
-- so no id is ever lost or moved twice. The ready stream is bounded:
-- while it holds ARGV[3] entries or more, nothing moves (the workers are
-- behind; moving more would only hide the backlog from the wheel's order).
-- Each bucket's index score becomes its new earliest due time, or the
-- bucket leaves the index when empty. The first write to a stream also
-- creates the workers' consumer group (from id 0), so no entry is ever
-- written to a stream the workers cannot read from the start.
--
-- Runs at maxmemory: yes (its first write is a ZREMRANGEBYRANK or ZREM).
--
-- KEYS[1] lease (string)
-- KEYS[2] bucket index (zset)
-- KEYS[3] ready stream
-- KEYS[4..n] minute buckets (zsets), earliest first
-- ARGV[1] lease owner token
-- ARGV[2] consumer group
-- ARGV[3] most ids to move in this call
-- ARGV[4] most entries the ready stream may hold
-- ARGV[5..] the minute number of each bucket, aligned with KEYS[4..]
--
-- Returns {now_ms, code, moved, more, next_ms}: code C_DONE, C_NOT_OURS
-- (the lease is another's: nothing moved) or C_FULL (the ready stream is
-- at its bound); more is 1 when due ids were left behind by the limit;
-- next_ms is the earliest due time left in the given buckets, -1 if none
-- (the ticker sleeps until then: a peek taken before the move cannot
-- know it).

local now = now_ms()
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {now, C_NOT_OURS, 0, 0, -1}
end
local stream = redis.call('EXISTS', KEYS[3]) == 1
local room = tonumber(ARGV[4])
if stream then
    room = room - redis.call('XLEN', KEYS[3])
end
if room <= 0 then
    return {now, C_FULL, 0, 1, -1}
end
local limit = math.min(tonumber(ARGV[3]), room)
local moved = 0
local more = 0
local next_due = -1

for i = 4, #KEYS do
    local bucket = KEYS[i]
    local member = 'm' .. ARGV[i + 1]
    if moved >= limit then
        more = 1
        break
    end
    local due = redis.call('ZRANGE', bucket, '-inf', now, 'BYSCORE',
        'LIMIT', 0, limit - moved, 'WITHSCORES')
    local n = #due / 2
    if n > 0 then
        -- The due ids are the lowest-ranked members, so a rank range
        -- removes exactly them without an unbounded unpack().
        redis.call('ZREMRANGEBYRANK', bucket, 0, n - 1)
        if not stream then
            redis.call('XGROUP', 'CREATE', KEYS[3], ARGV[2], '0', 'MKSTREAM')
            stream = true
        end
        for j = 1, #due, 2 do
            redis.call('XADD', KEYS[3], '*', 'i', due[j], 's', due[j + 1])
        end
        moved = moved + n
    end
    local first = redis.call('ZRANGE', bucket, 0, 0, 'WITHSCORES')
    if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then
        next_due = tonumber(first[2])
    end
    if not first[2] then
        redis.call('ZREM', KEYS[2], member)
    elseif n > 0 then
        redis.call('ZADD', KEYS[2], first[2], member)
        if tonumber(first[2]) <= now then
            more = 1
        end
    end
end
return {now, C_DONE, moved, more, next_due}
