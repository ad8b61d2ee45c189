-- heartbeat: a worker reports it is alive, with optional progress and checkpoint.
-- The first heartbeat moves dispatched -> running; a heartbeat of the current attempt
-- revives a stuck execution (a false alarm, counted), unless it was stuck for lack of
-- progress and the progress still has not moved, or stuck looping and no new fingerprint
-- broke the run (lua/_fingerprint.lua).
-- KEYS: 1 execution hash, 2 partition events stream, 3 start timer, 4 heartbeat timer,
--       5 progress timer, 6 stuck timer; with usage: 7 queue settings hash, 8 queue
--       usage hash, 9 cancel timer
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 has progress '1'|'0',
--       5 progress, 6 has checkpoint '1'|'0', 7 checkpoint JSON, 8 events max length,
--       9 history cap, 10 fingerprint ('' none; lua/_fingerprint.lua), 11..16 usage delta (absent: none):
--       seq, input tokens, output tokens, cached input tokens, cost (micro-units), model
-- Reply: {'ok', cancel_requested 0|1[, 'revived'|''[, cancel cause]]} ('revived' when a
--        stuck verdict was withdrawn: the caller then takes it out of the systemic stale
--        windows; the cause, e.g. 'budget_exceeded', when one was recorded)
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua, _fingerprint.lua, _pause.lua, _usage.lua

-- The hot path: a beat of a running execution by its current attempt that carries no
-- checkpoint and no new progress. A plain one reads six fields and writes two; one with a
-- usage delta reads its sums and budget in the same HMGET and applies the delta there
-- (usage_fast, lua/_usage.lua) unless it is a replay or crosses a budget threshold.
-- Everything else (transitions, progress, checkpoints, refusals, budget events) takes the
-- slow path below.
local h
if ARGV[11] then
  h = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'ht', 'cx', 'pr', 'usq', 'us',
    'um:' .. (ARGV[16] or ''), 'bg', 'bgw')
else
  h = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'ht', 'cx', 'pr')
end
local moved = ARGV[4] == '1' and ARGV[5] ~= h[6]
local cx = 0
if h[5] and h[5] ~= '' then cx = 1 end
local fp = ARGV[10] or ''
if h[1] == 'running' and not moved and ARGV[6] ~= '1' and fp == '' and h[2] == ARGV[2]
  and h[3] == ARGV[3] and cx == 0 then
  local now = now_str()
  if not ARGV[11] then
    redis.call('HSET', KEYS[1], 'hb', now)
    redis.call('ZADD', KEYS[4], tostring(tonumber(now) + tonumber(h[4])), ARGV[1])
    return { 'ok', cx }
  end
  local fields = usage_fast(h, ARGV, KEYS[7], KEYS[8], now)
  if fields then
    redis.call('HSET', KEYS[1], 'hb', now, unpack(fields))
    redis.call('ZADD', KEYS[4], tostring(tonumber(now) + tonumber(h[4])), ARGV[1])
    return { 'ok', cx }
  end
end

local maxlen, cap = ARGV[8], uint(ARGV[9])
if not uint(maxlen) or not cap then return { 'bad_arg', 'limits' } end
if #fp > FINGERPRINT_MAX_BYTES then return { 'bad_arg', 'fingerprint' } end
if h[1] and TERMINAL[h[1]] then
  return { 'terminal', h[1], redis.call('HGET', KEYS[1], 'sr') or '' }
end
local verdict = token_verdict(h[1], h[2], h[3], nil, ARGV[2], ARGV[3])
if verdict then return verdict end
local usage, bad = nil, nil
if ARGV[11] then
  usage, bad = usage_arg(ARGV, 11)
  if not usage then return { 'bad_arg', bad } end
end

local more = redis.call('HMGET', KEYS[1], 'npt', 'sk')
local st, att, ht, npt = h[1], h[2], tonumber(h[4]), tonumber(more[1])
local member = ARGV[1]
local now = now_str()
local now_n = tonumber(now)

local run = loop_read(KEYS[1], fp, false)
local cause = ''
if usage then
  local _
  _, cause = apply_usage({ key = KEYS[1], events = KEYS[2], maxlen = maxlen, cap = cap,
    settings = KEYS[7], usage = KEYS[8], cancel = KEYS[9], member = member, att = att,
    st = st }, usage, now)
  if cause ~= '' then cx = 1 end
end
if cx == 1 and cause == '' then cause = redis.call('HGET', KEYS[1], 'cxr') or '' end

local fields = { 'hb', now }
if ARGV[4] == '1' then fields[#fields + 1] = 'pr'; fields[#fields + 1] = ARGV[5] end
if ARGV[6] == '1' then fields[#fields + 1] = 'cp'; fields[#fields + 1] = ARGV[7] end

local to, reason = nil, nil
if st == 'dispatched' then
  to, reason = 'running', 'started'
  redis.call('ZREM', KEYS[3], member)
  fields[#fields + 1] = 'sta'; fields[#fields + 1] = now
  moved = true -- the progress clock starts when the work starts
elseif st == 'stuck' and loop_revives(more[2], moved, run) then
  to, reason = 'running', 'revived'
  redis.call('ZREM', KEYS[6], member)
  redis.call('HINCRBY', KEYS[1], 'fa', '1')
  fields[#fields + 1] = 'ss'; fields[#fields + 1] = ''
  fields[#fields + 1] = 'sk'; fields[#fields + 1] = ''
  moved = true
end

if moved then
  fields[#fields + 1] = 'prc'; fields[#fields + 1] = now
end
if to then
  local about = redis.call('HMGET', KEYS[1], 'hn', 'q', 'id')
  fields[#fields + 1] = 'st'; fields[#fields + 1] = to
  for _, v in ipairs({ hist_push(about[1], now, to, reason, att, cap) }) do
    fields[#fields + 1] = v
  end
  emit(KEYS[2], maxlen, about[2], about[3], att, st, to, reason, '')
end
loop_fields(run, fields)
redis.call('HSET', KEYS[1], unpack(fields))

if to or st == 'running' then
  redis.call('ZADD', KEYS[4], tostring(now_n + ht), member)
  if npt > 0 and moved then redis.call('ZADD', KEYS[5], tostring(now_n + npt), member) end
  loop_timer(run, KEYS[1], KEYS[5], member, now_n, npt, moved, to ~= nil)
end
if cause ~= '' then return { 'ok', cx, reason == 'revived' and 'revived' or '', cause } end
if reason == 'revived' then return { 'ok', cx, 'revived' } end
return { 'ok', cx }
