-- cascade.lua: move the members of a coarse bucket (hour or day) into its
-- finer buckets (minutes or hours), if the caller holds the lease.
--
-- A coarse bucket is a list of members, each a 16-byte id followed by its
-- due ms in 6 bytes; a member goes to the child bucket its due time falls
-- in (a member outside the span, which creation never makes, goes to the
-- nearest child). Hours cascade into minute buckets (zsets scored by due
-- ms), days into hour buckets (lists of the same members). The children
-- enter the index as create.lua would put them there; the coarse bucket
-- leaves it once empty. Bounded: at most ARGV[2] members per call.
--
-- A member the shard's tombstones name is a copy a reschedule left
-- behind: it is dropped with its tombstone instead of moved. A member
-- never replaces a copy of the same id already in a minute bucket (only
-- a timer's current copy can be there), and tombstones a day past their
-- due, which no bucket can still hold, are forgotten.
--
-- Runs at maxmemory: yes (its first write is an LTRIM or ZREM).
--
-- KEYS[1] lease (string)
-- KEYS[2] bucket index (zset)
-- KEYS[3] the coarse bucket (list)
-- KEYS[4] the shard's tombstones (zset)
-- KEYS[5..n] its children in order (60 minutes of an hour, 24 hours of a
--            day)
-- ARGV[1] lease owner token
-- ARGV[2] most members to move in this call
-- ARGV[3] level of the coarse bucket: 'h' or 'd'
-- ARGV[4] its number
-- ARGV[5] the number of its first child
--
-- Returns {now_ms, code, moved, left}: code C_DONE or C_NOT_OURS; left is
-- the number of members still in the coarse bucket.

local now = now_ms()
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {now, C_NOT_OURS, 0, 0}
end
local level = ARGV[3]
local child_level = 'm'
if level == 'd' then
    child_level = 'h'
end
local child_width = WIDTH[child_level]
local first_child = tonumber(ARGV[5])
local children = #KEYS - 4
local buried = redis.call('EXISTS', KEYS[4]) == 1

local members = redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[2]) - 1)
if #members > 0 then
    redis.call('LTRIM', KEYS[3], #members, -1)
    local earliest = {}
    for _, member in ipairs(members) do
        local due = struct.unpack('>I6', string.sub(member, 17, 22))
        local k = math.floor(due / child_width) - first_child + 1
        k = math.max(1, math.min(children, k))
        if buried and redis.call('ZREM', KEYS[4], member) == 1 then
            -- a copy left behind by a reschedule: dropped
        elseif child_level == 'm' then
            redis.call('ZADD', KEYS[4 + k], 'NX', due,
                string.sub(member, 1, 16))
            if not earliest[k] or due < earliest[k] then
                earliest[k] = due
            end
        else
            redis.call('RPUSH', KEYS[4 + k], member)
            earliest[k] = true
        end
    end
    for k, due in pairs(earliest) do
        local number = first_child + k - 1
        if child_level == 'm' then
            redis.call('ZADD', KEYS[2], 'LT', due, 'm' .. fmt(number))
        else
            redis.call('ZADD', KEYS[2], cascade_ms('h', number),
                'h' .. fmt(number))
        end
    end
end
if buried then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - DAY_MS)
end
local left = redis.call('LLEN', KEYS[3])
if left == 0 then
    redis.call('ZREM', KEYS[2], level .. ARGV[4])
end
return {now, C_DONE, #members, left}
