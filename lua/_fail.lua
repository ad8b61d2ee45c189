-- A failed attempt, shared by fail.lua and snooze.lua (a snooze past max_snoozes is a
-- retryable failure); prepended after _lib.lua.

-- k: { exec, events, slots, start, heartbeat, progress, deadline, stuck, cancel, failed,
--      cancelled, pending } keys; e: the execution as read (st, att, id, q, hn, cx, ma, bb,
--      bm, fr, cxr); member "<queue>/<id>"; retryable a boolean; message the failure kept in
--      `err`; retry_after ms (0: none), the earliest the retry may start, which wins over
--      the backoff when later; cancel_reason the event reason of a failure after
--      cancellation was requested; maxlen and cap validated by the caller.
-- The caller has checked the token (token_verdict). Returns the reply:
--   {'retry', available_at_ms, slot_released} | {'failed', slot_released}
--   {'cancelled', slot_released}
local function fail_attempt(k, e, member, retryable, message, retry_after, cancel_reason,
                            maxlen, cap, now)
  local st, att, id = e.st, e.att, e.id
  local cancel_requested = e.cx and e.cx ~= ''
  local released = release_slot(k.slots, id, att)
  drop_active_timers(k, member, st, cancel_requested)

  local x = { key = k.exec, events = k.events, maxlen = maxlen, cap = cap, queue = e.q,
    id = id, att = att, from = st, hn = e.hn }
  if cancel_requested then
    redis.call('ZREM', k.deadline, member)
    x.list = k.cancelled
    become_terminal(x, now, 'cancelled', cancel_stop(e.cxr), cancel_reason, message)
    return { 'cancelled', released }
  end

  local counted = counted_attempts(att, e.fr)
  if retryable and counted < tonumber(e.ma) then
    local delay = tonumber(e.bb) * (2 ^ (counted - 1))
    local max_delay = tonumber(e.bm)
    if delay > max_delay then delay = max_delay end
    if retry_after > delay then delay = retry_after end
    local at = tostring(tonumber(now) + math.floor(delay))
    redis.call('HSET', k.exec, 'st', 'queued', 'tok', '', 'wk', '', 'ss', '', 'sk', '',
      'err', message, hist_push(e.hn, now, 'queued', 'retry_scheduled', att, cap))
    redis.call('ZADD', k.pending, at, id)
    emit(k.events, maxlen, e.q, id, att, st, 'queued', 'retry_scheduled', message)
    return { 'retry', at, released }
  end

  local reason = 'failed'
  if retryable then reason = 'attempts_exhausted' end
  redis.call('ZREM', k.deadline, member)
  x.list = k.failed
  become_terminal(x, now, 'failed', 'failed', reason, message)
  return { 'failed', released }
end
