-- requeue.lua: put a ready entry that is not yet due back on the wheel;
-- replay-safe.
--
-- The claim answers V_EARLY for a pending timer whose schedule is the
-- entry's but later than Redis' clock (a node whose clock is behind the
-- one that moved it, after a failover). This puts the timer back into a
-- bucket at that schedule and acks the entry, so it fires when due by
-- this clock. An entry whose record moved on meanwhile is only acked.
--
-- Replay-safe: the XDEL that deletes the entry tells whether this call
-- is the first (the entry was read from the stream, and stays there
-- until this script deletes it); a replay puts nothing on the wheel
-- again and answers as the first did. Not the XACK: on a replica
-- promoted before the read reached it, the entry is in the stream but
-- not pending, and the first call must still put the timer back.
--
-- Runs at maxmemory: yes (its first write is an XACK).
--
-- KEYS[1] ready stream
-- KEYS[2] timer record (hash)
-- KEYS[3] bucket index (zset)
-- KEYS[4] minute bucket (zset) of minute ARGV[5]
-- KEYS[5] coarse bucket ARGV[6..7], or KEYS[4] when none
-- ARGV[1] consumer group
-- ARGV[2] stream entry id
-- ARGV[3] timer id (16 bytes)
-- ARGV[4] the entry's schedule ms
-- ARGV[5] minute number of KEYS[4]
-- ARGV[6] level of KEYS[5]: 'h', 'd', or 'm' when none
-- ARGV[7] bucket number of KEYS[5]
--
-- Returns {now_ms, code}: C_DONE (back on the wheel) or C_STALE (acked
-- only).

local now = now_ms()
local sched = tonumber(ARGV[4])
local rec = redis.call('HMGET', KEYS[2], 's', 'd', 'n')
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local first = redis.call('XDEL', KEYS[1], ARGV[2]) == 1
if rec[1] ~= S_PENDING or tonumber(rec[3] or rec[2]) ~= sched then
    return {now, C_STALE}
end
if not first then
    return {now, C_DONE}
end
schedule(KEYS[3], KEYS[4], ARGV[5], KEYS[5], ARGV[6], ARGV[7], ARGV[3],
    sched, now)
return {now, C_DONE}
