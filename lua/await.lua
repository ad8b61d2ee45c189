-- await: the worker holding the current attempt ends it to wait on a person or an outside
-- event. The slot is freed, the active timers go, the execution enters `awaiting` with its
-- own wait timer (its hard deadline still applies); the attempt counts as a continuation
-- (fr + 1), not toward max attempts. The resume token's secret is kept only as its hash.
-- A wait asked for after cancellation was requested ends the execution as cancelled.
-- The queue settings' mwt (longest wait, ms) and wex ('1': requeue at expiry) apply.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue slots hash, 4 start timer,
--       5 heartbeat timer, 6 progress timer, 7 deadline timer, 8 stuck timer,
--       9 cancel timer, 10 wait timer, 11 queue settings hash, 12 queue 'cancelled' list
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 reason, 5 wait (ms, > 0),
--       6 has checkpoint '1'|'0', 7 checkpoint JSON, 8 resume token secret,
--       9 default longest wait (ms), 10 default at expiry 'fail'|'requeue',
--       11 events max length, 12 history cap
-- Reply: {'awaiting', wait_deadline_ms, slot_released} | {'cancelled', slot_released}
--        {'too_long', longest_wait_ms} (nothing written)
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua

local maxlen, cap = ARGV[11], uint(ARGV[12])
if not uint(maxlen) or not cap then return { 'bad_arg', 'limits' } end
local wait = uint(ARGV[5])
if not wait or wait < 1 then return { 'bad_arg', 'wait_deadline' } end
if not ARGV[8] or #ARGV[8] < 32 then return { 'bad_arg', 'resume_token' } end
local e = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'sr', 'cx', 'hn', 'q', 'id')
local verdict = token_verdict(e[1], e[2], e[3], e[4], ARGV[2], ARGV[3])
if verdict then return verdict end

local conf = redis.call('HMGET', KEYS[11], 'mwt', 'wex')
local longest = uint(conf[1]) or uint(ARGV[9])
if not longest then return { 'bad_arg', 'limits' } end
if wait > longest then return { 'too_long', longest } end
local on_expiry = ARGV[10]
if conf[2] == '1' then on_expiry = 'requeue' elseif conf[2] == '0' then on_expiry = 'fail' end
if on_expiry ~= 'fail' and on_expiry ~= 'requeue' then return { 'bad_arg', 'on_expiry' } end

local st, att, id, member = e[1], e[2], e[8], ARGV[1]
local now = now_ms()
local cancel_requested = e[5] and e[5] ~= ''
local released = release_slot(KEYS[3], id, att)
drop_active_timers({ start = KEYS[4], heartbeat = KEYS[5], progress = KEYS[6],
  stuck = KEYS[8], cancel = KEYS[9] }, member, st, cancel_requested)

if cancel_requested then
  redis.call('ZREM', KEYS[7], member)
  become_terminal({ key = KEYS[1], list = KEYS[12], events = KEYS[2], maxlen = maxlen,
    cap = cap, queue = e[7], id = id, att = att, from = st, hn = e[6] }, now, 'cancelled',
    'cancelled', 'awaited_after_cancel', 'cancellation was requested before the wait: ' .. ARGV[4])
  return { 'cancelled', released }
end

local until_ms = now + wait
local fields = { 'st', 'awaiting', 'tok', '', 'wk', '', 'ss', '', 'sk', '', 'wr', ARGV[4],
  'wst', now, 'wdl', until_ms, 'wx', on_expiry, 'rth', redis.sha1hex(ARGV[8]), 'rsa', '',
  'ri', '' }
if ARGV[6] == '1' then
  fields[#fields + 1] = 'cp'
  fields[#fields + 1] = ARGV[7]
end
for _, v in ipairs({ hist_push(e[6], now, 'awaiting', 'awaiting', att, cap) }) do
  fields[#fields + 1] = v
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HINCRBY', KEYS[1], 'fr', 1)
redis.call('ZADD', KEYS[10], until_ms, member)
emit(KEYS[2], maxlen, e[7], id, att, st, 'awaiting', 'awaiting', ARGV[4])
return { 'awaiting', until_ms, released }
