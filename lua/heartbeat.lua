-- heartbeat: a worker reports it is alive, with optional progress and checkpoint.
-- The first heartbeat moves dispatched -> running; a heartbeat of the current attempt
-- revives a stuck execution (a false alarm, counted), unless it was stuck for lack of
-- progress and the progress still has not moved, or stuck looping and no new fingerprint
-- broke the run (lua/_fingerprint.lua).
-- KEYS: 1 execution hash, 2 partition events stream, 3 start timer, 4 heartbeat timer,
--       5 progress timer, 6 stuck timer; with usage: 7 queue settings hash, 8 queue usage
--       journal, 9 partition's usage-journal index, 10 cancel timer
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 has progress '1'|'0',
--       5 progress, 6 has checkpoint '1'|'0', 7 checkpoint JSON, 8 events max length,
--       9 history cap, 10 fingerprint ('' none; lua/_fingerprint.lua), 11 usage delta
--       (absent: none) as its journal entry "<queue>/<id>|<attempt>|<seq>|<input>|<output>|
--       <cached input>|<cost>|<model>" (tokens, cost in micro-units; lua/_usage.lua)
-- Reply: {'ok', cancel_requested 0|1[, 'revived'|''[, cancel cause[, 'fold']]]} ('revived'
--        when a stuck verdict was withdrawn: the caller then takes it out of the systemic
--        stale windows; the cause, e.g. 'budget_exceeded', when one was recorded; 'fold'
--        when the queue's usage journal reached a multiple of 4096 entries: the caller
--        folds it, so it stays bounded when no watchdog runs)
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua, _fingerprint.lua, _pause.lua, _usage.lua

-- The hot path, above the preludes (src/scripts.rs): a beat of a running execution by its
-- current attempt that carries no checkpoint, no new progress and no fingerprint. A plain
-- one reads six fields and writes two. One with a usage delta for an execution without a
-- budget ('0|0|0', set by its first delta) appends the delta, which the caller sends as
-- its journal entry, to the queue's journal, whose sums are folded in later
-- (lua/_usage.lua): nothing on the beat parses a number. Everything else (transitions,
-- progress, checkpoints, refusals, budgets) takes the path below.
local u = ARGV[11]
local h
if u then
  h = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'ht', 'cx', 'pr', 'bg')
else
  h = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'ht', 'cx', 'pr')
end
local moved = ARGV[4] == '1' and ARGV[5] ~= h[6]
local cx = 0
if h[5] and h[5] ~= '' then cx = 1 end
local fp = ARGV[10] or ''
if h[1] == 'running' and not moved and ARGV[6] ~= '1' and fp == '' and h[2] == ARGV[2]
  and h[3] == ARGV[3] and cx == 0 and (not u or (h[7] == '0|0|0' and #u <= 400)) then
  local now = now_str()
  redis.call('HSET', KEYS[1], 'hb', now)
  redis.call('ZADD', KEYS[4], tostring(tonumber(now) + tonumber(h[4])), ARGV[1])
  if u then
    local n = redis.call('RPUSH', KEYS[8], u)
    if n == 1 then
      redis.call('SADD', KEYS[9], string.match(ARGV[1], '^([^/]*)/'))
    elseif n % 4096 == 0 then
      return { 'ok', cx, '', '', 'fold' }
    end
  end
  return { 'ok', cx }
end
-- (the preludes go here)

local maxlen, cap = ARGV[8], uint(ARGV[9])
if not uint(maxlen) or not cap then return { 'bad_arg', 'limits' } end
if #fp > FINGERPRINT_MAX_BYTES then return { 'bad_arg', 'fingerprint' } end
if h[1] and TERMINAL[h[1]] then
  return { 'terminal', h[1], redis.call('HGET', KEYS[1], 'sr') or '' }
end
local verdict = token_verdict(h[1], h[2], h[3], nil, ARGV[2], ARGV[3])
if verdict then return verdict end
local usage, bad = nil, nil
if u then
  usage, bad = usage_entry(u, ARGV[1], ARGV[2])
  if not usage then return { 'bad_arg', bad } end
end
local x = { key = KEYS[1], events = KEYS[2], settings = KEYS[7], journal = KEYS[8],
  index = KEYS[9], cancel = KEYS[10], member = ARGV[1], att = h[2], st = h[1] }

-- A usage beat of a budgeted execution that would otherwise be hot: its sums on the
-- execution, judged against the budget (usage_fast), unless a threshold is crossed.
if usage and h[1] == 'running' and not moved and ARGV[6] ~= '1' and fp == '' and cx == 0 then
  local fields = usage_fast(x, usage)
  if fields then
    local now = now_str()
    redis.call('HSET', KEYS[1], 'hb', now, unpack(fields))
    redis.call('ZADD', KEYS[4], tostring(tonumber(now) + tonumber(h[4])), ARGV[1])
    usage_journal(x, usage, 'a')
    return { 'ok', cx }
  end
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
  x.maxlen, x.cap = maxlen, cap
  _, cause = apply_usage(x, usage, now)
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
