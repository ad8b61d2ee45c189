-- orphan: executions whose worker is gone (its registry heartbeat is too old) or no longer
-- lists them take the retry path (or end dead when attempts are used up). The registry
-- lives in another hash tag, so the caller's registry reading is the hint; this script
-- re-checks what it can see: the execution is still active, still held by that worker,
-- under that attempt, and -- for a gone worker -- has not heartbeated within the time the
-- worker is allowed between registry beats: an execution whose heartbeats still arrive
-- shows its worker alive, whatever the registry says. Fenced by the caller's lease.
-- KEYS: 1 lease hash, 2 events stream, 3 deadline timer, 4 start timer, 5 heartbeat timer,
--       6 progress timer, 7 stuck timer, 8 cancel timer, 9 watch-state hash (totals)
-- ARGV: 1 owner, 2 epoch, 3 events max length, 4 history cap, 5-9 the partition's key
--       layout (see _watchdog.lua), 10 trace (1: list every action after the counts, see
--       trace_actions), then groups of 6: member, worker id, attempt,
--       detail, due ms, alive-within ms
--       (skip when the execution heartbeated more recently than that; 0: never skip)
-- Reply: {'lease_lost'} | {'ok', retried, dead, cancelled, skipped, then with trace one
--        entry per action}
-- Prelude: _lib.lua, _watchdog.lua

local maxlen, hist_cap = uint(ARGV[3]), uint(ARGV[4])
local K = layout_from(ARGV, 5)
if not maxlen or not hist_cap or not K or (#ARGV - 10) % 6 ~= 0 then
  return { 'bad_arg', 'args' }
end
local now = now_ms()
if not lease_current(KEYS[1], ARGV[1], ARGV[2], now) then return { 'lease_lost' } end
if ARGV[10] == '1' then trace_actions(K) end
local timers = { deadline = KEYS[3], start = KEYS[4], heartbeat = KEYS[5],
  progress = KEYS[6], stuck = KEYS[7], cancel = KEYS[8] }
local ctx = { events = KEYS[2], maxlen = maxlen, hist_cap = hist_cap }
local n = { retried = 0, dead = 0, cancelled = 0, skipped = 0 }
for i = 11, #ARGV, 6 do
  local member, worker, attempt = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local alive_within = tonumber(ARGV[i + 5]) or 0
  local e = load_exec(K, member)
  local beating = alive_within > 0 and e and e.hb and now - e.hb < alive_within
  if e and ACTIVE[e.st] and e.wk == worker and e.att == attempt and not beating then
    local outcome = retry_or_dead(K, e, timers, now, 'worker_lost', ARGV[i + 3], ARGV[i + 4], ctx)
    n[outcome] = n[outcome] + 1
  else
    n.skipped = n.skipped + 1
  end
end
n.orphaned = n.retried + n.dead + n.cancelled
add_totals(KEYS[9], n)
local reply = { 'ok', n.retried, n.dead, n.cancelled, n.skipped }
for _, action in ipairs(TRACED) do reply[#reply + 1] = action end
return reply
