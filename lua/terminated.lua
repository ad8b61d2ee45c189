-- terminated: the terminate hook of an execution whose deadline passed reported success:
-- now, and only now, it is timed out and its slot released (round.lua marked it `tm` and
-- left it alone). A report for another attempt, or for an execution that finished
-- meanwhile (its worker completed it), changes nothing. Fenced by the caller's lease.
-- KEYS: 1 lease hash, 2 events stream, 3 deadline timer, 4 start timer, 5 heartbeat timer,
--       6 progress timer, 7 stuck timer, 8 cancel timer, 9 watch-state hash (totals)
-- ARGV: 1 owner, 2 epoch, 3 events max length, 4 history cap, 5-9 the partition's key
--       layout (see _watchdog.lua), 10 member, 11 attempt, 12 detail
-- Reply: {'lease_lost'} | {'ok', 1 when it was timed out now, else 0}
-- Prelude: _lib.lua, _watchdog.lua

local maxlen, hist_cap, attempt = uint(ARGV[3]), uint(ARGV[4]), uint(ARGV[11])
local K = layout_from(ARGV, 5)
if not maxlen or not hist_cap or not K or not attempt or not ARGV[10] then
  return { 'bad_arg', 'args' }
end
local now = now_ms()
if not lease_current(KEYS[1], ARGV[1], ARGV[2], now) then return { 'lease_lost' } end
local e = load_exec(K, ARGV[10])
if not e or not ACTIVE[e.st] or not e.tm or e.att ~= attempt then return { 'ok', 0 } end
local timers = { deadline = KEYS[3], start = KEYS[4], heartbeat = KEYS[5],
  progress = KEYS[6], stuck = KEYS[7], cancel = KEYS[8] }
local ctx = { events = KEYS[2], maxlen = maxlen, hist_cap = hist_cap }
finish(K, e, timers, now, 'timed_out', 'deadline_exceeded', 'deadline_exceeded',
  string.format('deadline of %dms exceeded in state %s on attempt %d; terminated: %s', e.dl,
    e.st, e.att, ARGV[12]), e.tm, ctx)
add_totals(KEYS[9], { timed_out = 1 })
return { 'ok', 1 }
