-- round: one judgement pass over a partition's due timers, fenced by the caller's lease.
-- The scan (ZRANGEBYSCORE -inf now LIMIT) runs here, on Redis TIME, and each due entry is
-- re-checked against its execution before anything is written (invariant 5); entries that
-- no longer apply are fixed (re-scored or removed), never acted on.
-- Order: deadline first (failed is a stronger statement than stuck), then start grace,
-- heartbeat, progress, stuck threshold, cancel grace.
-- Systemic hold (invariant 10): when the partition went unwatched for longer than
-- `absence_ms`, or when more than `share` of its running executions went stale since the
-- last hold, staleness rules (start, heartbeat, progress, stuck, cancel) pause for
-- `grace_ms` and a `systemic_hold` event says so; deadlines still apply.
-- KEYS: 1 lease hash, 2 watch-state hash, 3 events stream, 4 deadline timer, 5 start timer,
--       6 heartbeat timer, 7 progress timer, 8 stuck timer, 9 cancel timer
-- ARGV: 1 owner, 2 epoch, 3 batch (most entries examined), 4 events max length,
--       5 history cap, 6 partition tag T, 7 absence_ms, 8 share (per mille),
--       9 min running for the share rule, 10 grace_ms
-- Reply: {'lease_lost'} | {'ok', timed_out, stuck, retried, dead, cancelled, fixed,
--         more (1 when the batch ran out), next_due_in_ms (-1: no timer), holding_ms
--         (0: no hold), hold_started (0|1)}

local owner, epoch = ARGV[1], ARGV[2]
local batch, maxlen, hist_cap = uint(ARGV[3]), uint(ARGV[4]), uint(ARGV[5])
local T = ARGV[6]
local absence, share, min_running, grace = uint(ARGV[7]), uint(ARGV[8]), uint(ARGV[9]),
  uint(ARGV[10])
if not batch or not maxlen or not hist_cap or not absence or not share or not min_running
  or not grace then
  return { 'bad_arg', 'limits' }
end

local now = now_ms()
if not lease_current(KEYS[1], owner, epoch, now) then return { 'lease_lost' } end

local timers = { deadline = KEYS[4], start = KEYS[5], heartbeat = KEYS[6],
  progress = KEYS[7], stuck = KEYS[8], cancel = KEYS[9] }
local ctx = { events = KEYS[3], maxlen = maxlen, hist_cap = hist_cap }
local n = { timed_out = 0, stuck = 0, retried = 0, dead = 0, cancelled = 0, fixed = 0 }

-- Systemic hold.
local w = redis.call('HMGET', KEYS[2], 'seen', 'hold_until')
local seen, hold_until = tonumber(w[1]), tonumber(w[2]) or 0
local hold_started = 0
if now >= hold_until then
  local since = '(' .. hold_until
  local due_hb = redis.call('ZCOUNT', timers.heartbeat, since, now)
  local due_any = due_hb + redis.call('ZCOUNT', timers.start, since, now)
    + redis.call('ZCOUNT', timers.progress, since, now)
    + redis.call('ZCOUNT', timers.stuck, since, now)
    + redis.call('ZCOUNT', timers.cancel, since, now)
  local why = nil
  if due_any > 0 and seen and now - seen > absence then
    why = string.format('partition unwatched for %dms (threshold %dms)', now - seen, absence)
  elseif due_hb > 0 then
    local running = redis.call('ZCARD', timers.heartbeat)
    if running >= min_running and due_hb * 1000 > share * running then
      why = string.format('%d of %d running executions went stale at once (threshold %d/1000)',
        due_hb, running, share)
    end
  end
  if why then
    hold_until = now + grace
    hold_started = 1
    redis.call('HSET', KEYS[2], 'hold_until', hold_until, 'hold_reason', why)
    redis.call('HINCRBY', KEYS[2], 'holds', 1)
    emit(ctx.events, maxlen, '', '', 0, '', '', 'systemic_hold',
      why .. string.format('; staleness rules paused for %dms', grace), now)
  end
end
redis.call('HSET', KEYS[2], 'seen', now)
local holding = now < hold_until

local budget = batch
local function due(key)
  if budget <= 0 then return {} end
  return redis.call('ZRANGEBYSCORE', key, '-inf', now, 'WITHSCORES', 'LIMIT', 0, budget)
end
-- Re-score a timer entry whose execution says it fires later, or drop one that no longer
-- applies; either way it was only a hint.
local function fix(key, member, at)
  if at then redis.call('ZADD', key, at, member) else redis.call('ZREM', key, member) end
  n.fixed = n.fixed + 1
end
local function count(outcome) n[outcome] = n[outcome] + 1 end

local function judge(key, rule)
  local entries = due(key)
  for i = 1, #entries, 2 do
    budget = budget - 1
    local member, score = entries[i], entries[i + 1]
    local e = load_exec(T, member)
    if e then
      rule(e, member, score)
    else
      -- No hash (an index entry without its execution) or a damaged one that cannot be
      -- judged: drop the entry so it cannot wedge the rounds, and say so.
      fix(key, member, nil)
      local q, id = string.match(member, '^([^/]*)/(.*)$')
      if e == nil and q then
        -- The hash is gone: whatever slot or queue entry it left behind is gone with it.
        redis.call('HDEL', T .. ':q:' .. q .. ':slots', id)
        redis.call('ZREM', T .. ':q:' .. q .. ':pending', id)
      end
      if e == false then
        emit(ctx.events, maxlen, q or '', id or member, 0, '', '', 'unjudgeable',
          'execution hash is damaged; removed from ' .. key, score)
      end
    end
  end
end

judge(timers.deadline, function(e, member, score)
  if TERMINAL[e.st] or e.dla == 0 then return fix(timers.deadline, member, nil) end
  if e.dla > now then return fix(timers.deadline, member, e.dla) end
  finish(T, e, timers, now, 'timed_out', 'deadline_exceeded', 'deadline_exceeded',
    string.format('deadline of %dms exceeded in state %s on attempt %d', e.dl, e.st, e.att),
    score, ctx)
  count('timed_out')
end)

if not holding then
  judge(timers.start, function(e, member, score)
    if e.st ~= 'dispatched' or not e.dsp then return fix(timers.start, member, nil) end
    if e.dsp + e.sg > now then return fix(timers.start, member, e.dsp + e.sg) end
    count(retry_or_dead(T, e, timers, now, 'start_timeout',
      string.format('not started within start_grace %dms of dispatch to worker %s',
        e.sg, e.wk or '?'), score, ctx))
  end)

  -- Running -> stuck, stuck since now. With a stuck_threshold of zero the remediation is
  -- due at once: do it in the same pass (both transitions are still recorded) instead of
  -- parking the execution in the stuck index for the next batch to load again.
  local function go_stuck(e, member, kind, reason, detail, score)
    redis.call('ZREM', timers.heartbeat, member)
    redis.call('ZREM', timers.progress, member)
    local hist = hist_push(e.hist, now, 'stuck', reason, e.att, hist_cap)
    emit(ctx.events, maxlen, e.q, e.id, e.att, 'running', 'stuck', reason, detail, score)
    count('stuck')
    if e.stt == 0 then
      e.st, e.hist = 'stuck', hist
      count(retry_or_dead(T, e, timers, now, reason,
        'stuck for 0ms (stuck_threshold 0ms): ' .. detail, score, ctx))
      return
    end
    redis.call('ZADD', timers.stuck, now + e.stt, member)
    redis.call('HSET', e.key, 'st', 'stuck', 'ss', now, 'sk', kind, 'sd', detail, 'hist', hist)
  end

  judge(timers.heartbeat, function(e, member, score)
    if e.st ~= 'running' or not e.hb then return fix(timers.heartbeat, member, nil) end
    if e.hb + e.ht > now then return fix(timers.heartbeat, member, e.hb + e.ht) end
    go_stuck(e, member, 'heartbeat', 'heartbeat_lost', string.format(
      'no heartbeat for %dms (heartbeat_timeout %dms) from worker %s',
      now - e.hb, e.ht, e.wk or '?'), score)
  end)

  judge(timers.progress, function(e, member, score)
    if e.st ~= 'running' or e.npt == 0 or not e.prc then
      return fix(timers.progress, member, nil)
    end
    if e.prc + e.npt > now then return fix(timers.progress, member, e.prc + e.npt) end
    go_stuck(e, member, 'no_progress', 'no_progress', string.format(
      'heartbeats arrive but progress has not moved for %dms (no_progress_timeout %dms)',
      now - e.prc, e.npt), score)
  end)

  judge(timers.stuck, function(e, member, score)
    if e.st ~= 'stuck' or not e.ss then return fix(timers.stuck, member, nil) end
    if e.ss + e.stt > now then return fix(timers.stuck, member, e.ss + e.stt) end
    local reason = 'heartbeat_lost'
    if e.sk == 'no_progress' then reason = 'no_progress' end
    local detail = string.format('stuck for %dms (stuck_threshold %dms): %s',
      now - e.ss, e.stt, e.sd or reason)
    count(retry_or_dead(T, e, timers, now, reason, detail, score, ctx))
  end)

  judge(timers.cancel, function(e, member, score)
    if not ACTIVE[e.st] or not e.cx then return fix(timers.cancel, member, nil) end
    if e.cx + e.cg > now then return fix(timers.cancel, member, e.cx + e.cg) end
    finish(T, e, timers, now, 'cancelled', 'cancelled', 'cancel_forced',
      string.format('worker %s did not acknowledge cancellation within cancel_grace %dms',
        e.wk or '?', e.cg), score, ctx)
    count('cancelled')
  end)
end

-- When to come back: the earliest timer still pending (or the end of the hold).
local next_due = -1
local watched = { timers.deadline }
if not holding then
  watched = { timers.deadline, timers.start, timers.heartbeat, timers.progress, timers.stuck,
    timers.cancel }
end
for _, key in ipairs(watched) do
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #head > 0 then
    local wait = math.max(0, tonumber(head[2]) - now)
    if next_due < 0 or wait < next_due then next_due = wait end
  end
end
local holding_ms = 0
if holding then
  holding_ms = hold_until - now
  if next_due < 0 or holding_ms < next_due then next_due = holding_ms end
end
local more = 0
if budget <= 0 then more = 1 end
return { 'ok', n.timed_out, n.stuck, n.retried, n.dead, n.cancelled, n.fixed, more, next_due,
  holding_ms, hold_started }
