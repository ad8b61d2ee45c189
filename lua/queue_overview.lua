-- queue_overview: a queue's counts at one instant, read only: how many wait (and how many
-- of those are claimable now), how many hold a slot, its capacity, the oldest waiting, and
-- its pause (lua/_pause.lua).
-- KEYS: 1 queue pending zset, 2 queue slots hash, 3 queue settings hash, 4.. the queue's
--       terminal lists (succeeded, failed, cancelled, timed_out, dead)
-- ARGV: 1 default capacity
-- Reply: {'ok', depth, available, active, capacity, oldest available_at ms ('' if none),
--         now ms, paused since ms ('' when it runs), paused by, why paused, then the
--         length of each terminal list in KEYS order}
-- Prelude: _lib.lua, _pause.lua

local default_cap = uint(ARGV[1])
if not default_cap then return { 'bad_arg', 'capacity' } end
local now = now_str()
local depth = redis.call('ZCARD', KEYS[1])
local available = redis.call('ZCOUNT', KEYS[1], '-inf', now)
local oldest = ''
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head > 0 then oldest = tostring(math.floor(tonumber(head[2]))) end
local capacity = uint(redis.call('HGET', KEYS[3], 'cap')) or default_cap
local pause = queue_pause(KEYS[3]) or { '', '', '' }
local reply = { 'ok', depth, available, redis.call('HLEN', KEYS[2]), capacity, oldest, now,
  pause[1], pause[2], pause[3] }
for i = 4, #KEYS do reply[#reply + 1] = redis.call('LLEN', KEYS[i]) end
return reply
