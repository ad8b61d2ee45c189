-- heartbeat: workers report attempts alive, with optional progress, checkpoint,
-- fingerprint and usage: one beat, or a batch of up to 1000 beats of one partition (a
-- worker process's whole set), each judged as if it came alone, in order.
-- The first heartbeat moves dispatched -> running; a heartbeat of the current attempt
-- revives a stuck execution (a false alarm, counted), unless it was stuck for lack of
-- progress and the progress still has not moved, or stuck looping and no new fingerprint
-- broke the run (lua/_fingerprint.lua).
-- KEYS: 1 partition events stream, 2 start timer, 3 heartbeat timer, 4 progress timer,
--       5 stuck timer, 6 cancel timer, 7 partition's usage-journal index; then for each
--       beat, in order: its execution hash, and when it carries usage, its queue's usage
--       journal and settings hash
-- ARGV: 1 events max length, 2 history cap; then for beat i (from 0), at 3 + 7i: timer
--       member "<queue>/<id>", attempt, nonce, progress ('' none, else '=' and the text),
--       checkpoint ('' none, else '=' and the JSON), fingerprint ('' none;
--       lua/_fingerprint.lua), usage delta ('' none) as its journal entry
--       "<queue>/<id>|<attempt>|<seq>|<input>|<output>|<cached input>|<cost>|<model>"
--       (tokens, cost in micro-units; lua/_usage.lua)
-- Reply: one word per beat, in order, then the queues whose usage journal this call made
--        reach a multiple of 4096 entries (the caller folds them, so a journal stays
--        bounded when no watchdog runs). A beat's word:
--        'ok' (go on) | 'ok|<cancel requested 0|1>|<revived>|<cause>' ('revived' when a
--        stuck verdict was withdrawn: the caller then takes it out of the systemic stale
--        windows; the cause, e.g. 'budget_exceeded', when one was recorded) |
--        'stale|<current attempt>|<state>' | 'mismatch|<current attempt>|<state>' |
--        'terminal|<state>|<stop reason>' | 'missing' | 'bad_arg|<name>'
--        or {'bad_arg', 'beats'} for a batch of none or more than 1000 (nothing written)
-- Prelude: _lib.lua, _fingerprint.lua, _pause.lua, _usage.lua

-- The hot path, above the preludes (src/scripts.rs): a beat of a running execution by its
-- current attempt that carries no checkpoint, no new progress and no fingerprint, with no
-- cancel requested. A plain one reads six fields and writes two. One with a usage delta
-- for an execution without a budget ('0|0|0', set by its first delta) appends the delta,
-- which the caller sends as its journal entry, to the queue's journal, whose sums are
-- folded in later (lua/_usage.lua): nothing on the beat parses a number. Every other beat
-- (transitions, progress, checkpoints, refusals, budgets) is kept for the path below.
local n = (#ARGV - 2) / 7
if n < 1 or n > 1000 or n % 1 ~= 0 then return { 'bad_arg', 'beats' } end
local want = 7
for i = 0, n - 1 do
  if ARGV[9 + 7 * i] ~= '' then want = want + 3 else want = want + 1 end
end
if want ~= #KEYS then return { 'bad_arg', 'beats' } end
local out, reads, at, fold = {}, {}, {}, {}
local now, slow, k = nil, false, 8
for i = 0, n - 1 do
  local a = 2 + 7 * i
  local u = ARGV[a + 7]
  local h
  if u ~= '' then
    h = redis.call('HMGET', KEYS[k], 'st', 'att', 'tok', 'ht', 'cx', 'pr', 'bg')
  else
    h = redis.call('HMGET', KEYS[k], 'st', 'att', 'tok', 'ht', 'cx', 'pr')
  end
  local p = ARGV[a + 4]
  if h[1] == 'running' and ARGV[a + 5] == '' and ARGV[a + 6] == '' and h[2] == ARGV[a + 2]
    and h[3] == ARGV[a + 3] and (not h[5] or h[5] == '')
    and (p == '' or p == '=' .. (h[6] or ''))
    and (u == '' or (h[7] == '0|0|0' and #u <= 400)) then
    if not now then now = now_str() end
    redis.call('HSET', KEYS[k], 'hb', now)
    redis.call('ZADD', KEYS[3], tostring(tonumber(now) + tonumber(h[4])), ARGV[a + 1])
    if u ~= '' then
      local len = redis.call('RPUSH', KEYS[k + 1], u)
      if len == 1 then
        redis.call('SADD', KEYS[7], string.match(ARGV[a + 1], '^([^/]*)/'))
      elseif len % 4096 == 0 then
        fold[#fold + 1] = string.match(ARGV[a + 1], '^([^/]*)/')
      end
    end
    out[i + 1] = 'ok'
  else
    reads[i + 1], at[i + 1] = h, k
    slow = true
  end
  if u ~= '' then k = k + 3 else k = k + 1 end
end
if not slow then
  for _, q in ipairs(fold) do out[#out + 1] = q end
  return out
end
-- (the preludes go here)

local maxlen, cap = ARGV[1], uint(ARGV[2])

-- One beat off the hot path: i its number, h the hot path's read of its execution, k the
-- place of its keys. Returns its reply word.
local function beat(i, h, k)
  local a = 2 + 7 * i
  local key, member = KEYS[k], ARGV[a + 1]
  local has_progress, progress = ARGV[a + 4] ~= '', string.sub(ARGV[a + 4], 2)
  local has_checkpoint, fp, u = ARGV[a + 5] ~= '', ARGV[a + 6], ARGV[a + 7]
  if not uint(maxlen) or not cap then return 'bad_arg|limits' end
  if #fp > FINGERPRINT_MAX_BYTES then return 'bad_arg|fingerprint' end
  if h[1] and TERMINAL[h[1]] then
    return 'terminal|' .. h[1] .. '|' .. (redis.call('HGET', key, 'sr') or '')
  end
  local verdict = token_verdict(h[1], h[2], h[3], nil, ARGV[a + 2], ARGV[a + 3])
  if verdict then return table.concat(verdict, '|') end
  local usage = nil
  if u ~= '' then
    local bad
    usage, bad = usage_entry(u, member, ARGV[a + 2])
    if not usage then return 'bad_arg|' .. bad end
  end
  local moved = has_progress and progress ~= h[6]
  local cx = 0
  if h[5] and h[5] ~= '' then cx = 1 end
  local x = { key = key, events = KEYS[1], settings = KEYS[k + 2], journal = KEYS[k + 1],
    index = KEYS[7], cancel = KEYS[6], member = member, att = h[2], st = h[1] }

  -- A usage beat of a budgeted execution that would otherwise be hot: its total on the
  -- execution, judged against the budget (usage_fast), unless a threshold is crossed.
  if usage and h[1] == 'running' and not moved and not has_checkpoint and fp == ''
    and cx == 0 then
    local fields = usage_fast(x, usage)
    if fields then
      if not now then now = now_str() end
      redis.call('HSET', key, 'hb', now, unpack(fields))
      redis.call('ZADD', KEYS[3], tostring(tonumber(now) + tonumber(h[4])), member)
      usage_journal(x, usage, true)
      return 'ok'
    end
  end

  local more = redis.call('HMGET', key, 'npt', 'sk')
  local st, att, ht, npt = h[1], h[2], tonumber(h[4]), tonumber(more[1])
  if not now then now = now_str() end
  local now_n = tonumber(now)

  local run = loop_read(key, fp, false)
  local cause = ''
  if usage then
    local _
    x.maxlen, x.cap = maxlen, cap
    _, cause = apply_usage(x, usage, now)
    if cause ~= '' then cx = 1 end
  end
  if cx == 1 and cause == '' then cause = redis.call('HGET', key, 'cxr') or '' end

  local fields = { 'hb', now }
  if has_progress then fields[#fields + 1] = 'pr'; fields[#fields + 1] = progress end
  if has_checkpoint then fields[#fields + 1] = 'cp'; fields[#fields + 1] = string.sub(ARGV[a + 5], 2) end

  local to, reason = nil, nil
  if st == 'dispatched' then
    to, reason = 'running', 'started'
    redis.call('ZREM', KEYS[2], member)
    fields[#fields + 1] = 'sta'; fields[#fields + 1] = now
    moved = true -- the progress clock starts when the work starts
  elseif st == 'stuck' and loop_revives(more[2], moved, run) then
    to, reason = 'running', 'revived'
    redis.call('ZREM', KEYS[5], member)
    redis.call('HINCRBY', key, 'fa', '1')
    fields[#fields + 1] = 'ss'; fields[#fields + 1] = ''
    fields[#fields + 1] = 'sk'; fields[#fields + 1] = ''
    moved = true
  end

  if moved then
    fields[#fields + 1] = 'prc'; fields[#fields + 1] = now
  end
  if to then
    local about = redis.call('HMGET', key, 'hn', 'q', 'id')
    fields[#fields + 1] = 'st'; fields[#fields + 1] = to
    for _, v in ipairs({ hist_push(about[1], now, to, reason, att, cap) }) do
      fields[#fields + 1] = v
    end
    emit(KEYS[1], maxlen, about[2], about[3], att, st, to, reason, '')
  end
  loop_fields(run, fields)
  redis.call('HSET', key, unpack(fields))

  if to or st == 'running' then
    redis.call('ZADD', KEYS[3], tostring(now_n + ht), member)
    if npt > 0 and moved then redis.call('ZADD', KEYS[4], tostring(now_n + npt), member) end
    loop_timer(run, key, KEYS[4], member, now_n, npt, moved, to ~= nil)
  end
  if cx == 0 and reason ~= 'revived' then return 'ok' end
  return 'ok|' .. cx .. '|' .. (reason == 'revived' and 'revived' or '') .. '|' .. cause
end

for i = 0, n - 1 do
  if reads[i + 1] then out[i + 1] = beat(i, reads[i + 1], at[i + 1]) end
end
for _, q in ipairs(fold) do out[#out + 1] = q end
return out
