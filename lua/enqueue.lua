-- enqueue: create a queued execution, or return the existing one (idempotent on id).
-- KEYS: 1 execution hash, 2 queue pending zset, 3 deadline timer zset, 4 partition events
--       stream, 5 queue settings hash, 6 partition queue-name set
-- ARGV: 1 queue, 2 execution id, 3 payload (JSON text), 4 timer member "<queue>/<id>",
--       5..13 per-execution timings in ms or '' (start_grace, heartbeat_timeout,
--       no_progress_timeout, deadline, stuck_threshold, max_attempts, backoff_base,
--       backoff_max, cancel_grace), 14..22 global defaults in the same order,
--       23 events max length, 24 history cap, 25 delay before available (ms)
-- Reply: {'created'|'exists', state, attempt, created_at_ms}
--        {'bad_arg', name} when an argument is malformed (nothing written)

local FIELDS = { 'sg', 'ht', 'npt', 'dl', 'stt', 'ma', 'bb', 'bm', 'cg' }

local existing = redis.call('HMGET', KEYS[1], 'st', 'att', 'cr')
if existing[1] then
  return { 'exists', existing[1], existing[2], existing[3] }
end

local conf = redis.call('HMGET', KEYS[5], unpack(FIELDS))
local timing = {}
for i, name in ipairs(FIELDS) do
  local v = ARGV[4 + i]
  if v == '' then v = conf[i] end
  if not v or v == '' then v = ARGV[13 + i] end
  local n = uint(v)
  if n == nil then return { 'bad_arg', name } end
  timing[name] = n
end
local maxlen = uint(ARGV[23])
local cap = uint(ARGV[24])
local delay = uint(ARGV[25])
if not maxlen or not cap or not delay then return { 'bad_arg', 'limits' } end
if timing.ma < 1 or timing.ht < 1 or timing.sg < 1 then return { 'bad_arg', 'timing' } end

local now = now_ms()
local dla = 0
if timing.dl > 0 then dla = now + timing.dl end

redis.call('HSET', KEYS[1],
  'q', ARGV[1], 'id', ARGV[2], 'st', 'queued', 'att', 0, 'pl', ARGV[3], 'cr', now,
  'sg', timing.sg, 'ht', timing.ht, 'npt', timing.npt, 'dl', timing.dl, 'dla', dla,
  'stt', timing.stt, 'ma', timing.ma, 'bb', timing.bb, 'bm', timing.bm, 'cg', timing.cg,
  'hist', hist_push(nil, now, 'queued', 'enqueued', 0, cap))
redis.call('ZADD', KEYS[2], now + delay, ARGV[2])
if dla > 0 then redis.call('ZADD', KEYS[3], dla, ARGV[4]) end
redis.call('SADD', KEYS[6], ARGV[1])
emit(KEYS[4], maxlen, ARGV[1], ARGV[2], 0, '', 'queued', 'enqueued', '')
return { 'created', 'queued', 0, now }
