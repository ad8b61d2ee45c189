-- fail: the current attempt failed. A retryable failure with attempts left goes back to
-- the queue after its backoff, or after `retry_after` when that is later (the checkpoint
-- is kept for the next attempt); otherwise the execution is failed (terminal). A failure
-- after cancellation was requested ends as cancelled. The slot is freed only if this
-- attempt holds it.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue slots hash, 4 start timer,
--       5 heartbeat timer, 6 progress timer, 7 deadline timer, 8 stuck timer,
--       9 cancel timer, 10 queue 'failed' list, 11 queue pending zset,
--       12 queue 'cancelled' list
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 retryable '1'|'0',
--       5 error message, 6 events max length, 7 history cap, 8 retry after (ms, 0: none)
-- Reply: {'retry', available_at_ms, slot_released} | {'failed', slot_released}
--        {'cancelled', slot_released}
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua, _fail.lua

local maxlen, cap, retry_after = ARGV[6], uint(ARGV[7]), uint(ARGV[8] or '0')
if not uint(maxlen) or not cap then return { 'bad_arg', 'limits' } end
if not retry_after then return { 'bad_arg', 'retry_after' } end
local v = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'sr', 'cx', 'hn', 'q', 'id',
  'ma', 'bb', 'bm', 'fr', 'cxr')
local verdict = token_verdict(v[1], v[2], v[3], v[4], ARGV[2], ARGV[3])
if verdict then return verdict end

local e = { st = v[1], att = v[2], cx = v[5], hn = v[6], q = v[7], id = v[8], ma = v[9],
  bb = v[10], bm = v[11], fr = v[12], cxr = v[13] }
local k = { exec = KEYS[1], events = KEYS[2], slots = KEYS[3], start = KEYS[4],
  heartbeat = KEYS[5], progress = KEYS[6], deadline = KEYS[7], stuck = KEYS[8],
  cancel = KEYS[9], failed = KEYS[10], pending = KEYS[11], cancelled = KEYS[12] }
return fail_attempt(k, e, ARGV[1], ARGV[4] == '1', ARGV[5], retry_after,
  'failed_after_cancel', maxlen, cap, now_str())
