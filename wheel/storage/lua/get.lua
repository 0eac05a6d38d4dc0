-- get.lua: read timers of one shard with Redis' clock, in one round
-- trip (one timer for GET /timer/{id}, a page of them for a listing).
--
-- A pending or firing timer has a record of its own; a finished one
-- (fired, failed, cancelled) is one field of the finished hash of its
-- id's hour, with its request and earlier attempts in fields beside it.
--
-- Runs at maxmemory: yes (reads only).
--
-- KEYS[2i-1] timer record (hash) of timer i
-- KEYS[2i]   finished hash of its id's hour
-- ARGV[i]    timer id i (16 bytes)
--
-- Returns {now_ms, timer...}, one reply per timer in order:
--   {'r', state, due_ms, attempts, next_ms or '', result or '', url,
--    request or '', history or '', claim or ''}
--   {'f', packed finished record, request or '', history or ''}
--   {} when there is no such timer (never created, or expired)

local now = now_ms()
local out = {now}
for i = 1, #ARGV do
    local id = ARGV[i]
    local record = KEYS[2 * i - 1]
    -- The history's fields come with the rest: one command a record.
    local rec = redis.call('HMGET', record, 's', 'd', 'a', 'n', 'r', 'u',
        'q', 'c', unpack(HISTORY_FIELDS))
    if rec[1] then
        out[#out + 1] = {'r', rec[1], rec[2], rec[3] or '0', rec[4] or '',
            rec[5] or '', rec[6] or '', load_request(record, rec[7]),
            history_of(rec, 9), rec[8] or ''}
    else
        local finished = redis.call('HMGET', KEYS[2 * i], id, id .. 'q',
            id .. 'h')
        if finished[1] then
            out[#out + 1] = {'f', finished[1], finished[2] or '',
                finished[3] or ''}
        else
            out[#out + 1] = {}
        end
    end
end
return out
