-- ack_cancel: the worker of the current attempt acknowledges a cancellation request and
-- has stopped. Terminal (cancelled); frees the slot if this attempt holds it.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue slots hash, 4 start timer,
--       5 heartbeat timer, 6 progress timer, 7 deadline timer, 8 stuck timer,
--       9 cancel timer, 10 queue 'cancelled' list
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 events max length,
--       5 history cap
-- Reply: {'ok', slot_released} | {'not_requested', state}
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua

local maxlen, cap = uint(ARGV[4]), uint(ARGV[5])
if not maxlen or not cap then return { 'bad_arg', 'limits' } end
local e = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'sr', 'cx', 'hn', 'q', 'id',
  'cxr')
local verdict = token_verdict(e[1], e[2], e[3], e[4], ARGV[2], ARGV[3])
if verdict then return verdict end
if not e[5] or e[5] == '' then return { 'not_requested', e[1] } end

local st, att, id, member = e[1], e[2], e[8], ARGV[1]
local now = now_ms()
local released = release_slot(KEYS[3], id, att)
drop_active_timers({ start = KEYS[4], heartbeat = KEYS[5], progress = KEYS[6],
  stuck = KEYS[8], cancel = KEYS[9] }, member, st, true)
redis.call('ZREM', KEYS[7], member)
become_terminal({ key = KEYS[1], list = KEYS[10], events = KEYS[2], maxlen = maxlen,
  cap = cap, queue = e[7], id = id, att = att, from = st, hn = e[6] }, now, 'cancelled',
  cancel_stop(e[9]), 'cancel_acknowledged')
return { 'ok', released }
