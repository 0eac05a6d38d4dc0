-- claim.lua: claim a batch of ready entries for firing, atomically.
--
-- For each entry, the timer's record decides:
--   * gone, fired or failed: the entry is acked and deleted (skip);
--   * firing and claimed less than ARGV[3] ms ago: another worker has it
--     in flight, so it is left alone (busy);
--   * out of attempts: the timer fails and is dead-lettered (dead);
--   * otherwise: state firing, attempts + 1, claimed now (fire).
--
-- KEYS[1] ready stream
-- KEYS[2] dead-letter stream
-- KEYS[3..n] timer records (hashes), aligned with the entries
-- ARGV[1] consumer group
-- ARGV[2] most attempts in all
-- ARGV[3] how long a claim holds, in ms
-- ARGV[4] retention of a finished record, in ms
-- ARGV[5] most entries kept in the dead-letter stream (approximate)
-- ARGV[6..5+n] stream entry ids, aligned with KEYS[3..]
-- ARGV[6+n..5+2n] timer ids, aligned with KEYS[3..]
--
-- Returns one {verdict, url, attempt} per entry, in order; verdict is
-- 'fire', 'skip', 'busy' or 'dead'; url and attempt only with 'fire'.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d', now)
local max_attempts = tonumber(ARGV[2])
local hold = tonumber(ARGV[3])
local n = #KEYS - 2
local out = {}

for j = 1, n do
    local record = KEYS[j + 2]
    local entry = ARGV[5 + j]
    local id = ARGV[5 + n + j]
    local rec = redis.call('HMGET', record,
        'state', 'attempts', 'claimed', 'url')
    local state = rec[1]
    local attempts = tonumber(rec[2]) or 0
    if (not state) or state == 'fired' or state == 'failed' then
        redis.call('XACK', KEYS[1], ARGV[1], entry)
        redis.call('XDEL', KEYS[1], entry)
        out[#out + 1] = {'skip'}
    elseif state == 'firing' and rec[3]
            and now - tonumber(rec[3]) < hold then
        out[#out + 1] = {'busy'}
    elseif attempts >= max_attempts then
        redis.call('HSET', record, 'state', 'failed', 'finished', now_s,
            'result', 'delivered too many times')
        redis.call('HDEL', record, 'claimed')
        redis.call('PEXPIRE', record, ARGV[4])
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
            'id', id, 'attempts', attempts,
            'error', 'delivered too many times', 'at', now_s)
        redis.call('XACK', KEYS[1], ARGV[1], entry)
        redis.call('XDEL', KEYS[1], entry)
        out[#out + 1] = {'dead'}
    else
        local attempt = redis.call('HINCRBY', record, 'attempts', 1)
        redis.call('HSET', record, 'state', 'firing', 'claimed', now_s)
        out[#out + 1] = {'fire', rec[4], attempt}
    end
end
return out
