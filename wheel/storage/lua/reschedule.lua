-- reschedule.lua: move a pending timer to a new due time, atomically
-- against its claim; replay-safe.
--
-- Only a pending timer moves: one being fired (claimed), or finished, is
-- left alone (C_CONFLICT). The caller read the timer's current schedule
-- (next attempt, else due) to name the minute bucket of its copy; when
-- the schedule changed since, nothing changes (C_STALE) and the caller
-- reads again. Otherwise the record's due becomes the new one (its next
-- attempt is forgotten, its attempts stay) and the old copy stops
-- counting: removed from its minute bucket, or, left in an hour or day
-- bucket (whose list cannot drop one member cheaply), named in the
-- shard's tombstones, so the cascade drops it; a copy already in the
-- ready stream is dropped by the claim, whose schedule no longer
-- matches (it gets no tombstone). A new due that equals a copy still
-- buried revives that copy rather than adding a second. The old due
-- never fires after this.
--
-- The caller's token is stored in the record (field p): a replay of this
-- very call (a lost reply) answers as the first did and moves nothing.
--
-- Runs at maxmemory: no (its first write is the record's HSET).
--
-- KEYS[1] timer record (hash)
-- KEYS[2] finished hash of the id's hour
-- KEYS[3] bucket index (zset)
-- KEYS[4..6] minute buckets (zsets) of the schedule ARGV[2]: its minute
--            and the ones before and after (a create names the minute
--            from a clock estimate, so a copy may sit in a neighbour)
-- KEYS[7] the shard's tombstones (zset)
-- KEYS[8] minute bucket (zset) of minute ARGV[6], for the new due
-- KEYS[9] coarse bucket ARGV[7..8], or KEYS[8] when none
-- ARGV[1] timer id (16 bytes)
-- ARGV[2] the schedule the caller read, ms
-- ARGV[3] delay from Redis' now, in ms (when ARGV[4] is '')
-- ARGV[4] the instant due, epoch ms, or ''
-- ARGV[5] the caller's token for this move
-- ARGV[6] minute number of KEYS[8]
-- ARGV[7] level of KEYS[9]: 'h', 'd', or 'm' when none
-- ARGV[8] bucket number of KEYS[9]
--
-- Returns {now_ms, code, value}:
--   C_DONE      moved (or a replay of this move); value the new due ms
--   C_STALE     the schedule is no longer ARGV[2]; value the current one
--   C_CONFLICT  firing or finished; value its state letter
--   C_NOT_FOUND no such timer; value ''

local now = now_ms()
local id = ARGV[1]
local rec = redis.call('HMGET', KEYS[1], 's', 'd', 'n', 'p')
if not rec[1] then
    local finished = redis.call('HGET', KEYS[2], id)
    if not finished then
        return {now, C_NOT_FOUND, ''}
    end
    return {now, C_CONFLICT, string.sub(finished, 1, 1)}
end
if rec[4] == ARGV[5] then
    return {now, C_DONE, tonumber(rec[2])}
end
if rec[1] ~= S_PENDING then
    return {now, C_CONFLICT, rec[1]}
end
local current = tonumber(rec[3] or rec[2])
if current ~= tonumber(ARGV[2]) then
    return {now, C_STALE, current}
end

local due = now + tonumber(ARGV[3])
if ARGV[4] ~= '' then
    due = math.max(now, tonumber(ARGV[4]))
end
redis.call('HSET', KEYS[1], 'd', fmt(due), 'p', ARGV[5])
redis.call('HDEL', KEYS[1], 'n')
if due ~= current then
    -- Not in its minute bucket and not yet due: the old copy waits in an
    -- hour or day bucket (a due one is in the ready stream already).
    local removed = 0
    for i = 4, 6 do
        removed = removed + redis.call('ZREM', KEYS[i], id)
    end
    -- Only where a coarse bucket of `current` is still to cascade: a
    -- copy anywhere else (a ready entry not yet due by this clock) is
    -- no buried copy, and a tombstone would stop a move back to
    -- `current` from putting the timer on the wheel again.
    if removed == 0 and current > now and place(current, now) ~= 'm' then
        redis.call('ZADD', KEYS[7], current, coarse_member(id, current))
    end
    if redis.call('ZREM', KEYS[7], coarse_member(id, due)) == 0 then
        schedule(KEYS[3], KEYS[8], ARGV[6], KEYS[9], ARGV[7], ARGV[8], id,
            due, now)
    end
end
return {now, C_DONE, due}
