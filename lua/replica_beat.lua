-- replica_beat: a watchdog replica says it is alive and learns how many replicas are, so
-- it can take no more than its fair share of the partitions. It also checks the
-- namespace's marker: set once by the first replica ever, remembered by every replica; a
-- replica that remembers one and finds it gone or changed learns that Redis lost the
-- namespace's data (restarted empty, flushed) and must not carry on as if nothing happened.
-- A replica that learnt it says so at every beat in the data-lost index (leaving, it takes
-- itself off), so anyone reading the namespace's health sees it while it refuses to act.
-- KEYS: 1 replica index zset (replica id scored by last beat ms), 2 the namespace's marker,
--       3 data-lost index zset (replica id scored by the last beat that found the loss)
-- ARGV: 1 replica id, 2 liveness window ms, 3 '1' to leave (graceful shutdown),
--       4 the marker this replica remembers ('' when it has seen none yet),
--       5 a fresh marker, set when there is none and this replica remembers none
-- Reply: {'ok', live_replicas, rank, marker} (rank: this replica's position among live ids,
--        0-based) | {'data_lost', marker now ('' when gone)}
-- Prelude: _lib.lua

local window = uint(ARGV[2])
if not window then return { 'bad_arg', 'window' } end
local marker = redis.call('GET', KEYS[2])
local remembered = ARGV[4] or ''
local now = now_ms()
if remembered ~= '' and marker ~= remembered then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  if ARGV[3] == '1' then
    redis.call('ZREM', KEYS[3], ARGV[1])
  else
    redis.call('ZADD', KEYS[3], now, ARGV[1])
  end
  return { 'data_lost', marker or '' }
end
if not marker then
  if not ARGV[5] or ARGV[5] == '' then return { 'bad_arg', 'marker' } end
  marker = ARGV[5]
  redis.call('SET', KEYS[2], marker)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return { 'ok', redis.call('ZCARD', KEYS[1]), 0, marker }
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(ids)
local rank = 0
for i, id in ipairs(ids) do if id == ARGV[1] then rank = i - 1 end end
return { 'ok', #ids, rank, marker }
