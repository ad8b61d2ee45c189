-- worker_register: record a worker process in the registry. Ids are unique per process
-- start; registering an id that is already present is refused.
-- The worker declares how often it beats the registry, so that the watchdog never judges
-- it gone before a few of those intervals have passed, whatever its own worker_timeout.
-- KEYS: 1 worker hash, 2 worker index zset (id scored by last heartbeat ms)
-- ARGV: 1 worker id, 2 host, 3 pid, 4 version, 5 queues (comma separated),
--       6 registry heartbeat interval ms (0: not declared)
-- Reply: {'ok', now_ms} | {'exists', registered_at_ms}
-- Prelude: _lib.lua

if not uint(ARGV[6]) then return { 'bad_arg', 'interval' } end
local seen = redis.call('HGET', KEYS[1], 'reg')
if seen then return { 'exists', seen } end
local now = now_ms()
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'host', ARGV[2], 'pid', ARGV[3], 'ver', ARGV[4],
  'queues', ARGV[5], 'reg', now, 'seen', now, 'running', '[]', 'ivl', ARGV[6])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return { 'ok', now }
