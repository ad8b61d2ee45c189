-- worker_heartbeat: a registered worker says it is alive and which executions it runs.
-- The reply carries what the watchdog asks of it (tier 1, cooperative): restart, drain,
-- or nothing.
-- KEYS: 1 worker hash, 2 worker index zset
-- ARGV: 1 worker id, 2 running executions as a JSON array of "<queue>/<id>"
-- Reply: {'ok', now_ms, request ('' | restart | drain)} | {'unknown'}
-- Prelude: _lib.lua

local w = redis.call('HMGET', KEYS[1], 'reg', 'req')
if not w[1] then return { 'unknown' } end
local now = now_ms()
redis.call('HSET', KEYS[1], 'seen', now, 'running', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return { 'ok', now, w[2] or '' }
