-- enqueue: create queued executions in one queue, or return the existing ones (idempotent
-- on id). One item is a plain enqueue; more make a batch. Every item is validated before
-- the first write: one bad item and nothing is written.
-- KEYS: 1 queue pending zset, 2 deadline timer zset, 3 partition events stream,
--       4 queue settings hash, 5 partition queue-name set, 5+i execution hash of item i
-- ARGV: with T = #TIMING_FIELDS (11): 1 queue, 2..T+1 global default timings
--       (TIMING_FIELDS order, ms or the count), T+2 events max length, T+3 history cap,
--       then T+6 per item i from b = T+3 + (T+6) * (i - 1): b+1 execution id, b+2 payload
--       (JSON text), b+3 timer member "<queue>/<id>", b+4..b+T+3 the item's timings in
--       the same order or '' (the queue's setting, else the global default), b+T+4 delay
--       before available, b+T+5 W3C traceparent ('': none; checked by the caller),
--       b+T+6 budget "tokens|cost|warning per mille" ('' none: the queue's, lua/_usage.lua)
-- Reply: {'ok', then per item: 'created'|'exists'|'conflict', state, attempt, created_at_ms}
--        ('conflict': the id exists with another payload or other given timings)
--        {'bad_arg', name, item} when an argument is malformed (nothing written)
-- Prelude: _lib.lua

local T = #TIMING_FIELDS
local items = #KEYS - 5
if items < 1 or #ARGV ~= T + 3 + (T + 6) * items then return { 'bad_arg', 'arity', 0 } end
local maxlen, cap = ARGV[T + 2], uint(ARGV[T + 3])
if not uint(maxlen) or not cap then return { 'bad_arg', 'limits', 0 } end

-- Timings stay the decimal strings they arrived as (see now_str): validated, not converted.
-- t[field] for each of TIMING_FIELDS.
local conf = redis.call('HMGET', KEYS[4], unpack(TIMING_FIELDS))
local timings = {}
for i = 1, items do
  local b = T + 3 + (T + 6) * (i - 1)
  local t = {}
  for f, field in ipairs(TIMING_FIELDS) do
    local v = ARGV[b + 3 + f]
    if v == '' then v = conf[f] or ARGV[1 + f] end
    if not uint(v) then return { 'bad_arg', field, i } end
    t[field] = v
  end
  if tonumber(t.ma) < 1 or tonumber(t.ht) < 1 or tonumber(t.sg) < 1 then
    return { 'bad_arg', 'timing', i }
  end
  if not uint(ARGV[b + T + 4]) then return { 'bad_arg', 'delay', i } end
  local bg = ARGV[b + T + 6]
  if bg ~= '' and not string.find(bg, '^%d+|%d+|%d+$') then return { 'bad_arg', 'budget', i } end
  timings[i] = t
end

local queue = ARGV[1]
local now = now_str()
local reply = { 'ok' }
local created = 0
for i = 1, items do
  local b = T + 3 + (T + 6) * (i - 1)
  local key, id = KEYS[5 + i], ARGV[b + 1]
  local existing = redis.call('HMGET', key, 'st', 'att', 'cr', 'pl', unpack(TIMING_FIELDS))
  if existing[1] then
    -- The same id again: the same request is a replay; a different payload, or a timing
    -- given now that differs from the stored one, is the id reused for other work.
    local same = existing[4] == ARGV[b + 2]
    for f = 1, #TIMING_FIELDS do
      local given = ARGV[b + 3 + f]
      if given ~= '' and given ~= existing[4 + f] then same = false end
    end
    reply[#reply + 1] = same and 'exists' or 'conflict'
    reply[#reply + 1] = existing[1]
    reply[#reply + 1] = existing[2]
    reply[#reply + 1] = existing[3]
  else
    local t = timings[i]
    local dla, available, delay = '0', now, ARGV[b + T + 4]
    if tonumber(t.dl) > 0 then dla = tostring(tonumber(now) + tonumber(t.dl)) end
    if tonumber(delay) > 0 then available = tostring(tonumber(now) + tonumber(delay)) end
    -- Items of one batch share a millisecond: steps of 1/1024 ms inside the millisecond
    -- before it keep them first in, first out (the pending set would otherwise order
    -- equal scores by id), and every one is due at once.
    if items > 1 then
      available = string.format('%.4f', tonumber(available) - 1 + i / 1024)
    end
    local fields = { 'q', queue, 'id', id, 'st', 'queued', 'att', '0', 'pl', ARGV[b + 2],
      'cr', now, 'dla', dla, hist_first(now, 'queued', 'enqueued') }
    for _, field in ipairs(TIMING_FIELDS) do
      fields[#fields + 1] = field
      fields[#fields + 1] = t[field]
    end
    if ARGV[b + T + 5] ~= '' then
      fields[#fields + 1] = 'tp'
      fields[#fields + 1] = ARGV[b + T + 5]
    end
    if ARGV[b + T + 6] ~= '' then
      fields[#fields + 1] = 'bg'
      fields[#fields + 1] = ARGV[b + T + 6]
    end
    redis.call('HSET', key, unpack(fields))
    redis.call('ZADD', KEYS[1], available, id)
    if dla ~= '0' then redis.call('ZADD', KEYS[2], dla, ARGV[b + 3]) end
    emit(KEYS[3], maxlen, queue, id, '0', '', 'queued', 'enqueued', '')
    created = created + 1
    reply[#reply + 1] = 'created'
    reply[#reply + 1] = 'queued'
    reply[#reply + 1] = '0'
    reply[#reply + 1] = now
  end
end
if created > 0 then redis.call('SADD', KEYS[5], queue) end
return reply
