-- cancel: queued and awaiting work is cancelled at once (no worker holds it); active work
-- (dispatched, running, stuck) gets cancel_requested, which its worker sees on the next
-- heartbeat and acknowledges. The cancel timer lets the watchdog finish a cancellation the
-- worker ignores.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue pending zset,
--       4 deadline timer, 5 cancel timer, 6 queue 'cancelled' list, 7 wait timer
-- ARGV: 1 timer member "<queue>/<id>", 2 reason text, 3 events max length, 4 history cap
-- Reply: {'cancelled'} | {'requested', requested_at_ms, 0|1 (1 = already requested)}
--        {'terminal', state, stop_reason} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua

local maxlen, cap = uint(ARGV[3]), uint(ARGV[4])
if not maxlen or not cap then return { 'bad_arg', 'limits' } end
local e = redis.call('HMGET', KEYS[1], 'st', 'att', 'sr', 'cx', 'hn', 'q', 'id', 'cg')
if not e[1] then return { 'missing' } end
if TERMINAL[e[1]] then return { 'terminal', e[1], e[3] or '' } end
local st, att, id, member = e[1], e[2], e[7], ARGV[1]
if e[4] and e[4] ~= '' then return { 'requested', e[4], 1 } end

local now = now_ms()
if st == 'queued' or st == 'awaiting' then
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[7], member)
  redis.call('ZREM', KEYS[4], member)
  become_terminal({ key = KEYS[1], list = KEYS[6], events = KEYS[2], maxlen = maxlen,
    cap = cap, queue = e[6], id = id, att = att, from = st, hn = e[5] }, now, 'cancelled',
    'cancelled', 'cancelled', ARGV[2])
  return { 'cancelled' }
end

redis.call('HSET', KEYS[1], 'cx', now, 'err', ARGV[2],
  hist_push(e[5], now, st, 'cancel_requested', att, cap))
redis.call('ZADD', KEYS[5], now + tonumber(e[8]), member)
emit(KEYS[2], maxlen, e[6], id, att, st, st, 'cancel_requested', ARGV[2])
return { 'requested', now, 0 }
