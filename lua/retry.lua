-- retry: run a finished execution again as a new execution linked to it. The original
-- (failed, dead, timed_out or cancelled) never changes: the new one is queued with the
-- original's payload, resolved timings, last checkpoint and trace context, and names it
-- in `rof`; the original's retries zset lists the new id (by creation). Idempotent on the
-- new id.
-- KEYS: 1 original execution hash, 2 original's retries zset, 3 new execution hash,
--       4 queue pending zset, 5 deadline timer, 6 partition events stream,
--       7 partition queue-name set
-- ARGV: 1 queue, 2 new id, 3 new timer member "<queue>/<new id>", 4 original member
--       "<queue>/<id>", 5 events max length, 6 history cap, 7 why (free text)
-- Reply: {'ok', created_at_ms} | {'exists', created_at_ms, state, attempt} (made before)
--        {'missing'} | {'not_finished', state} | {'taken'} (the new id is another execution)
--        {'bad_arg', name}
-- Prelude: _lib.lua

local maxlen, cap = ARGV[5], uint(ARGV[6])
if not uint(maxlen) or not cap then return { 'bad_arg', 'limits' } end
local RETRYABLE = { failed = true, dead = true, timed_out = true, cancelled = true }
local o = redis.call('HMGET', KEYS[1], 'st', 'pl', 'cp', unpack(TIMING_FIELDS))
if not o[1] then return { 'missing' } end
if not RETRYABLE[o[1]] then return { 'not_finished', o[1] } end
local existing = redis.call('HMGET', KEYS[3], 'st', 'rof', 'cr', 'att')
if existing[1] then
  if existing[2] == ARGV[4] then return { 'exists', existing[3], existing[1], existing[4] } end
  return { 'taken' }
end

local queue, id = ARGV[1], ARGV[2]
local now = now_str()
local fields = { 'q', queue, 'id', id, 'st', 'queued', 'att', '0', 'pl', o[2] or 'null',
  'cr', now, 'rof', ARGV[4], hist_first(now, 'queued', 'enqueued') }
if o[3] and o[3] ~= '' then
  fields[#fields + 1] = 'cp'
  fields[#fields + 1] = o[3]
end
local tp = redis.call('HGET', KEYS[1], 'tp')
if tp then
  fields[#fields + 1] = 'tp'
  fields[#fields + 1] = tp
end
local dl = '0'
for f, field in ipairs(TIMING_FIELDS) do
  -- An original stored before max snoozes (or max repeats) existed has none: the new one
  -- takes the default too (absent), not 0.
  if o[3 + f] or (field ~= 'msz' and field ~= 'mr') then
    fields[#fields + 1] = field
    fields[#fields + 1] = o[3 + f] or '0'
  end
  if field == 'dl' then dl = o[3 + f] or '0' end
end
local dla = '0'
if tonumber(dl) and tonumber(dl) > 0 then dla = tostring(tonumber(now) + tonumber(dl)) end
fields[#fields + 1] = 'dla'
fields[#fields + 1] = dla
redis.call('HSET', KEYS[3], unpack(fields))
redis.call('ZADD', KEYS[4], now, id)
if dla ~= '0' then redis.call('ZADD', KEYS[5], dla, ARGV[3]) end
redis.call('SADD', KEYS[7], queue)
redis.call('ZADD', KEYS[2], now, id)
emit(KEYS[6], maxlen, queue, id, '0', '', 'queued', 'enqueued',
  'retry of ' .. ARGV[4] .. ' (' .. o[1] .. '): ' .. (ARGV[7] or ''))
return { 'ok', now }
