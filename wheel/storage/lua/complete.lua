-- complete.lua: record the outcome of a webhook attempt and ack its entry;
-- replay-safe.
--
-- Only the claim that started the attempt may complete it: the record
-- must be firing with the claim's attempt number and consumer. Anything
-- else changes nothing and acks nothing (C_STALE): the entry was
-- reclaimed by another worker, or this very completion already ran (a
-- retry after a lost reply) - in that case C_DONE when it can tell.
--
-- Every outcome but O_DEFER is an attempt: it joins the timer's history
-- (sent at now minus its duration, its duration and result; the last
-- HISTORY_KEPT attempts). A finished record keeps the last attempt's
-- duration in its head ("f1:57,...") and the attempts before it beside
-- it, with the timer's request.
--
-- Outcomes:
--   O_OK     fired: the record becomes a finished record (kept for the
--            retention), the entry is acked and deleted
--   O_FAIL   failed: the same, plus a dead letter
--   O_RETRY  back on the wheel at now + ARGV[8] ms, attempt counted
--   O_DEFER  back on the wheel at now + ARGV[8] ms, attempt not counted
--            (the destination was saturated; nothing was sent)
--
-- Runs at maxmemory: yes (its first write is an XACK).
--
-- KEYS[1] ready stream
-- KEYS[2] timer record (hash)
-- KEYS[3] finished hash of the id's hour
-- KEYS[4] dead-letter stream
-- KEYS[5] bucket index (zset)
-- KEYS[6] minute bucket (zset) of minute ARGV[9], for retry and defer
-- KEYS[7] coarse bucket ARGV[10..11], or KEYS[6] when none
-- KEYS[8] the shard's count of unfinished timers (string)
-- KEYS[9] the shard's tombstones (zset): a copy the timer left in an
--         hour or day bucket when it was rescheduled
-- KEYS[10] the shard's finished hours, by hour (zset)
-- KEYS[11] the shard's finished hours, by expiry (zset)
-- KEYS[12] (optional) the record of the schedule whose occurrence this
--          timer is: a finished occurrence counts there (fired f, or
--          failed x); a replay returns early and counts nothing twice
-- ARGV[1] consumer group
-- ARGV[2] stream entry id
-- ARGV[3] consumer name
-- ARGV[4] attempt number from the claim
-- ARGV[5] outcome
-- ARGV[6] result: HTTP status code, or the error of the attempt
-- ARGV[7] timer id (16 bytes)
-- ARGV[8] delay in ms before the next attempt (retry, defer)
-- ARGV[9] minute number of KEYS[6]
-- ARGV[10] level of KEYS[7]: 'h', 'd', or 'm' when none
-- ARGV[11] bucket number of KEYS[7]
-- ARGV[12] retention of a finished record, in ms
-- ARGV[13] most entries kept in the dead-letter stream (approximate)
-- ARGV[14] how long the attempt took, in ms
-- ARGV[15] the hour of KEYS[3]
--
-- Returns {now_ms, code}: C_DONE or C_STALE.

local now = now_ms()
local attempt = tonumber(ARGV[4])
local outcome = ARGV[5]
local id = ARGV[7]
local HISTORY_KEPT = 5
-- s state, a attempts, c claim token, u url, d due, q request chunks
local rec = redis.call('HMGET', KEYS[2], 's', 'a', 'c', 'u', 'd', 'q')
local by = string.match(rec[3] or '', '^%d+|[^|]*|(.*)$')
if rec[1] ~= S_FIRING or tonumber(rec[2]) ~= attempt or by ~= ARGV[3] then
    if outcome == O_RETRY and rec[1] == S_PENDING
            and tonumber(rec[2]) == attempt then
        return {now, C_DONE}
    end
    if outcome == O_DEFER and rec[1] == S_PENDING
            and tonumber(rec[2]) == attempt - 1 then
        return {now, C_DONE}
    end
    if (outcome == O_OK or outcome == O_FAIL) and not rec[1] then
        local finished = redis.call('HGET', KEYS[3], id)
        if finished and tonumber(string.match(finished, '^%a(%d+)'))
                == attempt then
            return {now, C_DONE}
        end
    end
    return {now, C_STALE}
end

redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local due = tonumber(rec[5])
local duration = tonumber(ARGV[14])
local entry = fmt(now - duration) .. ',' .. fmt(duration) .. ',' .. ARGV[6]
if outcome == O_OK or outcome == O_FAIL then
    local state = S_FIRED
    if outcome == O_FAIL then
        state = S_FAILED
        redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[13], '*', 'i', id,
            'u', rec[4], 'a', attempt, 'e', ARGV[6], 't', fmt(now))
    end
    local request = load_request(KEYS[2], rec[6])
    local history = push_history(load_history(KEYS[2]), nil,
        HISTORY_KEPT - 1)
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[3], id,
        pack_finished(state, attempt, due, now, ARGV[6], duration))
    keep_extras(KEYS[3], id, request, history)
    keep(KEYS[3], tonumber(ARGV[12]), KEYS[10], KEYS[11], ARGV[15])
    redis.call('DECR', KEYS[8])
    -- schedules: an occurrence counts in its schedule, if that still
    -- exists (a deleted schedule leaves only a marker, without v).
    if KEYS[12] and redis.call('HEXISTS', KEYS[12], 'v') == 1 then
        local count = 'f'
        if outcome == O_FAIL then
            count = 'x'
        end
        redis.call('HINCRBY', KEYS[12], count, 1)
    end
    -- end of schedules
else
    local sched = now + tonumber(ARGV[8])
    local attempts = attempt
    if outcome == O_DEFER then
        attempts = attempt - 1
    end
    redis.call('HDEL', KEYS[2], 'c')
    redis.call('HSET', KEYS[2], 's', S_PENDING, 'a', attempts,
        'n', fmt(sched))
    if outcome == O_RETRY then
        redis.call('HSET', KEYS[2], 'r', ARGV[6])
        store_history(KEYS[2],
            push_history(load_history(KEYS[2]), entry, HISTORY_KEPT))
    end
    -- A copy a reschedule left behind at this very due is still on the
    -- wheel: it serves again rather than a second one.
    if redis.call('ZREM', KEYS[9], coarse_member(id, sched)) == 0 then
        schedule(KEYS[5], KEYS[6], ARGV[9], KEYS[7], ARGV[10], ARGV[11],
            id, sched, now)
    end
end
return {now, C_DONE}
