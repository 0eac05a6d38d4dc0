-- patch_schedule.lua: edit, pause or resume a schedule, atomically
-- against its roller; replay-safe.
--
-- A compare-and-set on the version and the next occurrence the caller
-- read: when the record changed since (another edit, or a roll that
-- handed that occurrence over), nothing changes (C_STALE) and the
-- caller reads again. Otherwise the version goes up by one, so a roll computed
-- from the old definition finds the record changed and creates nothing:
-- once this call has run, no occurrence under the old definition is
-- made. The caller computed the new next occurrence (Python reads cron):
-- the schedule's member of the schedules set is replaced by it, or
-- dropped (paused, or ended). Occurrences already handed to the workers
-- are timers of their own and complete as usual.
--
-- The caller's token is stored in the record (field w): a replay of this
-- very call (a lost reply) answers as the first did and changes nothing.
--
-- Runs at maxmemory: yes (its first write is a ZREM).
--
-- KEYS[1] schedule record (hash)
-- KEYS[2] the shard's schedules set, by next occurrence (zset)
-- ARGV[1] schedule id (16 bytes)
-- ARGV[2] the version read
-- ARGV[3] the next occurrence read, ms; '' when it had none
-- ARGV[4] the caller's token for this edit
-- ARGV[5] '1': paused; '0': not paused
-- ARGV[6] the new next occurrence, ms; '' for none (paused, or ended)
-- ARGV[7..] the new definition's chunks; none: the definition stays
--
-- Returns {now_ms, code, version}: C_DONE with the new version,
-- C_STALE with the current one, or C_NOT_FOUND.

local now = now_ms()
local rec = redis.call('HMGET', KEYS[1], 'v', 'w', 'd', 'n')
if not rec[1] then
    return {now, C_NOT_FOUND, 0}
end
if rec[1] ~= ARGV[2] or (rec[4] or '') ~= ARGV[3] then
    if rec[2] == ARGV[4] then
        return {now, C_DONE, tonumber(rec[1])}
    end
    return {now, C_STALE, tonumber(rec[1])}
end
redis.call('ZREM', KEYS[2], ARGV[1])
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'w', ARGV[4])
if ARGV[5] == '1' then
    redis.call('HSET', KEYS[1], 'p', 1)
else
    redis.call('HDEL', KEYS[1], 'p')
end
if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[1], 'n', ARGV[6])
    redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
else
    redis.call('HDEL', KEYS[1], 'n')
end
if #ARGV > 6 then
    for i = 1, tonumber(rec[3]) or 0 do
        redis.call('HDEL', KEYS[1], 'd' .. i)
    end
    redis.call('HSET', KEYS[1], 'd', #ARGV - 6)
    for i = 7, #ARGV do
        redis.call('HSET', KEYS[1], 'd' .. (i - 6), ARGV[i])
    end
end
return {now, C_DONE, version}
