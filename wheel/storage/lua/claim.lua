-- claim.lua: claim a batch of ready entries for firing, atomically;
-- replay-safe.
--
-- For each entry, the timer's record decides:
--   * no record (fired, failed, cancelled, expired), or a pending record
--     whose schedule is not the entry's (a stale copy: the timer was put
--     back on the wheel since): acked and deleted, V_SKIP;
--   * pending, the entry's schedule, but later than Redis' clock (a
--     clock that went back, as after a failover): V_EARLY with the
--     schedule, left for the caller to put back on the wheel;
--   * firing under this very entry and consumer: a replay of a claim
--     whose reply was lost: V_FIRE again, same attempt;
--   * firing, claimed by another less than ARGV[4] ms ago: V_BUSY with
--     the ms until that claim lapses;
--   * out of attempts: the timer fails and is dead-lettered, V_DEAD;
--   * its destination saturated (the url's "scheme://authority" is one
--     of the caller's saturated prefixes) and its new due time within
--     the caller's deferral minute: put back on the wheel, due at now +
--     the prefix's delay + its step for each entry of that prefix
--     deferred before it in this call, no attempt counted, the entry
--     acked and deleted: V_DEFERRED with the ms until then and the
--     prefix's number (a replay finds the record moved on: V_SKIP);
--   * otherwise: state firing, attempts + 1, claim token set, V_FIRE
--     with the url, the attempt number, the due ms, the timer's own
--     request (packed; '' for the default webhook) and the id of the
--     schedule whose occurrence it is ('' for a timer of its own).
--
-- Runs at maxmemory: yes (the first write of a call is an XACK or HDEL).
--
-- KEYS[1] ready stream
-- KEYS[2] dead-letter stream
-- KEYS[3] the shard's count of unfinished timers (string)
-- KEYS[4] the shard's finished hours, by hour (zset)
-- KEYS[5] the shard's finished hours, by expiry (zset)
-- KEYS[6] bucket index (zset)
-- KEYS[7] minute bucket (zset) of the deferral minute ARGV[7]
-- KEYS[8..] per entry: timer record, finished hash of the id's hour
-- ARGV[1] consumer group
-- ARGV[2] consumer name
-- ARGV[3] most attempts in all
-- ARGV[4] how long a claim holds, in ms
-- ARGV[5] retention of a finished record, in ms
-- ARGV[6] most entries kept in the dead-letter stream (approximate)
-- ARGV[7] the deferral minute: a deferral due in another minute is not
--         made here (the caller claims and defers that entry itself)
-- ARGV[8] P, the number of saturated prefixes
-- ARGV[9..8 + 3P] per prefix: "scheme://authority" as the url spells
--         it, delay ms of its first deferral, step ms between two
-- ARGV[9 + 3P..] per entry: stream entry id, timer id, schedule ms, the
--           hour of its finished hash
--
-- Returns {now_ms, {verdict, ...}, ...}, one reply per entry in order:
-- {V_FIRE, url, attempt, due_ms, request, schedule_id}, {V_BUSY, wait_ms},
-- {V_EARLY, sched_ms}, {V_DEFERRED, wait_ms, prefix number (from 1)},
-- {V_SKIP} or {V_DEAD}.

local now = now_ms()
local group, consumer = ARGV[1], ARGV[2]
local max_attempts = tonumber(ARGV[3])
local hold = tonumber(ARGV[4])
local retention = tonumber(ARGV[5])
local out = {now}
local defer_minute = tonumber(ARGV[7])
local saturated = {}
local prefixes = tonumber(ARGV[8]) or 0
for p = 1, prefixes do
    local a = 6 + 3 * p
    saturated[ARGV[a]] = {number = p, delay = tonumber(ARGV[a + 1]),
        step = tonumber(ARGV[a + 2]), count = 0}
end
local first_arg = 9 + 3 * prefixes

-- Whether this call has written yet: at maxmemory Redis refuses a
-- command that may grow memory only as a script's first write.
local written = false

local function drop(entry)
    written = true
    redis.call('XACK', KEYS[1], group, entry)
    redis.call('XDEL', KEYS[1], entry)
end

local function fail(record, finished, entry, id, rec, attempts, hour)
    local request = load_request(record, rec[7])
    local history = load_history(record)
    drop(entry)
    local error = 'delivered too many times'
    redis.call('DEL', record)
    redis.call('HSET', finished, id, pack_finished(S_FAILED, attempts,
        tonumber(rec[5]), now, error))
    keep_extras(finished, id, request, history, rec[8])
    keep(finished, retention, KEYS[4], KEYS[5], hour)
    redis.call('DECR', KEYS[3])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'i', id,
        'u', rec[4], 'a', attempts, 'e', error, 't', fmt(now))
end

local function fire(record, entry, rec)
    -- HDEL first: it cannot grow memory, so a full Redis still fires.
    -- Once the call has written, it is needed only to drop a next
    -- schedule the record has.
    if rec[6] or not written then
        redis.call('HDEL', record, 'n')
        written = true
    end
    local attempt = (tonumber(rec[2]) or 0) + 1
    redis.call('HSET', record, 's', S_FIRING, 'a', attempt,
        'c', fmt(now) .. '|' .. entry .. '|' .. consumer)
    return {V_FIRE, rec[4], attempt, tonumber(rec[5]),
        load_request(record, rec[7]), rec[8] or ''}
end

-- A timer for a saturated destination goes back on the wheel unclaimed
-- (its first write is the XACK: safe at maxmemory); nil when its url's
-- destination is not saturated, or its new due time falls outside the
-- deferral minute.
local function defer(record, entry, id, url)
    -- wheel/webhooks/sender.py destination_prefix() is the same match.
    local prefix = string.match(url or '', '^[^:/?#]*://[^/?#\\]*')
    local sat = saturated[prefix or '']
    if not sat or not sat.delay or not sat.step then
        return nil
    end
    local due = now + sat.delay + sat.count * sat.step
    if math.floor(due / MINUTE_MS) ~= defer_minute then
        return nil
    end
    sat.count = sat.count + 1
    drop(entry)
    redis.call('HSET', record, 'n', fmt(due))
    schedule(KEYS[6], KEYS[7], ARGV[7], KEYS[7], 'm', ARGV[7], id, due,
        now)
    return {V_DEFERRED, due - now, sat.number}
end

for j = 0, (#ARGV - first_arg + 1) / 4 - 1 do
    local record, finished = KEYS[8 + 2 * j], KEYS[9 + 2 * j]
    local a = first_arg + 4 * j
    local entry = ARGV[a]
    local id = ARGV[a + 1]
    local sched = tonumber(ARGV[a + 2])
    local hour = ARGV[a + 3]
    -- s state, a attempts, c claim token, u url, d due, n next schedule,
    -- q the request's chunks, g the schedule of an occurrence
    local rec = redis.call('HMGET', record, 's', 'a', 'c', 'u', 'd', 'n',
        'q', 'g')
    local state = rec[1]
    local attempts = tonumber(rec[2]) or 0
    if state == S_PENDING then
        local current = tonumber(rec[6] or rec[5])
        if current ~= sched then
            drop(entry)
            out[#out + 1] = {V_SKIP}
        elseif current > now then
            out[#out + 1] = {V_EARLY, current}
        elseif attempts >= max_attempts then
            fail(record, finished, entry, id, rec, attempts, hour)
            out[#out + 1] = {V_DEAD}
        else
            out[#out + 1] = (prefixes > 0 and defer(record, entry, id,
                rec[4])) or fire(record, entry, rec)
        end
    elseif state == S_FIRING then
        local claimed, by_entry, by = string.match(rec[3] or '',
            '^(%d+)|([^|]*)|(.*)$')
        local age = now - (tonumber(claimed) or 0)
        if by_entry == entry and by == consumer then
            out[#out + 1] = {V_FIRE, rec[4], attempts, tonumber(rec[5]),
                load_request(record, rec[7]), rec[8] or ''}
        elseif age < hold then
            out[#out + 1] = {V_BUSY, hold - age}
        elseif attempts >= max_attempts then
            fail(record, finished, entry, id, rec, attempts, hour)
            out[#out + 1] = {V_DEAD}
        else
            out[#out + 1] = fire(record, entry, rec)
        end
    else
        drop(entry)
        out[#out + 1] = {V_SKIP}
    end
end
return out
