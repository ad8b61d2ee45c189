-- resume: an awaiting execution goes back to the queue, available now, with the resume
-- input for the claim that continues it. By an orchestrator (mode 'id') or by the wait's
-- one-time resume token (mode 'token': the secret's hash must be the current wait's).
-- A second resume of the same wait changes nothing and reports the first one; a used token
-- is refused as used, an unknown one as invalid.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue pending zset, 4 wait timer
-- ARGV: 1 timer member "<queue>/<id>", 2 mode 'id'|'token', 3 token secret (mode 'token'),
--       4 has input '1'|'0', 5 input JSON, 6 events max length, 7 history cap
-- Reply: {'resumed', resumed_at_ms} | {'already', resumed_at_ms, state}
--        {'not_awaiting', state} | {'token_used', resumed_at_ms, state}
--        {'token_invalid'} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua

local maxlen, cap = ARGV[6], uint(ARGV[7])
if not uint(maxlen) or not cap then return { 'bad_arg', 'limits' } end
if ARGV[2] ~= 'id' and ARGV[2] ~= 'token' then return { 'bad_arg', 'mode' } end
local e = redis.call('HMGET', KEYS[1], 'st', 'att', 'hn', 'q', 'id', 'rth', 'rtu', 'rsa')
if not e[1] then
  if ARGV[2] == 'token' then return { 'token_invalid' } end
  return { 'missing' }
end
local st, att = e[1], e[2]
local resumed_before = e[8] and e[8] ~= ''
if ARGV[2] == 'token' then
  local given = redis.sha1hex(ARGV[3] or '')
  if e[6] == given then
    -- The token of the latest wait: resume it, unless it ended otherwise (expired,
    -- cancelled, timed out).
    if st ~= 'awaiting' then return { 'not_awaiting', st } end
  elseif e[7] == given and resumed_before then
    return { 'token_used', e[8], st }
  else
    return { 'token_invalid' }
  end
elseif st ~= 'awaiting' then
  if resumed_before then return { 'already', e[8], st } end
  return { 'not_awaiting', st }
end

local now = now_ms()
local id, member = e[5], ARGV[1]
local input = ''
if ARGV[4] == '1' then input = ARGV[5] end
redis.call('HSET', KEYS[1], 'st', 'queued', 'rsa', now, 'ri', input, 'rtu', e[6] or '',
  'rth', '', 'wr', '', 'wst', '', 'wdl', '', 'wx', '',
  hist_push(e[3], now, 'queued', 'resumed', att, cap))
redis.call('ZREM', KEYS[4], member)
redis.call('ZADD', KEYS[3], now, id)
local by = 'by an orchestrator'
if ARGV[2] == 'token' then by = 'by its resume token' end
emit(KEYS[2], maxlen, e[4], id, att, 'awaiting', 'queued', 'resumed', by)
return { 'resumed', now }
