-- walk.lua: read a page's worth of one shard's pending timers, in one
-- consistent look, for a listing; reads only.
--
-- wheel/core/walk.py says what is read and why. First, each coarse
-- bucket the cursor remembers must still have the head it had (only a
-- cascade removes members, from the head); if one changed, nothing is
-- read (C_STALE). Then: the slice of the bucket index from the given
-- score, and the given buckets in order, each from where the cursor
-- stands, until the wanted number of timers is read; and, when asked,
-- the ready stream's entries from an instant on (at most the stream's
-- bound, WHEEL_READY_MAX).
--
-- Runs at maxmemory: yes (reads only).
--
-- KEYS[1] bucket index (zset)
-- KEYS[2] ready stream
-- KEYS[3..2+H] coarse buckets (lists) whose head the cursor remembers
-- KEYS[3+H..] buckets to read, in order
-- ARGV[1] H
-- ARGV[2..1+H] the remembered heads (22-byte members)
-- ARGV[2+H] the lowest index score to look at ('-inf' or ms)
-- ARGV[3+H] most index members to look at
-- ARGV[4+H] most timers to read from buckets
-- ARGV[5+H] the instant (ms) from which to read the ready stream, or ''
-- ARGV[6+H..] per bucket to read, three values:
--   minute bucket: 'm', then '' '' (from the first), or due and id
--                  (after that timer), or due and '' (due after that)
--   hour or day bucket: 'c', the list index to start at, ''
--
-- Returns {now_ms, code, index, stream, reads}:
--   index  {member, score, ...} of the slice looked at
--   stream {entry id, id, schedule ms, ...}
--   reads  per bucket read, in order: {head or '', more, ...} where more
--          is 1 when it holds timers after those returned; a minute
--          bucket's timers as id, score pairs, a coarse bucket's as
--          22-byte members

local now = now_ms()
local heads = tonumber(ARGV[1])
for i = 1, heads do
    if redis.call('LINDEX', KEYS[2 + i], 0) ~= ARGV[1 + i] then
        return {now, C_STALE}
    end
end
local floor = ARGV[2 + heads]
local look = tonumber(ARGV[3 + heads])
local wanted = tonumber(ARGV[4 + heads])
local stream_from = ARGV[5 + heads]

local index = redis.call('ZRANGE', KEYS[1], floor, '+inf', 'BYSCORE',
    'LIMIT', 0, look, 'WITHSCORES')

-- Whether id a sorts after id b (bytewise; Lua's < follows the locale).
local function after(a, b)
    for k = 1, math.min(#a, #b) do
        local x, y = string.byte(a, k), string.byte(b, k)
        if x ~= y then
            return x > y
        end
    end
    return #a > #b
end

-- The first `count` members of a minute bucket after (due, id), by
-- binary search among the members sharing that due: bounded however
-- many timers share one millisecond.
local function minute_after(key, due, id, count)
    local lo = redis.call('ZCOUNT', key, '-inf', '(' .. due)
    local hi = redis.call('ZCOUNT', key, '-inf', due)
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        local member = redis.call('ZRANGE', key, mid, mid)[1]
        if after(member, id) then
            hi = mid
        else
            lo = mid + 1
        end
    end
    return redis.call('ZRANGE', key, lo, lo + count - 1, 'WITHSCORES')
end

local reads = {}
local got = 0
local first = 6 + heads
local buckets = (#ARGV - first + 1) / 3
for b = 1, buckets do
    if got >= wanted then
        break
    end
    local key = KEYS[2 + heads + b]
    local kind, from_a, from_b = ARGV[first + 3 * (b - 1)],
        ARGV[first + 3 * (b - 1) + 1], ARGV[first + 3 * (b - 1) + 2]
    local count = wanted - got
    local items
    local out = {'', 0}
    if kind == 'm' then
        if from_a == '' then
            items = redis.call('ZRANGE', key, 0, count, 'WITHSCORES')
        elseif from_b == '' then
            items = redis.call('ZRANGE', key, '(' .. from_a, '+inf',
                'BYSCORE', 'LIMIT', 0, count + 1, 'WITHSCORES')
        else
            items = minute_after(key, from_a, from_b, count + 1)
        end
        local n = math.min(#items / 2, count)
        for j = 1, 2 * n do
            out[#out + 1] = items[j]
        end
        if #items / 2 > count then
            out[2] = 1
        end
        got = got + n
    else
        local start = tonumber(from_a)
        out[1] = redis.call('LINDEX', key, 0) or ''
        items = redis.call('LRANGE', key, start, start + count)
        local n = math.min(#items, count)
        for j = 1, n do
            out[#out + 1] = items[j]
        end
        if #items > count then
            out[2] = 1
        end
        got = got + n
    end
    reads[#reads + 1] = out
end

local stream = {}
if stream_from ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
    for _, entry in ipairs(redis.call('XRANGE', KEYS[2], stream_from, '+')) do
        local fields = entry[2]
        local id, sched
        for j = 1, #fields, 2 do
            if fields[j] == 'i' then
                id = fields[j + 1]
            elseif fields[j] == 's' then
                sched = fields[j + 1]
            end
        end
        if id and sched then
            stream[#stream + 1] = entry[1]
            stream[#stream + 1] = id
            stream[#stream + 1] = sched
        end
    end
end
return {now, C_DONE, index, stream, reads}
