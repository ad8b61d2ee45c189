-- complete: the current attempt succeeded. Terminal; frees the slot if this attempt holds it.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue slots hash, 4 start timer,
--       5 heartbeat timer, 6 progress timer, 7 deadline timer, 8 stuck timer,
--       9 cancel timer, 10 queue 'succeeded' index
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 result JSON ('' for none),
--       5 events max length, 6 history cap
-- Reply: {'ok', slot_released 0|1}
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} (a replay: the first outcome) | {'missing'}
--        {'bad_arg', name}

local maxlen, cap = uint(ARGV[5]), uint(ARGV[6])
if not maxlen or not cap then return { 'bad_arg', 'limits' } end
local e = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'sr', 'cx', 'hist', 'q', 'id')
local verdict = token_verdict(e[1], e[2], e[3], e[4], ARGV[2], ARGV[3])
if verdict then return verdict end

local st, att, id, member = e[1], e[2], e[8], ARGV[1]
local now = now_ms()
local cancel_requested = e[5] and e[5] ~= ''
local released = release_slot(KEYS[3], id, att)
drop_active_timers({ start = KEYS[4], heartbeat = KEYS[5], progress = KEYS[6],
  stuck = KEYS[8], cancel = KEYS[9] }, member, st, cancel_requested)
redis.call('ZREM', KEYS[7], member)
redis.call('HSET', KEYS[1], 'st', 'succeeded', 'sr', 'succeeded', 'fin', now, 'res', ARGV[4],
  'hist', hist_push(e[6], now, 'succeeded', 'completed', att, cap))
redis.call('ZADD', KEYS[10], now, id)
emit(KEYS[2], maxlen, e[7], id, att, st, 'succeeded', 'completed', '')
return { 'ok', released }
