-- complete.lua: record the outcomes of webhook attempts of one shard and
-- ack their entries; replay-safe.
--
-- One call completes any number of attempts (a worker sends the ones that
-- ended together in one call), each on its own terms, in order:
--
-- Only the claim that started an attempt may complete it: the record
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
--   O_RETRY  back on the wheel at now + its delay, attempt counted
--   O_DEFER  back on the wheel at now + its delay, attempt not counted
--            (the destination was saturated; nothing was sent)
--
-- Runs at maxmemory: yes (the first write of an attempt that is not
-- stale is a DEL or an HDEL of its record; a stale one writes nothing).
--
-- KEYS[1] ready stream
-- KEYS[2] dead-letter stream
-- KEYS[3] bucket index (zset)
-- KEYS[4] the shard's count of unfinished timers (string)
-- KEYS[5] the shard's tombstones (zset): a copy the timer left in an
--         hour or day bucket when it was rescheduled
-- KEYS[6] the shard's finished hours, by hour (zset)
-- KEYS[7] the shard's finished hours, by expiry (zset)
-- KEYS[8..] per attempt, 4 keys: timer record (hash); finished hash of
--           the id's hour; minute bucket (zset) of the attempt's minute,
--           for retry and defer; coarse bucket of its level and number,
--           or the minute bucket when none
-- KEYS[after every attempt's] the records of the schedules whose
--           occurrences some attempts are (each attempt's last value
--           names its place)
-- ARGV[1] consumer group
-- ARGV[2] consumer name
-- ARGV[3] retention of a finished record, in ms
-- ARGV[4] most entries kept in the dead-letter stream (approximate)
-- ARGV[5..] per attempt, 12 values: stream entry id; attempt number from
--           the claim; outcome; result (HTTP status code, or the error);
--           timer id (16 bytes); delay in ms before the next attempt
--           (retry, defer); minute number of its minute bucket; level of
--           its coarse bucket ('h', 'd', or 'm' when none); number of
--           its coarse bucket; how long the attempt took, in ms; the hour
--           of its finished hash; the place in KEYS of its schedule's
--           record, 0 for a timer of its own
--
-- Returns {now_ms, code, ...}: one code per attempt, C_DONE or C_STALE.

local bad = check_numbers(5, 12, {1, 5, 6, 8, 9, 10, 11}, {})
if bad then
    return bad
end
local now = now_ms()
local group, consumer = ARGV[1], ARGV[2]
local retention = tonumber(ARGV[3])
local HISTORY_KEPT = 5
-- What the attempts of a call share is written once, after them all:
-- their entries' ack and deletion, the count of unfinished timers, and
-- the expiry of a finished hash (they mostly share one hour's).
local deleted, finished_count, kept = {}, 0, {}

local function complete(k, a)
    local record, finished = KEYS[k], KEYS[k + 1]
    local entry_id = ARGV[a]
    local attempt = tonumber(ARGV[a + 1])
    local outcome = ARGV[a + 2]
    local result = ARGV[a + 3]
    local id = ARGV[a + 4]
    -- s state, a attempts, c claim token, d due, q request chunks, h1
    -- the first line of history (the others are read only when it is
    -- there: most timers fire at the first attempt)
    local rec = redis.call('HMGET', record, 's', 'a', 'c', 'd', 'q', 'h1')
    local by = string.match(rec[3] or '', '^%d+|[^|]*|(.*)$')
    if rec[1] ~= S_FIRING or tonumber(rec[2]) ~= attempt
            or by ~= consumer then
        if outcome == O_RETRY and rec[1] == S_PENDING
                and tonumber(rec[2]) == attempt then
            return C_DONE
        end
        if outcome == O_DEFER and rec[1] == S_PENDING
                and tonumber(rec[2]) == attempt - 1 then
            return C_DONE
        end
        if (outcome == O_OK or outcome == O_FAIL) and not rec[1] then
            local done = redis.call('HGET', finished, id)
            if done and tonumber(string.match(done, '^%a(%d+)'))
                    == attempt then
                return C_DONE
            end
        end
        return C_STALE
    end

    deleted[#deleted + 1] = entry_id
    local due = tonumber(rec[4])
    local duration = tonumber(ARGV[a + 9])
    local prior = ''
    if rec[6] and outcome ~= O_DEFER then
        prior = load_history(record)
    end
    if outcome == O_OK or outcome == O_FAIL then
        local request = load_request(record, rec[5])
        local history = push_history(prior, nil, HISTORY_KEPT - 1)
        local url, schedule_id
        if outcome == O_FAIL then
            local kept_fields = redis.call('HMGET', record, 'u', 'g')
            url, schedule_id = kept_fields[1], kept_fields[2]
        end
        redis.call('DEL', record)
        local state = S_FIRED
        if outcome == O_FAIL then
            state = S_FAILED
            redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
                'i', id, 'u', url, 'a', attempt, 'e', result,
                't', fmt(now))
        end
        redis.call('HSET', finished, id,
            pack_finished(state, attempt, due, now, result, duration))
        keep_extras(finished, id, request, history, schedule_id)
        if not kept[finished] then
            keep(finished, retention, KEYS[6], KEYS[7], ARGV[a + 10])
            kept[finished] = true
        end
        finished_count = finished_count + 1
        -- schedules: an occurrence counts in its schedule (fired f, or
        -- failed x), if that still exists (a deleted schedule leaves only
        -- a marker, without v); a replay returned above: no second count.
        local schedule_record = KEYS[tonumber(ARGV[a + 11])]
        if schedule_record
                and redis.call('HEXISTS', schedule_record, 'v') == 1 then
            redis.call('HINCRBY', schedule_record,
                outcome == O_FAIL and 'x' or 'f', 1)
        end
        -- end of schedules
        return C_DONE
    end
    local sched = now + tonumber(ARGV[a + 5])
    local attempts = attempt
    if outcome == O_DEFER then
        attempts = attempt - 1
    end
    redis.call('HDEL', record, 'c')
    redis.call('HSET', record, 's', S_PENDING, 'a', attempts,
        'n', fmt(sched))
    if outcome == O_RETRY then
        redis.call('HSET', record, 'r', result)
        local line = fmt(now - duration) .. ',' .. fmt(duration) .. ','
            .. result
        store_history(record, push_history(prior, line, HISTORY_KEPT))
    end
    -- A copy a reschedule left behind at this very due is still on the
    -- wheel: it serves again rather than a second one.
    if redis.call('ZREM', KEYS[5], coarse_member(id, sched)) == 0 then
        schedule(KEYS[3], KEYS[k + 2], ARGV[a + 6], KEYS[k + 3],
            ARGV[a + 7], ARGV[a + 8], id, sched, now)
    end
    return C_DONE
end

local out = {now}
for j = 0, (#ARGV - 4) / 12 - 1 do
    out[#out + 1] = complete(8 + 4 * j, 5 + 12 * j)
end
if #deleted > 0 then
    redis.call('XACK', KEYS[1], group, unpack(deleted))
    redis.call('XDEL', KEYS[1], unpack(deleted))
end
if finished_count > 0 then
    redis.call('DECRBY', KEYS[4], finished_count)
end
return out
