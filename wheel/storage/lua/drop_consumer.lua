-- drop_consumer.lua: delete a consumer of the workers' group, only if it
-- holds no pending entry; replay-safe.
--
-- A worker that stops gracefully drops its own consumers; the reclaim
-- sweep drops those of workers that died, once their pending entries have
-- been reclaimed. A consumer that still holds an entry is kept: deleting
-- it would delete the entry from the pending list, and nobody would ever
-- fire it. Sent twice, the second call finds no consumer and drops
-- nothing.
--
-- Runs at maxmemory: yes (XGROUP DELCONSUMER frees memory).
--
-- KEYS[1] ready stream
-- ARGV[1] consumer group
-- ARGV[2] consumer name
--
-- Returns {now_ms, gone}: gone is 1 when no such consumer is left (it was
-- deleted, or there was none), 0 when it holds pending entries (or the
-- stream or group is missing, and nothing was looked at).

local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {now, 0}
end
local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1,
    ARGV[2])
if pending.err or #pending > 0 then
    return {now, 0}
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return {now, 1}
