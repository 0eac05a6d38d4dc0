-- import_finished.lua: store a finished record migrated from an older
-- layout, kept as every finished record is; replay-safe.
--
-- The packed record goes into the finished hash of its id's hour, and
-- that hash is kept for the retention by the prelude's keep(), as the
-- claim, completion and cancel keep theirs: its expiry renewed, its hour
-- listed for GET /timers. Sent twice, it writes the same field again and
-- keeps the same hour.
--
-- Runs at maxmemory: no (its first write is the HSET; a full Redis stops
-- the migration, which runs before the service takes traffic).
--
-- KEYS[1] finished hash of the id's hour
-- KEYS[2] the shard's finished hours, by hour (zset)
-- KEYS[3] the shard's finished hours, by expiry (zset)
-- ARGV[1] timer id
-- ARGV[2] the packed finished record
-- ARGV[3] how long to keep it, in ms
-- ARGV[4] the hour of the finished hash
--
-- Returns {now_ms}.

local now = now_ms()
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
keep(KEYS[1], tonumber(ARGV[3]), KEYS[2], KEYS[3], ARGV[4])
return {now}
