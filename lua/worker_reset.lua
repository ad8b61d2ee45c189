-- worker_reset: an operator resets a worker's remediation: its tier, its count of failed
-- tier-3 actions and an open circuit. The watchdog judges it afresh from tier 0.
-- KEYS: 1 worker hash, 2 workers events stream
-- ARGV: 1 events max length, 2 who (for the event), 3 why
-- Reply: {'ok', tier it was in, 1 when the circuit was open} | {'unknown'}
-- Prelude: _lib.lua, _watchdog.lua, _tiers.lua

local maxlen = uint(ARGV[1])
if not maxlen then return { 'bad_arg', 'args' } end
local w = load_tier(KEYS[1])
if not w then return { 'unknown' } end
local now = now_ms()
redis.call('HSET', KEYS[1], 'tr', 0, 'tat', now, 'req', '', 'act', '', 'aid', '', 'done', '',
  't3f', 0, 't3w', '', 'cb', '', 'cbat', '', 'cbr', '')
ACTOR = ARGV[2]
emit_tier(KEYS[2], maxlen, w.id, w.tr, 0, 'circuit_reset', ARGV[3])
return { 'ok', w.tr, w.cb == 'open' and 1 or 0 }
