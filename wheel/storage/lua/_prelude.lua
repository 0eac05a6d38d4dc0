-- _prelude.lua: helpers the scripts share. wheel/storage/scripts.py
-- builds each script from the shared constants S_*, V_*, O_*, C_* of
-- wheel/core/states.py and the wheel widths of wheel/core/buckets.py,
-- then this opening comment and the definitions below that the script
-- uses (directly or through another), then the script itself. It splits
-- this file at each line that starts with `local` in the first column,
-- taking the comment lines just above it along: keep a definition's
-- comment directly above it, and indent whatever is inside a function.
--
-- Running at maxmemory (noeviction): Redis refuses a command that may
-- grow memory only while the script has not written yet. Scripts that
-- record outcomes (claim, complete, advance, ...) therefore make a write
-- that cannot grow memory first (XACK, DEL, HDEL, ZREM, LTRIM, ...), so
-- firing goes on when Redis is full; create.lua writes nothing before its
-- first HSET, so a full Redis refuses it whole.

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as decimal text (tostring would write 1.7645900001e+12).
local function fmt(n)
    return string.format('%d', n)
end

local WIDTH = {m = MINUTE_MS, h = HOUR_MS, d = DAY_MS}
local LEAD = {m = 0, h = HOUR_LEAD_MS, d = DAY_LEAD_MS}

-- When the ticker acts on a coarse bucket (its index score).
local function cascade_ms(level, number)
    return number * WIDTH[level] - LEAD[level]
end

-- The bucket a timer due at `due` goes into at `now`: the coarsest level
-- not yet cascaded (wheel/core/buckets.py place() is the same function).
local function place(due, now)
    for _, level in ipairs({'d', 'h'}) do
        local number = math.floor(due / WIDTH[level])
        if cascade_ms(level, number) > now then
            return level, number
        end
    end
    return 'm', math.floor(due / MINUTE_MS)
end

-- A call of many items writes what they share after the last one, so a
-- bad argument must stop it before its first write, not half way: every
-- ARGV[a + offset] must be a number, for a = first, first + stride, ...
-- (an offset in `or_empty` may also be '').
local function check_numbers(first, stride, offsets, or_empty)
    for a = first, #ARGV, stride do
        for _, offset in ipairs(offsets) do
            local value = ARGV[a + offset]
            if not tonumber(value)
                    and not (or_empty[offset] and value == '') then
                return redis.error_reply('ERR argument ' .. (a + offset)
                    .. ' is not a number')
            end
        end
    end
    return nil
end

-- Put timer `id` due at `due` on the wheel. The caller named a minute
-- bucket (minute_key, number minute) and, when it expected one, a coarse
-- bucket (coarse_key, level, number) in KEYS; the coarse one is used only
-- when Redis' clock agrees, else the minute bucket, which is always
-- correct: its index score is its earliest due time. With `marks` (from
-- new_marks) the index is not written here: the bucket's score is noted,
-- and write_marks writes each bucket a call touched once (the timers of
-- one call mostly share their buckets).
local function schedule(index, minute_key, minute, coarse_key, level,
                        number, id, due, now, marks)
    local want_level, want_number = place(due, now)
    if want_level ~= 'm' and want_level == level
            and want_number == tonumber(number) then
        redis.call('RPUSH', coarse_key, id .. struct.pack('>I6', due))
        local member = level .. fmt(want_number)
        local score = cascade_ms(level, want_number)
        if marks then
            marks.coarse[member] = score
        else
            redis.call('ZADD', index, score, member)
        end
    else
        redis.call('ZADD', minute_key, due, id)
        local member = 'm' .. minute
        if marks then
            local earliest = marks.minute[member]
            if not earliest or due < earliest then
                marks.minute[member] = due
            end
        else
            redis.call('ZADD', index, 'LT', due, member)
        end
    end
end

local function new_marks()
    return {minute = {}, coarse = {}}
end

-- The index entries `marks` noted: a minute bucket's score only ever
-- moves earlier (LT), a coarse bucket's is its cascade time.
local function write_marks(index, marks)
    local lower, set = {}, {}
    for member, due in pairs(marks.minute) do
        lower[#lower + 1] = due
        lower[#lower + 1] = member
    end
    for member, score in pairs(marks.coarse) do
        set[#set + 1] = score
        set[#set + 1] = member
    end
    if #lower > 0 then
        redis.call('ZADD', index, 'LT', unpack(lower))
    end
    if #set > 0 then
        redis.call('ZADD', index, unpack(set))
    end
end

-- A finished record, packed into one field of the hourly finished hash:
-- state letter and attempts (then ':' and the last attempt's duration
-- in ms, when the record ends with an attempt), due ms, ms from due to
-- finish, last result.
local function pack_finished(state, attempts, due, at, result, duration)
    local head = state .. fmt(attempts)
    if duration then
        head = head .. ':' .. fmt(duration)
    end
    return head .. ',' .. fmt(due) .. ',' .. fmt(at - due) .. ','
        .. (result or '')
end

-- Keep a finished hash at least `ttl` ms from now: each record in it is
-- readable for the whole retention. Renewed to a minute more than that,
-- so at most once a minute: the append-only file does not get a PEXPIRE
-- per completion. Each renewal also lists the hash's hour in the shard's
-- finished hours (`hours`, scored by hour; `expiry`, scored by when the
-- hash expires) and forgets a few hours whose hash has expired.
local function keep(key, ttl, hours, expiry, hour)
    if redis.call('PTTL', key) < ttl then
        redis.call('PEXPIRE', key, fmt(ttl + 60000))
        local now = now_ms()
        redis.call('ZADD', hours, hour, hour)
        redis.call('ZADD', expiry, now + ttl + 60000, hour)
        local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now,
            'LIMIT', 0, 16)
        if #gone > 0 then
            redis.call('ZREM', expiry, unpack(gone))
            redis.call('ZREM', hours, unpack(gone))
        end
    end
end

-- A finished timer keeps its request and earlier attempts beside its
-- packed record, in fields of their own (none for a plain timer); a
-- failed occurrence also keeps its schedule's id, so that a retry of it
-- still counts in that schedule.
local function keep_extras(finished, id, request, history, schedule)
    if request and request ~= '' then
        redis.call('HSET', finished, id .. 'q', request)
    end
    if history and history ~= '' then
        redis.call('HSET', finished, id .. 'h', history)
    end
    if schedule and schedule ~= '' then
        redis.call('HSET', finished, id .. 'g', schedule)
    end
end

-- Attempt history: one line per attempt, "<sent ms>,<duration ms>,
-- <result>" (the result an HTTP status or an error, never a newline),
-- oldest first; the lines of `history` and `entry`, the last `kept`.
local function push_history(history, entry, kept)
    if not entry and (not history or history == '') then
        return ''
    end
    local lines = {}
    if history then
        for line in string.gmatch(history, '[^\n]+') do
            lines[#lines + 1] = line
        end
    end
    if entry then
        lines[#lines + 1] = entry
    end
    local first = math.max(1, #lines - kept + 1)
    if first > #lines then
        return ''
    end
    return table.concat(lines, '\n', first, #lines)
end

-- A record keeps fields of at most 64 bytes: one value longer (Redis'
-- hash-max-listpack-value) turns the whole record from a listpack into
-- a hash table, about three times its size. So a timer's packed request
-- is kept in fields q1..qN of REQUEST_CHUNK bytes, with N in field q,
-- and its attempt history one line a field, h1..h5 (oldest first).
local REQUEST_CHUNK = 60
local HISTORY_FIELDS = {'h1', 'h2', 'h3', 'h4', 'h5'}

local function store_request(record, packed)
    if not packed or packed == '' then
        return
    end
    local fields, n = {}, 0
    for i = 1, #packed, REQUEST_CHUNK do
        n = n + 1
        fields[#fields + 1] = 'q' .. n
        fields[#fields + 1] = string.sub(packed, i, i + REQUEST_CHUNK - 1)
    end
    redis.call('HSET', record, 'q', n, unpack(fields))
end

-- The packed request of a record whose field q is `count` ('' if none).
local function load_request(record, count)
    local n = tonumber(count)
    if not n then
        return ''
    end
    local names = {}
    for i = 1, n do
        names[i] = 'q' .. i
    end
    local parts = redis.call('HMGET', record, unpack(names))
    for i = 1, n do
        if not parts[i] then
            return ''
        end
    end
    return table.concat(parts)
end

-- History lines joined by newlines ('' if none), from the values of
-- HISTORY_FIELDS in `values` from index `first` on (a caller's HMGET
-- reads them with the rest of the record, in one command).
local function history_of(values, first)
    if not values[first] then
        -- store_history fills h1 first: no h1, no history.
        return ''
    end
    local out = {}
    for i = 0, #HISTORY_FIELDS - 1 do
        if values[first + i] then
            out[#out + 1] = values[first + i]
        end
    end
    return table.concat(out, '\n')
end

-- A record's history as lines joined by newlines ('' if none).
local function load_history(record)
    return history_of(
        redis.call('HMGET', record, unpack(HISTORY_FIELDS)), 1)
end

-- Store history lines (joined by newlines, at most #HISTORY_FIELDS).
local function store_history(record, history)
    local fields, n = {}, 0
    for line in string.gmatch(history or '', '[^\n]+') do
        n = n + 1
        fields[#fields + 1] = HISTORY_FIELDS[n]
        fields[#fields + 1] = line
    end
    if n > 0 then
        redis.call('HSET', record, unpack(fields))
    end
end

-- A copy of a timer in an hour or day bucket: id and due (6 bytes).
local function coarse_member(id, due)
    return id .. struct.pack('>I6', due)
end
