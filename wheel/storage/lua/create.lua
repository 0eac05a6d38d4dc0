-- create.lua: store new timers of one shard and put them on the wheel;
-- replay-safe.
--
-- One call creates any number of timers (an API process sends the
-- creates of one shard that arrive together in one call), each on its
-- own terms, in order:
--
-- The caller chooses the id before the call, so a call sent twice (a
-- retry after a lost reply) finds its own record and answers as the
-- first did instead of creating a second timer. With an Idempotency-Key,
-- the key's record maps to the timer it created for a day: the same key
-- and request fingerprint answer that timer, another fingerprint is a
-- mismatch (also within one call: the second create of a key answers the
-- first's timer). The due time is Redis' clock plus the delay, or the
-- instant given (`at`), and never earlier than Redis' clock. A timer
-- with its own request keeps it packed (store_request: fields q,
-- q1..qN); a plain timer stores nothing more.
--
-- Runs at maxmemory: no. Its first write is the first new timer's HSET,
-- so a full Redis refuses the call before anything is written (the
-- creates after it in the same call then go through: at most a call's
-- worth past the limit).
--
-- KEYS[1] bucket index (zset)
-- KEYS[2] the shard's count of unfinished timers (string)
-- KEYS[3..] per timer, 5 keys: timer record (hash); minute bucket
--           (zset) of its minute; coarse bucket (list) of its level and
--           number, or the minute bucket when none; idempotency record
--           (string), or the timer record when none; finished hash of
--           the id's hour (a replay after firing)
-- ARGV[1] how long an idempotency record lives, in ms
-- ARGV[2..] per timer, 9 values: timer id (16 bytes); url; delay in ms
--           (>= 0); minute number of its minute bucket; level of its
--           coarse bucket ('h', 'd', or 'm' when none); number of its
--           coarse bucket; request fingerprint, or '' without an
--           Idempotency-Key; the instant due, epoch ms (then the delay
--           is unused), or ''; the packed request
--           (wheel/core/webhook_request.py), or ''
--
-- Returns {now_ms, code, due_ms, id, ...}: three values per timer:
--   C_DONE     created
--   C_EXISTS   this id (a replay) or this key and fingerprint existed:
--              id and due_ms are the existing timer's
--   C_MISMATCH the key was used with another fingerprint (id, due_ms of
--              the timer it created)
--   C_CONFLICT the id exists with another url (never for random ids)

local bad = check_numbers(2, 9, {2, 3, 5, 7}, {[7] = true})
if bad then
    return bad
end
local now = now_ms()
local idempotency_ttl = ARGV[1]
local created = 0
local marks = new_marks()

local function create(k, a)
    local record, minute_key, coarse_key = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    local idempotency, finished = KEYS[k + 3], KEYS[k + 4]
    local id, url = ARGV[a], ARGV[a + 1]
    local fingerprint = ARGV[a + 6]

    if fingerprint ~= '' then
        local stored = redis.call('GET', idempotency)
        if stored then
            -- id (16 bytes), due as 6 bytes, then the fingerprint.
            local stored_id = string.sub(stored, 1, 16)
            local stored_due =
                struct.unpack('>I6', string.sub(stored, 17, 22))
            local code = C_MISMATCH
            if string.sub(stored, 23) == fingerprint then
                code = C_EXISTS
            end
            return code, stored_due, stored_id
        end
    end

    local rec = redis.call('HMGET', record, 'u', 'd')
    if rec[1] then
        if rec[1] == url then
            return C_EXISTS, tonumber(rec[2]), id
        end
        return C_CONFLICT, 0, id
    end
    local done = redis.call('HGET', finished, id)
    if done then
        return C_EXISTS, tonumber(string.match(done, '^[^,]*,(%d+),')), id
    end

    local due = now + tonumber(ARGV[a + 2])
    if ARGV[a + 7] ~= '' then
        due = math.max(now, tonumber(ARGV[a + 7]))
    end
    redis.call('HSET', record, 'u', url, 'd', fmt(due), 's', S_PENDING)
    store_request(record, ARGV[a + 8])
    schedule(KEYS[1], minute_key, ARGV[a + 3], coarse_key, ARGV[a + 4],
        ARGV[a + 5], id, due, now, marks)
    created = created + 1
    if fingerprint ~= '' then
        redis.call('SET', idempotency,
            id .. struct.pack('>I6', due) .. fingerprint,
            'PX', idempotency_ttl)
    end
    return C_DONE, due, id
end

local reply = {now}
local k, a = 3, 2
while a <= #ARGV do
    local code, due, id = create(k, a)
    reply[#reply + 1] = code
    reply[#reply + 1] = due
    reply[#reply + 1] = id
    k, a = k + 5, a + 9
end
if created > 0 then
    write_marks(KEYS[1], marks)
    redis.call('INCRBY', KEYS[2], created)
end
return reply
