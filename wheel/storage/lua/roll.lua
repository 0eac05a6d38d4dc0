-- roll.lua: hand a schedule's due occurrence to the workers and put its
-- successor on the wheel, in one atomic step; replay-safe.
--
-- A live schedule has exactly one next occurrence on the wheel: its id
-- in the shard's schedules set (KEYS[1]), scored by the instant, equal
-- to the record's field n. The caller (the roller) read the record's
-- version (v) and next occurrence (n), decided in Python what fires now
-- (the misfire policy) and what follows, and names both here. The call
-- is a compare-and-set on that version and next occurrence:
--
--   * the record changed since (edited, paused, deleted, or rolled by
--     another roller): nothing changes, C_STALE, and the caller reads
--     again; a member whose record is gone is dropped (C_STALE);
--   * the same roll already ran (a replay after a lost reply, or a
--     second roller that read the same record): its marker (field k,
--     "<v>,<n>,<created>") matches, and the call answers as that one did
--     (C_DONE and its count) and changes nothing;
--   * the occurrence, or one to fire, is later than Redis' clock: C_EARLY,
--     nothing changes (never early);
--   * the ready stream holds ARGV[5] entries or more: C_FULL, nothing
--     changes (the workers are behind; the occurrence waits, in order);
--   * otherwise each occurrence to fire becomes a pending timer due at
--     its instant (fields u, d, s, its request in q/q1..qN, and g: the
--     schedule id, so its completion counts in the schedule) and an entry
--     of the ready stream, unless its timer exists already (ids are
--     derived from schedule and instant); the successor becomes the next
--     occurrence (n and the set), or the schedule ends (no n, no member);
--     the last occurrence (l) and the missed count (m) are recorded.
--
-- Runs at maxmemory: yes (its first write is the ZREM of the member): a
-- full Redis keeps firing schedules as it keeps firing timers.
--
-- KEYS[1] the shard's schedules set (zset)
-- KEYS[2] schedule record (hash)
-- KEYS[3] ready stream
-- KEYS[4] the shard's count of unfinished timers (string)
-- KEYS[5..] per occurrence to fire: timer record, finished hash of its
--           id's hour
-- ARGV[1] schedule id (16 bytes)
-- ARGV[2] the version read
-- ARGV[3] the next occurrence read, ms
-- ARGV[4] consumer group
-- ARGV[5] most entries the ready stream may hold
-- ARGV[6] the successor, ms, or '' when the schedule ends
-- ARGV[7] occurrences missed (overdue, not fired)
-- ARGV[8] url of the webhooks
-- ARGV[9..] per occurrence to fire: timer id, instant ms, packed request
--
-- Returns {now_ms, code, created}: C_DONE (created: timers created by
-- this roll), C_STALE, C_EARLY or C_FULL (created 0).

local now = now_ms()
local sid = ARGV[1]
local rec = redis.call('HMGET', KEYS[2], 'v', 'n', 'k')
local marker = ARGV[2] .. ',' .. ARGV[3] .. ','
if rec[1] ~= ARGV[2] or rec[2] ~= ARGV[3] then
    local k = rec[3] or ''
    if rec[1] and string.sub(k, 1, #marker) == marker then
        return {now, C_DONE, tonumber(string.sub(k, #marker + 1))}
    end
    if not rec[1] then
        redis.call('ZREM', KEYS[1], sid)
    end
    return {now, C_STALE, 0}
end
if tonumber(ARGV[3]) > now then
    return {now, C_EARLY, 0}
end
local count = (#ARGV - 8) / 3
for j = 1, count do
    if tonumber(ARGV[7 + 3 * j]) > now then
        return {now, C_EARLY, 0}
    end
end
local stream = redis.call('EXISTS', KEYS[3]) == 1
if stream and redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[5]) then
    return {now, C_FULL, 0}
end

redis.call('ZREM', KEYS[1], sid)
local created = 0
for j = 1, count do
    local record, finished = KEYS[3 + 2 * j], KEYS[4 + 2 * j]
    local id, at, request = ARGV[6 + 3 * j], ARGV[7 + 3 * j], ARGV[8 + 3 * j]
    if redis.call('EXISTS', record) == 0
            and redis.call('HEXISTS', finished, id) == 0 then
        redis.call('HSET', record, 'u', ARGV[8], 'd', at, 's', S_PENDING,
            'g', sid)
        store_request(record, request)
        if not stream then
            redis.call('XGROUP', 'CREATE', KEYS[3], ARGV[4], '0', 'MKSTREAM')
            stream = true
        end
        redis.call('XADD', KEYS[3], '*', 'i', id, 's', at)
        created = created + 1
    end
end
if created > 0 then
    redis.call('INCRBY', KEYS[4], created)
end
if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[2], 'n', ARGV[6])
    redis.call('ZADD', KEYS[1], ARGV[6], sid)
else
    redis.call('HDEL', KEYS[2], 'n')
end
if count > 0 then
    redis.call('HSET', KEYS[2], 'l', ARGV[6 + 3 * count])
end
if tonumber(ARGV[7]) > 0 then
    redis.call('HINCRBY', KEYS[2], 'm', ARGV[7])
end
redis.call('HSET', KEYS[2], 'k', marker .. created)
return {now, C_DONE, created}
