-- replica_beat: a watchdog replica says it is alive and learns how many replicas are, so
-- it can take no more than its fair share of the partitions.
-- KEYS: 1 replica index zset (replica id scored by last beat ms)
-- ARGV: 1 replica id, 2 liveness window ms, 3 '1' to leave (graceful shutdown)
-- Reply: {'ok', live_replicas, rank} (rank: this replica's position among live ids, 0-based)
-- Prelude: _lib.lua

local window = uint(ARGV[2])
if not window then return { 'bad_arg', 'window' } end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return { 'ok', redis.call('ZCARD', KEYS[1]), 0 }
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(ids)
local rank = 0
for i, id in ipairs(ids) do if id == ARGV[1] then rank = i - 1 end end
return { 'ok', #ids, rank }
