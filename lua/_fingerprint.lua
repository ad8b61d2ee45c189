-- Loop detection, prepended after _lib.lua to heartbeat.lua (which counts) and round.lua
-- (which judges).
-- A heartbeat may carry a fingerprint (ARGV 10 of heartbeat.lua: a short text naming the
-- last action and its result). The execution keeps the last one (`fp`) and how many beats
-- in a row carried it (`fpn`): the same fingerprint again adds one, a different one starts
-- a new run of 1, a beat without one leaves the run alone, and a new attempt starts with
-- none (_claim.lua clears both). When the run reaches the execution's max_repeats (`mr`;
-- 0 or absent: off) the beat makes the progress timer due now; the round's progress rule
-- asks `loop_verdict` first and judges the execution stuck `looping`, remediated like no
-- progress. A plain beat never comes here: it stays on heartbeat.lua's hot path.

local FINGERPRINT_MAX_BYTES = 128

-- The run as this beat leaves it, read only for a beat that carries a fingerprint (fp ''
-- and not `always`: nil, nothing to do). Fields: n (the run after the beat), was (the run
-- was at its limit before), looping (it is now), broke (fp differs from the last one), prc
-- (progress changed at, ms or nil), fp.
local function loop_read(key, fp, always)
  if fp == '' and not always then return nil end
  local v = redis.call('HMGET', key, 'fp', 'fpn', 'mr', 'prc')
  local before, max = tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local run = { n = before, prc = tonumber(v[4]), fp = fp, broke = false }
  if fp ~= '' then
    run.broke = v[1] ~= fp
    if run.broke then run.n = 1 else run.n = before + 1 end
  end
  run.was = max > 0 and before >= max
  run.looping = max > 0 and run.n >= max
  return run
end

-- Whether a beat revives a stuck execution of this kind: a looping one only when a new
-- fingerprint broke the run (a moving step counter is just what a busy loop shows), a
-- no-progress one only when the progress moved, any other at once.
local function loop_revives(kind, moved, run)
  if kind == 'looping' then return run ~= nil and run.broke end
  return kind ~= 'no_progress' or moved
end

-- Appends the fingerprint fields the beat writes to `fields` (HSET arguments).
local function loop_fields(run, fields)
  if not run or run.fp == '' then return end
  fields[#fields + 1] = 'fp'; fields[#fields + 1] = run.fp
  fields[#fields + 1] = 'fpn'; fields[#fields + 1] = tostring(run.n)
end

-- After the beat set its timers, for an execution left running: while the run is at its
-- limit the progress timer stays due now (a moving step counter must not postpone the
-- verdict); when a new fingerprint broke a run that was at its limit, the timer goes back
-- to the no-progress rule (or away, when that rule is off). `run` is nil for a beat
-- without a fingerprint: it is read only when the beat moved the progress timer or
-- changed the state (a revived execution whose run is at its limit is judged again).
local function loop_timer(run, key, timer, member, now_n, npt, moved, changed)
  if not run then
    if not ((moved and npt > 0) or changed) then return end
    run = loop_read(key, '', true)
  end
  if run.looping then
    redis.call('ZADD', timer, tostring(now_n), member)
  elseif run.was then
    if npt > 0 then
      local since = run.prc
      if moved or not since then since = now_n end
      redis.call('ZADD', timer, tostring(since + npt), member)
    else
      redis.call('ZREM', timer, member)
    end
  end
end

-- The round's question for a running execution whose progress timer is due: the detail
-- of a `looping` verdict when its run of identical fingerprints is at max_repeats, else
-- nil. `e` is the execution as load_exec (_watchdog.lua) read it.
local function loop_verdict(e)
  if not e.mr or e.mr <= 0 or not e.fpn or e.fpn < e.mr then return nil end
  return string.format('same fingerprint %d times in a row (max_repeats %d)', e.fpn, e.mr)
end
