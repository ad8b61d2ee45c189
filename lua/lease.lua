-- lease: acquire a partition's watchdog lease, or renew it when the caller holds it.
-- A new holder gets a new epoch from the partition's INCR counter, so writes fenced by an
-- older epoch are refused even if the old holder comes back with the same owner id.
-- Expiry is judged by Redis TIME.
-- KEYS: 1 lease hash, 2 epoch counter
-- ARGV: 1 owner (replica id), 2 ttl ms, 3 epoch the caller believes it holds ('' if none)
-- Reply: {'acquired', epoch, expires_in_ms} | {'renewed', epoch, expires_in_ms}
--        {'held', owner, expires_in_ms} | {'bad_arg', name}
-- Prelude: _lib.lua

local ttl = uint(ARGV[2])
if not ttl or ttl < 1 then return { 'bad_arg', 'ttl' } end
local now = now_ms()
local l = redis.call('HMGET', KEYS[1], 'owner', 'epoch', 'exp')
local live = l[1] and tonumber(l[3] or 0) > now
if live and l[1] ~= ARGV[1] then return { 'held', l[1], tonumber(l[3]) - now } end
if live and l[2] == ARGV[3] then
  redis.call('HSET', KEYS[1], 'exp', now + ttl)
  return { 'renewed', l[2], ttl }
end
-- Free, expired, or held by this owner under an epoch it no longer knows (a restart):
-- take it under a fresh epoch.
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'epoch', epoch, 'exp', now + ttl, 'since', now)
return { 'acquired', tostring(epoch), ttl }
