-- advance.lua: move due timers of one shard from wheel slots to the ready
-- stream, in one atomic step, if the caller still holds the shard's lease.
--
-- Only slots whose minute has come are touched; in them, ids scored at or
-- before Redis' clock are appended to the ready stream and removed from
-- the slot together, so no id is ever lost or moved twice. Emptied slots
-- leave the slot index.
--
-- KEYS[1] lease (string)
-- KEYS[2] slot index (zset)
-- KEYS[3] ready stream
-- KEYS[4..n] wheel slots (zsets), the earliest in the index
-- ARGV[1] lease owner token
-- ARGV[2] most ids to move in this call
-- ARGV[3..] the minute of each slot, aligned with KEYS[4..]
--
-- Returns {moved, now_ms, next_due_ms}: moved is -1 when the lease is not
-- the caller's; next_due_ms is the earliest due time left in the given
-- slots, or -1 when they are empty.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {-1, 0, -1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_minute = math.floor(now / 60000)
local limit = tonumber(ARGV[2])
local moved = 0
local next_due = -1

for i = 4, #KEYS do
    local slot = KEYS[i]
    local minute = tonumber(ARGV[i - 1])
    if minute <= now_minute and moved < limit then
        local ids = redis.call('ZRANGE', slot, '-inf', now, 'BYSCORE',
            'LIMIT', 0, limit - moved)
        for _, id in ipairs(ids) do
            redis.call('XADD', KEYS[3], '*', 'id', id)
        end
        if #ids > 0 then
            -- The ids are the lowest-ranked members, so a rank range
            -- removes exactly them without an unbounded unpack().
            redis.call('ZREMRANGEBYRANK', slot, 0, #ids - 1)
            moved = moved + #ids
        end
    end
    local first = redis.call('ZRANGE', slot, 0, 0, 'WITHSCORES')
    if first[2] then
        local due = tonumber(first[2])
        if next_due < 0 or due < next_due then
            next_due = due
        end
    else
        redis.call('ZREM', KEYS[2], ARGV[i - 1])
    end
end
return {moved, now, next_due}
