-- read_schedules.lua: read the records of schedules of one shard, in one
-- call (a roller's due schedules, a page of a listing); read-only.
--
-- One call instead of an HGETALL each: the records are small, and the
-- cost of a roll or a page is the number of calls its process makes.
--
-- Runs at maxmemory: yes (reads only).
--
-- KEYS[i] schedule record i (hash)
--
-- Returns {now_ms, fields...}: per record in order its HGETALL (a flat
-- list of fields and values; empty when there is no such record).

local out = {now_ms()}
for i = 1, #KEYS do
    out[i + 1] = redis.call('HGETALL', KEYS[i])
end
return out
