-- worker_recover: a worker in a tier that is judged healthy again (it beats, runs the
-- expected version, and is not wedged: the caller's hint) goes back to tier 0, and its
-- count of failed tier-3 actions restarts ("consecutive"). An open circuit stays open
-- until an operator resets it. Fenced by the workers lease.
-- KEYS: 1 workers lease hash, 2 worker hash, 3 workers events stream
-- ARGV: 1 owner, 2 epoch, 3 events max length, 4 gone-after ms, 5 expected version
--       ('' none), 6 detail
-- Reply: {'lease_lost'} | {'gone'} | {'unchanged'} | {'ok', tier left}
-- Prelude: _lib.lua, _watchdog.lua, _tiers.lua

local maxlen, gone_after = uint(ARGV[3]), uint(ARGV[4])
if not maxlen or not gone_after then return { 'bad_arg', 'args' } end
local now = now_ms()
if not lease_current(KEYS[1], ARGV[1], ARGV[2], now) then return { 'lease_lost' } end
local w = load_tier(KEYS[2])
if not w then return { 'gone' } end
local healthy = w.seen + gone_after >= now and (ARGV[5] == '' or w.ver == ARGV[5])
  and (not w.done or w.seen > w.done)
if w.cb == 'open' or w.tr == 0 or not healthy then return { 'unchanged' } end
redis.call('HSET', KEYS[2], 'tr', 0, 'tat', now, 'req', '', 'act', '', 'aid', '', 'done', '',
  't3f', 0, 't3w', '')
emit_tier(KEYS[3], maxlen, w.id, w.tr, 0, 'recovered', ARGV[6])
return { 'ok', w.tr }
