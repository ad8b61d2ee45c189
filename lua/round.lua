-- round: one judgement pass over a partition's due timers, fenced by the caller's lease.
-- The rules, their order, the systemic hold and terminate-first: docs/watchdog.md#the-round-script
-- KEYS: 1 lease hash, 2 watch-state hash, 3 events stream, 4 deadline timer, 5 start timer,
--       6 heartbeat timer, 7 progress timer, 8 stuck timer, 9 cancel timer,
--       10 stale-window zset (`<queue>/<id>` by the instant its verdict stops being
--       recent; emptied by any hold), 11 the same for the namespace-wide count (emptied
--       only by a namespace hold), 12 wait timer, 13 the partition's usage-journal index
--       (only counted: the caller folds the journals when it lists any, lua/_usage.lua)
-- ARGV: 1 owner, 2 epoch, 3 batch (most entries examined), 4 events max length,
--       5 history cap, 6-10 the partition's key layout (see _watchdog.lua), 11 absence_ms,
--       12 share (per mille), 13 min running for the share rule, 14 grace_ms,
--       15 namespace hold until (ms; 0: none), 16 namespace hold start (ms),
--       17 namespace hold reason, 18 terminate first (1: a hook on execution.terminate is
--       configured; a deadline verdict on active work then waits for it),
--       19 trace (1: list every action after the counts, see trace_actions)
-- Reply: {'lease_lost'} | {'ok', timed_out, stuck, retried, dead, cancelled, fixed,
--         more (1 when the batch ran out), next_due_in_ms (-1: no timer), holding_ms
--         (0: no hold), hold_started (0|1), recent verdicts for the namespace count,
--         running, wait_expired, queues with a usage journal, then with trace one entry
--         per action}
-- Prelude: _lib.lua, _watchdog.lua, _fingerprint.lua

local owner, epoch = ARGV[1], ARGV[2]
local batch, maxlen, hist_cap = uint(ARGV[3]), uint(ARGV[4]), uint(ARGV[5])
local K = layout_from(ARGV, 6)
local absence, share, min_running, grace = uint(ARGV[11]), uint(ARGV[12]), uint(ARGV[13]),
  uint(ARGV[14])
local ns_until, ns_start, ns_reason = uint(ARGV[15]), uint(ARGV[16]), ARGV[17] or ''
local terminate_first = ARGV[18] == '1'
if not batch or not maxlen or not hist_cap or not K or not absence or not share
  or not min_running or not grace or not ns_until or not ns_start then
  return { 'bad_arg', 'limits' }
end

local now = now_ms()
if not lease_current(KEYS[1], owner, epoch, now) then return { 'lease_lost' } end
if ARGV[19] == '1' then trace_actions(K) end

local timers = { deadline = KEYS[4], start = KEYS[5], heartbeat = KEYS[6],
  progress = KEYS[7], stuck = KEYS[8], cancel = KEYS[9], wait = KEYS[12] }
local window, ns_window = KEYS[10], KEYS[11]
local ctx = { events = KEYS[3], maxlen = maxlen, hist_cap = hist_cap }
local n = { timed_out = 0, stuck = 0, retried = 0, dead = 0, cancelled = 0, fixed = 0,
  wait_expired = 0 }

-- Systemic hold.
local w = redis.call('HMGET', KEYS[2], 'seen', 'hold_until', 'hold_start', 'hold_ns')
local seen, hold_until, hold_start = tonumber(w[1]), tonumber(w[2]) or 0, tonumber(w[3])
local adopted_ns = tonumber(w[4]) or 0
-- The end of the last hold: heartbeat timers due before it were that hold's.
local last_hold_end = hold_until
redis.call('ZREMRANGEBYSCORE', window, '-inf', now)
redis.call('ZREMRANGEBYSCORE', ns_window, '-inf', now)
local hold_started = 0
local function begin_hold(why, until_ms, start_ms)
  hold_until, hold_start, hold_started = until_ms, start_ms, 1
  redis.call('HSET', KEYS[2], 'hold_until', hold_until, 'hold_start', hold_start,
    'hold_reason', why)
  redis.call('HINCRBY', KEYS[2], 'holds', 1)
  redis.call('DEL', window)
  emit(ctx.events, maxlen, '', '', 0, '', '', 'systemic_hold', why .. string.format(
    '; staleness rules paused for %dms; executions already stuck count their '
    .. 'stuck_threshold from the end of the hold', hold_until - now), now)
end
if now >= hold_until then
  local since = '(' .. hold_until
  local why = nil
  if seen and now - seen > absence then
    local due_any = redis.call('ZCOUNT', timers.heartbeat, since, now)
      + redis.call('ZCOUNT', timers.start, since, now)
      + redis.call('ZCOUNT', timers.progress, since, now)
      + redis.call('ZCOUNT', timers.stuck, since, now)
      + redis.call('ZCOUNT', timers.cancel, since, now)
    if due_any > 0 then
      why = string.format('partition unwatched for %dms (threshold %dms)', now - seen,
        absence)
    end
  end
  if not why then
    local recent = redis.call('ZCARD', window)
    local due_hb = redis.call('ZCOUNT', timers.heartbeat, since, now)
    if recent + due_hb > 0 then
      local population = redis.call('ZCARD', timers.heartbeat) + recent
      local stale = recent + due_hb
      if population >= min_running and stale * 1000 > share * population then
        why = string.format('%d of %d running executions went stale within two heartbeat '
          .. 'timeouts (%d judged in earlier rounds; threshold %d/1000)', stale, population,
          recent, share)
      end
    end
  end
  if why then begin_hold(why, now + grace, now) end
end
if ns_until > now and ns_start > adopted_ns and ns_until > hold_until then
  -- A namespace-wide hold this partition has not adopted yet (bounded by our grace).
  redis.call('HSET', KEYS[2], 'hold_ns', ns_start)
  redis.call('DEL', ns_window)
  begin_hold('namespace-wide: ' .. ns_reason, math.min(ns_until, now + grace),
    math.min(ns_start, now))
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
    local e = load_exec(K, member)
    if e and e.tm and ACTIVE[e.st] then
      fix(key, member, now + 60000) -- terminating: only the terminate hook moves it
    elseif e then
      rule(e, member, score)
    else
      -- No hash (an index entry without its execution) or a damaged one that cannot be
      -- judged: drop the entry so it cannot wedge the rounds, and say so.
      fix(key, member, nil)
      local q, id = string.match(member, '^([^/]*)/(.*)$')
      if e == nil and q then
        -- The hash is gone: whatever slot or queue entry it left behind is gone with it.
        redis.call('HDEL', slots_key(K, q), id)
        redis.call('ZREM', pending_key(K, q), id)
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
  local detail = string.format('deadline of %dms exceeded in state %s on attempt %d', e.dl,
    e.st, e.att)
  if terminate_first and ACTIVE[e.st] then
    redis.call('HSET', e.key, 'tm', now)
    redis.call('ZADD', timers.deadline, now + 60000, member)
    emit(ctx.events, maxlen, e.q, e.id, e.att, e.st, e.st, 'terminate_requested',
      detail .. '; the slot is released once the terminate hook reports success', score)
    return
  end
  finish(K, e, timers, now, 'timed_out', 'deadline_exceeded', 'deadline_exceeded', detail,
    score, ctx)
  count('timed_out')
end)

-- Wait deadlines, like the hard deadline, are judged during a hold too: a hold is about
-- heartbeats that could not arrive, and an awaiting execution sends none, so a hold never
-- delays a wait deadline. At the deadline: failed (wait_expired), or back to the queue
-- when its queue said so at await time.
judge(timers.wait, function(e, member, score)
  if e.st ~= 'awaiting' or not e.wdl then return fix(timers.wait, member, nil) end
  if e.wdl > now then return fix(timers.wait, member, e.wdl) end
  local detail = string.format('nobody resumed it within its wait deadline of %dms (%s)',
    e.wdl - (e.wst or e.wdl), e.wr or '')
  count('wait_expired')
  if e.wx == 'requeue' then
    redis.call('ZREM', timers.wait, member)
    redis.call('HSET', e.key, 'st', 'queued', 'wr', '', 'wst', '', 'wdl', '', 'wx', '',
      'err', detail, hist_push(e.hn, now, 'queued', 'wait_expired', e.att, hist_cap))
    redis.call('ZADD', pending_key(K, e.q), now, e.id)
    emit(ctx.events, maxlen, e.q, e.id, e.att, 'awaiting', 'queued', 'wait_expired', detail,
      score)
    return
  end
  finish(K, e, timers, now, 'failed', 'wait_expired', 'wait_expired', detail, score, ctx)
end)

if not holding then
  judge(timers.start, function(e, member, score)
    if e.st ~= 'dispatched' or not e.dsp then return fix(timers.start, member, nil) end
    if e.dsp + e.sg > now then return fix(timers.start, member, e.dsp + e.sg) end
    count(retry_or_dead(K, e, timers, now, 'start_timeout',
      string.format('not started within start_grace %dms of dispatch to worker %s',
        e.sg, e.wk or '?'), score, ctx))
  end)

  -- Running -> stuck, stuck since now. With a stuck_threshold of zero the remediation is
  -- due at once: do it in the same pass (both transitions are still recorded) instead of
  -- parking the execution in the stuck index for the next batch to load again.
  local function go_stuck(e, member, kind, reason, detail, score)
    redis.call('ZREM', timers.heartbeat, member)
    redis.call('ZREM', timers.progress, member)
    local hist = { hist_push(e.hn, now, 'stuck', reason, e.att, hist_cap) }
    emit(ctx.events, maxlen, e.q, e.id, e.att, 'running', 'stuck', reason, detail, score)
    count('stuck')
    if kind == 'heartbeat' and tonumber(score) > last_hold_end then
      local recent_until = now + 2 * e.ht
      redis.call('ZADD', window, recent_until, member)
      redis.call('ZADD', ns_window, recent_until, member)
    end
    if e.stt == 0 then
      redis.call('HSET', e.key, unpack(hist))
      e.st, e.hn = 'stuck', hist[4]
      count(retry_or_dead(K, e, timers, now, reason,
        'stuck for 0ms (stuck_threshold 0ms): ' .. detail, score, ctx))
      return
    end
    redis.call('ZADD', timers.stuck, now + e.stt, member)
    redis.call('HSET', e.key, 'st', 'stuck', 'ss', now, 'sk', kind, 'sd', detail, unpack(hist))
  end

  judge(timers.heartbeat, function(e, member, score)
    if e.st ~= 'running' or not e.hb then return fix(timers.heartbeat, member, nil) end
    if e.hb + e.ht > now then return fix(timers.heartbeat, member, e.hb + e.ht) end
    go_stuck(e, member, 'heartbeat', 'heartbeat_lost', string.format(
      'no heartbeat for %dms (heartbeat_timeout %dms) from worker %s',
      now - e.hb, e.ht, e.wk or '?'), score)
  end)

  -- A run of identical fingerprints at max_repeats made the progress timer due (see
  -- lua/_fingerprint.lua): that verdict comes first, whatever the progress says.
  judge(timers.progress, function(e, member, score)
    local looping = e.st == 'running' and loop_verdict(e)
    if looping then return go_stuck(e, member, 'looping', 'looping', looping, score) end
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
    -- A verdict still recent when the last hold began, or made during it, was held
    -- with it: its stuck clock starts when the hold ended.
    local since, held = e.ss, ''
    if hold_start and e.ss < last_hold_end and e.ss + 2 * e.ht > hold_start then
      since = last_hold_end
      held = string.format(', counted from the end of a systemic hold %dms ago',
        now - last_hold_end)
    end
    if since + e.stt > now then return fix(timers.stuck, member, since + e.stt) end
    local reason = 'heartbeat_lost'
    if e.sk == 'no_progress' or e.sk == 'looping' then reason = e.sk end
    local detail = string.format('stuck for %dms (stuck_threshold %dms%s): %s',
      now - e.ss, e.stt, held, e.sd or reason)
    count(retry_or_dead(K, e, timers, now, reason, detail, score, ctx))
  end)

  judge(timers.cancel, function(e, member, score)
    if not ACTIVE[e.st] or not e.cx then return fix(timers.cancel, member, nil) end
    if e.cx + e.cg > now then return fix(timers.cancel, member, e.cx + e.cg) end
    finish(K, e, timers, now, 'cancelled', cancel_stop(e.cxr), 'cancel_forced',
      string.format('worker %s did not acknowledge cancellation within cancel_grace %dms',
        e.wk or '?', e.cg), score, ctx)
    count('cancelled')
  end)
end

-- When to come back: the earliest timer still pending (or the end of the hold).
local next_due = -1
local watched = { timers.deadline, timers.wait }
if not holding then
  watched = { timers.deadline, timers.wait, timers.start, timers.heartbeat, timers.progress,
    timers.stuck, timers.cancel }
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
add_totals(KEYS[2], n)
local reply = { 'ok', n.timed_out, n.stuck, n.retried, n.dead, n.cancelled, n.fixed, more,
  next_due, holding_ms, hold_started, redis.call('ZCARD', ns_window),
  redis.call('ZCARD', timers.heartbeat), n.wait_expired, redis.call('SCARD', KEYS[13]) }
for _, action in ipairs(TRACED) do reply[#reply + 1] = action end
return reply
