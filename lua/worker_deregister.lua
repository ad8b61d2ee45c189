-- worker_deregister: remove a worker from the registry (graceful shutdown).
-- KEYS: 1 worker hash, 2 worker index zset
-- ARGV: 1 worker id
-- Reply: {'ok'} | {'unknown'}
-- Prelude: _lib.lua

local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 0 then return { 'unknown' } end
return { 'ok' }
