-- create.lua: store a new timer and put it on the wheel; replay-safe.
--
-- The caller chooses the id before the call, so a call sent twice (a
-- retry after a lost reply) finds its own record and answers as the
-- first did instead of creating a second timer. With an Idempotency-Key,
-- the key's record maps to the timer it created for a day: the same key
-- and request fingerprint answer that timer, another fingerprint is a
-- mismatch. The due time is Redis' clock plus the delay, or the instant
-- given (`at`), and never earlier than Redis' clock. A timer with its own
-- request keeps it packed (store_request: fields q, q1..qN); a plain
-- timer stores nothing more.
--
-- Runs at maxmemory: no. Its first write is the record's HSET, so a full
-- Redis refuses the call before anything is written.
--
-- KEYS[1] timer record (hash)
-- KEYS[2] bucket index (zset)
-- KEYS[3] minute bucket (zset) of minute ARGV[4]
-- KEYS[4] coarse bucket (list) ARGV[5..6], or KEYS[3] when none
-- KEYS[5] idempotency record (string), or KEYS[1] when none
-- KEYS[6] finished hash of the id's hour (a replay after firing)
-- KEYS[7] the shard's count of unfinished timers (string)
-- ARGV[1] timer id (16 bytes)
-- ARGV[2] url
-- ARGV[3] delay in ms (>= 0)
-- ARGV[4] minute number of KEYS[3]
-- ARGV[5] level of KEYS[4]: 'h', 'd', or 'm' when none
-- ARGV[6] bucket number of KEYS[4]
-- ARGV[7] request fingerprint, or '' without an Idempotency-Key
-- ARGV[8] how long the idempotency record lives, in ms
-- ARGV[9] the instant due, epoch ms (then ARGV[3] is unused), or ''
-- ARGV[10] the packed request (wheel/core/requests.py), or ''
--
-- Returns {now_ms, code, due_ms, id}:
--   C_DONE     created
--   C_EXISTS   this id (a replay) or this key and fingerprint existed:
--              id and due_ms are the existing timer's
--   C_MISMATCH the key was used with another fingerprint (id, due_ms of
--              the timer it created)
--   C_CONFLICT the id exists with another url (never for random ids)

local now = now_ms()
local id = ARGV[1]
local fingerprint = ARGV[7]

if fingerprint ~= '' then
    local stored = redis.call('GET', KEYS[5])
    if stored then
        -- id (16 bytes), due as 6 bytes, then the fingerprint.
        local stored_id = string.sub(stored, 1, 16)
        local stored_due = struct.unpack('>I6', string.sub(stored, 17, 22))
        local code = C_MISMATCH
        if string.sub(stored, 23) == fingerprint then
            code = C_EXISTS
        end
        return {now, code, stored_due, stored_id}
    end
end

local rec = redis.call('HMGET', KEYS[1], 'u', 'd')
if rec[1] then
    if rec[1] == ARGV[2] then
        return {now, C_EXISTS, tonumber(rec[2]), id}
    end
    return {now, C_CONFLICT, 0, id}
end
local finished = redis.call('HGET', KEYS[6], id)
if finished then
    local due = tonumber(string.match(finished, '^[^,]*,(%d+),'))
    return {now, C_EXISTS, due, id}
end

local due = now + tonumber(ARGV[3])
if ARGV[9] ~= '' then
    due = math.max(now, tonumber(ARGV[9]))
end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'd', fmt(due), 's', S_PENDING)
store_request(KEYS[1], ARGV[10])
schedule(KEYS[2], KEYS[3], ARGV[4], KEYS[4], ARGV[5], ARGV[6], id, due, now)
redis.call('INCR', KEYS[7])
if fingerprint ~= '' then
    redis.call('SET', KEYS[5], id .. struct.pack('>I6', due) .. fingerprint,
        'PX', ARGV[8])
end
return {now, C_DONE, due, id}
