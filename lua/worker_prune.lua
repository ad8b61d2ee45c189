-- worker_prune: forget workers whose last registry heartbeat is older than a retention
-- period (crashed workers never deregister). Long before that, the watchdog has orphaned
-- whatever they held.
-- KEYS: 1 worker index zset
-- ARGV: 1 retention ms, 2 most entries to remove, 3 worker hash key prefix (prefix .. id)
-- Reply: {'ok', removed}

local retention, limit = uint(ARGV[1]), uint(ARGV[2])
if not retention or not limit then return { 'bad_arg', 'limits' } end
local now = now_ms()
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - retention, 'LIMIT', 0, limit)
for _, id in ipairs(old) do
  redis.call('DEL', ARGV[3] .. id)
  redis.call('ZREM', KEYS[1], id)
end
return { 'ok', #old }
