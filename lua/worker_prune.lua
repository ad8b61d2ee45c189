-- worker_prune: forget workers whose last registry heartbeat is older than a retention
-- period (crashed workers never deregister). Long before that, the watchdog has orphaned
-- whatever they held.
-- A worker that declared a long registry heartbeat interval is kept until it missed three
-- of them (the watchdog's own rule for judging it gone).
-- KEYS: 1 worker index zset
-- ARGV: 1 retention ms, 2 most entries to remove, 3 worker hash key prefix (prefix .. id)
-- Reply: {'ok', removed}
-- Prelude: _lib.lua

local retention, limit = uint(ARGV[1]), uint(ARGV[2])
if not retention or not limit then return { 'bad_arg', 'limits' } end
local now = now_ms()
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - retention, 'WITHSCORES',
  'LIMIT', 0, limit)
local removed = 0
for i = 1, #old, 2 do
  local id, seen = old[i], tonumber(old[i + 1])
  local interval = tonumber(redis.call('HGET', ARGV[3] .. id, 'ivl') or '0') or 0
  if seen + 3 * interval <= now - retention then
    redis.call('DEL', ARGV[3] .. id)
    redis.call('ZREM', KEYS[1], id)
    removed = removed + 1
  end
end
return { 'ok', removed }
