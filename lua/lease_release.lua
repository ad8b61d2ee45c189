-- lease_release: hand a partition's lease back (graceful shutdown or rebalancing), only if
-- the caller still holds it under the same epoch.
-- KEYS: 1 lease hash
-- ARGV: 1 owner, 2 epoch
-- Reply: {'released'} | {'not_held'}
-- Prelude: _lib.lua

local l = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
if l[1] ~= ARGV[1] or l[2] ~= ARGV[2] then return { 'not_held' } end
redis.call('DEL', KEYS[1])
return { 'released' }
