-- worker_request: an operator asks a worker, in its next registry heartbeat reply, to
-- restart or to drain (what tier 1 asks; this needs no verdict). Its tier is unchanged.
-- KEYS: 1 worker hash, 2 workers events stream
-- ARGV: 1 events max length, 2 restart | drain, 3 who (for the event), 4 why
-- Reply: {'ok'} | {'unknown'}
-- Prelude: _lib.lua, _watchdog.lua, _tiers.lua

local maxlen = uint(ARGV[1])
if not maxlen or (ARGV[2] ~= 'restart' and ARGV[2] ~= 'drain') then
  return { 'bad_arg', 'args' }
end
local w = load_tier(KEYS[1])
if not w then return { 'unknown' } end
redis.call('HSET', KEYS[1], 'req', ARGV[2])
ACTOR = ARGV[3]
emit_tier(KEYS[2], maxlen, w.id, w.tr, w.tr, 'asked_to_' .. ARGV[2], ARGV[4])
return { 'ok' }
