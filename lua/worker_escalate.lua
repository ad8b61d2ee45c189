-- worker_escalate: a worker judged bad (stale, outdated or wedged) goes up one tier, once
-- the cooldown of the tier it is in has passed; after a tier-3 action that did not fix it
-- the failure is counted, and the circuit opens once `failures` of them fall within
-- `window` (or at once when nothing could terminate the worker). An open circuit is left
-- alone until an operator resets it (worker_reset.lua). The script re-checks what it can
-- see in the worker hash: staleness against Redis TIME, the version stamp; a wedged
-- verdict (all its executions stuck: other hash tags) is the caller's hint.
-- Fenced by the workers lease (owner, epoch), as partition scripts are by theirs.
-- The hook calls a change owes go into the outbox in the same script (_outbox.lua), so
-- none is lost if the replica dies right after: the hooks of the tier reached (those of
-- tier 2 and 3 are its terminate and kill actions; their outcome settles the action, see
-- hook_complete.lua), and those of an opened circuit.
-- KEYS: 1 workers lease hash, 2 worker hash, 3 workers events stream, 4 hook outbox list
-- ARGV: 1 owner, 2 epoch, 3 events max length, 4 verdict (stale | outdated | wedged),
--       5 detail, 6 gone-after ms, 7 expected version ('' none), 8 request word,
--       9 cooldown ms tier 1, 10 tier 2, 11 tier 3, 12 breaker failures, 13 breaker window
--       ms, 14 a local pid can be signalled (1) or not (0), 15 new action id,
--       16 hook call key prefix, 17-20 hooks (comma-separated names) of tier 1, tier 2,
--       tier 3 and circuit opened, 21 host, 22 pid
-- Reply: {'lease_lost'} | {'gone'} | {'healthy'} | {'open'} | {'cooling', ms left}
--        | {'done'} | {'tier', tier, action id, 1 when hooks carry out its action}
--        | {'opened', failures}
-- Prelude: _lib.lua, _watchdog.lua, _tiers.lua, _outbox.lua

local maxlen, gone_after = uint(ARGV[3]), uint(ARGV[6])
local cool = { uint(ARGV[9]), uint(ARGV[10]), uint(ARGV[11]) }
local failures, window = uint(ARGV[12]), uint(ARGV[13])
local verdict = ARGV[4]
if not maxlen or not gone_after or not cool[1] or not cool[2] or not cool[3]
  or not failures or failures < 1 or not window or (ARGV[14] ~= '0' and ARGV[14] ~= '1')
  or ARGV[15] == '' or ARGV[16] == '' or not uint(ARGV[22]) then
  return { 'bad_arg', 'args' }
end
local hooks = { ARGV[17], ARGV[18], ARGV[19], opened = ARGV[20] }
if verdict ~= 'stale' and verdict ~= 'outdated' and verdict ~= 'wedged' then
  return { 'bad_arg', 'verdict' }
end
local now = now_ms()
if not lease_current(KEYS[1], ARGV[1], ARGV[2], now) then return { 'lease_lost' } end
local w = load_tier(KEYS[2])
if not w then return { 'gone' } end
if w.cb == 'open' then return { 'open' } end
local stale = w.seen + gone_after < now
if (verdict == 'stale' and not stale) or (verdict == 'wedged' and stale)
  or (verdict == 'outdated' and (ARGV[7] == '' or w.ver == ARGV[7])) then
  return { 'healthy' }
end
if w.tr > 0 and now < w.tat + cool[w.tr] then return { 'cooling', w.tat + cool[w.tr] - now } end
-- A terminate or kill that worked: the process is gone, unless it beat again since.
if w.done and w.seen <= w.done then return { 'done' } end

local detail = verdict .. ': ' .. ARGV[5]
-- Puts the calls of `list` in the outbox; `act`: they carry out the tier's action.
local function owe(kind, list, tier, text, act)
  for hook in string.gmatch(list, '[^,]+') do
    local key = hook .. ':' .. ARGV[15]
    local body = cjson.encode({ kind = kind, idempotency_key = key, worker_id = w.id,
      host = ARGV[21], pid = tonumber(ARGV[22]), tier = tier, verdict = verdict,
      detail = text, action_id = ARGV[15], at_ms = now, replica = ARGV[1] })
    outbox_add(KEYS[4], ARGV[16], key, hook, body, w.id, act and ARGV[15] or '', now)
  end
end
local function open(reason, text, t3f, t3w)
  redis.call('HSET', KEYS[2], 'cb', 'open', 'cbat', now, 'cbr', text, 't3f', t3f,
    't3w', t3w or '', 'act', '')
  emit_tier(KEYS[3], maxlen, w.id, w.tr, w.tr, reason, text)
  owe('worker.circuit_opened', hooks.opened, w.tr, text, false)
  return { 'opened', t3f }
end
if w.tr == 3 then
  -- The last kill-and-restart did not fix it (its hook failed, or it is still bad).
  local t3f, t3w = w.t3f + 1, w.t3w
  if not t3w or now - t3w > window then t3f, t3w = 1, now end
  if t3f >= failures then
    return open('circuit_opened', string.format(
      '%d tier-3 actions failed within %dms; unstuck stops acting on this worker: %s',
      t3f, window, detail), t3f, t3w)
  end
  w.t3f, w.t3w = t3f, t3w
end
local to = math.min(w.tr + 1, 3)
local by_hook = to >= 2 and hooks[to] ~= ''
if to >= 2 and ARGV[14] == '0' and not by_hook then
  return open('circuit_opened', 'no terminate or kill hook and no local pid to signal; '
    .. 'unstuck cannot act on this worker: ' .. detail, w.t3f, w.t3w)
end
redis.call('HSET', KEYS[2], 'tr', to, 'tat', now, 'tvd', verdict, 'req', ARGV[8],
  'act', to == 1 and '' or 'pending', 'aid', ARGV[15], 'adt', '', 'done', '',
  't3f', w.t3f, 't3w', w.t3w or '')
emit_tier(KEYS[3], maxlen, w.id, w.tr, to, 'tier_' .. to, detail)
owe('worker.tier_' .. to, hooks[to], to, detail, to >= 2)
return { 'tier', to, ARGV[15], by_hook and 1 or 0 }
