-- cancel.lua: cancel a pending timer, atomically against its firing.
--
-- A pending timer's record becomes a cancelled finished record; a copy
-- of its id still in a bucket or the ready stream is dropped by the
-- claim, which finds no pending record. A timer being fired (claimed) or
-- finished is not changed. Its request and attempt history, if any,
-- stay readable beside the finished record. Cancelling a cancelled
-- timer is done again (so a retried DELETE answers as the first did).
--
-- Runs at maxmemory: yes (its first write is a DEL).
--
-- KEYS[1] timer record (hash)
-- KEYS[2] finished hash of the id's hour
-- KEYS[3] the shard's count of unfinished timers (string)
-- KEYS[4] the shard's finished hours, by hour (zset)
-- KEYS[5] the shard's finished hours, by expiry (zset)
-- ARGV[1] timer id (16 bytes)
-- ARGV[2] retention of a finished record, in ms
-- ARGV[3] the hour of KEYS[2]
--
-- Returns {now_ms, code, state}: C_DONE (cancelled), C_CONFLICT with the
-- state letter of a firing or finished timer, or C_NOT_FOUND.

local now = now_ms()
-- The history's fields come with the rest: one command a record.
local rec = redis.call('HMGET', KEYS[1], 's', 'd', 'a', 'q',
    unpack(HISTORY_FIELDS))
if rec[1] == S_PENDING then
    local request = load_request(KEYS[1], rec[4])
    local history = history_of(rec, 5)
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[2], ARGV[1], pack_finished(S_CANCELLED,
        tonumber(rec[3]) or 0, tonumber(rec[2]), now, ''))
    keep_extras(KEYS[2], ARGV[1], request, history)
    keep(KEYS[2], tonumber(ARGV[2]), KEYS[4], KEYS[5], ARGV[3])
    redis.call('DECR', KEYS[3])
    return {now, C_DONE, S_CANCELLED}
end
if rec[1] then
    return {now, C_CONFLICT, rec[1]}
end
local finished = redis.call('HGET', KEYS[2], ARGV[1])
if not finished then
    return {now, C_NOT_FOUND, ''}
end
local state = string.sub(finished, 1, 1)
if state == S_CANCELLED then
    return {now, C_DONE, state}
end
return {now, C_CONFLICT, state}
