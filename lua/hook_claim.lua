-- hook_claim: a replica claims up to `n` hook calls for `visibility` ms under a fresh
-- token. Claims that lapsed (their replica died or stalled mid-call) go back to the front
-- of the queue first, so a call is delivered again -- under the same idempotency key --
-- rather than lost. Settled calls past their retention are forgotten. O(n).
-- KEYS: 1 pending list, 2 running zset (key by claim expiry), 3 settled zset (key by
--       settling time)
-- ARGV: 1 call key prefix, 2 visibility ms, 3 n, 4 token, 5 retention ms
-- Reply: {'ok', reclaimed, then groups of 4: key, hook name, body, delivery number}
-- Prelude: _lib.lua, _outbox.lua

local vis, n, retention = uint(ARGV[2]), uint(ARGV[3]), uint(ARGV[5])
if not vis or not n or n < 1 or not retention or ARGV[1] == '' or ARGV[4] == '' then
  return { 'bad_arg', 'args' }
end
local now = now_ms()
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - retention,
    'LIMIT', 0, n)) do
  redis.call('DEL', ARGV[1] .. key)
  redis.call('ZREM', KEYS[3], key)
end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, n)
for _, key in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], key)
  if redis.call('HGET', ARGV[1] .. key, 'st') == 'running' then
    redis.call('HSET', ARGV[1] .. key, 'st', 'pending', 'tok', '')
    redis.call('LPUSH', KEYS[1], key)
  end
end
local out = { 'ok', #lapsed }
for _ = 1, n do
  local key = redis.call('LPOP', KEYS[1])
  if not key then break end
  local call = ARGV[1] .. key
  local c = redis.call('HMGET', call, 'st', 'hk', 'body')
  if c[1] == 'pending' then
    local att = redis.call('HINCRBY', call, 'att', 1)
    redis.call('HSET', call, 'st', 'running', 'tok', ARGV[4])
    redis.call('ZADD', KEYS[2], now + vis, key)
    out[#out + 1] = key
    out[#out + 1] = c[2]
    out[#out + 1] = c[3]
    out[#out + 1] = att
  end
end
return out
