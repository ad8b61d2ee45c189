-- fail: the current attempt failed. A retryable failure with attempts left goes back to
-- the queue after its backoff (the checkpoint is kept for the next attempt); otherwise the
-- execution is failed (terminal). A failure after cancellation was requested ends as
-- cancelled. The slot is freed only if this attempt holds it.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue slots hash, 4 start timer,
--       5 heartbeat timer, 6 progress timer, 7 deadline timer, 8 stuck timer,
--       9 cancel timer, 10 queue 'failed' list, 11 queue pending zset,
--       12 queue 'cancelled' list
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 retryable '1'|'0',
--       5 error message, 6 events max length, 7 history cap
-- Reply: {'retry', available_at_ms, slot_released} | {'failed', slot_released}
--        {'cancelled', slot_released}
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua

local maxlen, cap = ARGV[6], uint(ARGV[7])
if not uint(maxlen) or not cap then return { 'bad_arg', 'limits' } end
local e = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'sr', 'cx', 'hn', 'q', 'id',
  'ma', 'bb', 'bm', 'fr')
local verdict = token_verdict(e[1], e[2], e[3], e[4], ARGV[2], ARGV[3])
if verdict then return verdict end

local st, att, id, member = e[1], e[2], e[8], ARGV[1]
local now = now_str()
local cancel_requested = e[5] and e[5] ~= ''
local released = release_slot(KEYS[3], id, att)
drop_active_timers({ start = KEYS[4], heartbeat = KEYS[5], progress = KEYS[6],
  stuck = KEYS[8], cancel = KEYS[9] }, member, st, cancel_requested)

local x = { key = KEYS[1], events = KEYS[2], maxlen = maxlen, cap = cap, queue = e[7],
  id = id, att = att, from = st, hn = e[6] }
if cancel_requested then
  redis.call('ZREM', KEYS[7], member)
  x.list = KEYS[12]
  become_terminal(x, now, 'cancelled', 'cancelled', 'failed_after_cancel', ARGV[5])
  return { 'cancelled', released }
end

local counted = counted_attempts(att, e[12])
if ARGV[4] == '1' and counted < tonumber(e[9]) then
  local delay = tonumber(e[10]) * (2 ^ (counted - 1))
  local max_delay = tonumber(e[11])
  if delay > max_delay then delay = max_delay end
  local at = tostring(tonumber(now) + math.floor(delay))
  redis.call('HSET', KEYS[1], 'st', 'queued', 'tok', '', 'wk', '', 'ss', '', 'sk', '', 'err', ARGV[5],
    hist_push(e[6], now, 'queued', 'retry_scheduled', att, cap))
  redis.call('ZADD', KEYS[11], at, id)
  emit(KEYS[2], maxlen, e[7], id, att, st, 'queued', 'retry_scheduled', ARGV[5])
  return { 'retry', at, released }
end

local reason = 'failed'
if ARGV[4] == '1' then reason = 'attempts_exhausted' end
redis.call('ZREM', KEYS[7], member)
x.list = KEYS[10]
become_terminal(x, now, 'failed', 'failed', reason, ARGV[5])
return { 'failed', released }
