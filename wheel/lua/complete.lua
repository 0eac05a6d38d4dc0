-- complete.lua: record the outcome of a webhook attempt and ack its entry.
--
-- Only the worker holding the current claim may complete: the record must
-- be firing with the attempt number the claim returned. A stale worker
-- (one whose entry was reclaimed) changes nothing and acks nothing.
--
-- Outcomes:
--   ok    state fired; the record expires after the retention
--   retry state pending; back on the wheel at now + ARGV[6] ms
--   fail  state failed; a dead letter; the record expires after retention
--
-- KEYS[1] ready stream
-- KEYS[2] timer record (hash)
-- KEYS[3] dead-letter stream
-- KEYS[4] slot index (zset)
-- KEYS[5] wheel slot (zset) of minute ARGV[7], used by retry only
-- ARGV[1] consumer group
-- ARGV[2] stream entry id
-- ARGV[3] attempt number from the claim
-- ARGV[4] outcome: ok, retry or fail
-- ARGV[5] result text (status code or error)
-- ARGV[6] retry delay in ms
-- ARGV[7] retry slot minute chosen by the caller
-- ARGV[8] retention of a finished record, in ms
-- ARGV[9] timer id
-- ARGV[10] most entries kept in the dead-letter stream (approximate)
--
-- Returns {code, now_ms}: 1 done, 0 stale claim (nothing changed), -1 the
-- retry slot does not fit the new due time (retry with a clock from now).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d', now)
local rec = redis.call('HMGET', KEYS[2], 'state', 'attempts')
if rec[1] ~= 'firing' or tonumber(rec[2]) ~= tonumber(ARGV[3]) then
    return {0, now}
end

local outcome = ARGV[4]
if outcome == 'retry' then
    local due = now + tonumber(ARGV[6])
    local minute = tonumber(ARGV[7])
    local due_minute = math.floor(due / 60000)
    if minute > due_minute or minute < due_minute - 1 then
        return {-1, now}
    end
    local due_s = string.format('%d', due)
    redis.call('HSET', KEYS[2], 'state', 'pending', 'due', due_s,
        'result', ARGV[5])
    redis.call('HDEL', KEYS[2], 'claimed')
    redis.call('ZADD', KEYS[5], due_s, ARGV[9])
    redis.call('ZADD', KEYS[4], minute, minute)
else
    local state = 'fired'
    if outcome == 'fail' then
        state = 'failed'
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[10], '*',
            'id', ARGV[9], 'attempts', rec[2], 'error', ARGV[5],
            'at', now_s)
    end
    redis.call('HSET', KEYS[2], 'state', state, 'result', ARGV[5],
        'finished', now_s)
    redis.call('HDEL', KEYS[2], 'claimed')
    redis.call('PEXPIRE', KEYS[2], ARGV[8])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return {1, now}
