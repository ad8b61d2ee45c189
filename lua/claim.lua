-- claim: move up to N available queued executions to dispatched, one capacity slot each.
-- KEYS: 1 queue pending zset, 2 queue slots hash (id -> "<attempt>:<worker>"), 3 queue settings hash,
--       4 partition events stream, 5 start timer zset
-- ARGV: 1 queue, 2 execution key prefix (prefix .. id is the execution hash),
--       3 worker id, 4 N (max claims), 5 default capacity, 6 events max length,
--       7 history cap, 8 .. 7+N one fresh attempt nonce per claim
-- Reply: {'ok', stop, next_available_ms, count, then per claim:
--         id, attempt, nonce, payload, checkpoint, heartbeat_timeout_ms, deadline_at_ms}
--        stop is 'done' (N claimed), 'empty' (nothing available) or 'full' (no slot);
--        next_available_ms is the earliest pending score when stop is 'empty', else ''
--        {'bad_arg', name} when an argument is malformed (nothing written)

local n = uint(ARGV[4])
local default_cap = uint(ARGV[5])
local maxlen = uint(ARGV[6])
local cap_hist = uint(ARGV[7])
if not n or n < 1 or not default_cap or not maxlen or not cap_hist then
  return { 'bad_arg', 'limits' }
end
for i = 1, n do
  if not ARGV[7 + i] or ARGV[7 + i] == '' then return { 'bad_arg', 'nonce' } end
end
local capacity = uint(redis.call('HGET', KEYS[3], 'cap')) or default_cap

local now = now_ms()
local out = {}
local claimed = 0
local stop = 'done'
local next_at = ''
local queue, prefix, worker = ARGV[1], ARGV[2], ARGV[3]

while claimed < n do
  if redis.call('HLEN', KEYS[2]) >= capacity then stop = 'full'; break end
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #head == 0 then stop = 'empty'; break end
  if tonumber(head[2]) > now then stop = 'empty'; next_at = head[2]; break end
  local id = head[1]
  redis.call('ZREM', KEYS[1], id)
  local key = prefix .. id
  local e = redis.call('HMGET', key, 'st', 'att', 'pl', 'cp', 'ht', 'sg', 'dla', 'hist')
  -- A pending entry whose execution is not queued is a stale hint: drop it, move on.
  if e[1] == 'queued' then
    local att = tonumber(e[2]) + 1
    local nonce = ARGV[7 + claimed + 1]
    redis.call('HSET', key, 'st', 'dispatched', 'att', att, 'tok', nonce, 'wk', worker,
      'dsp', now, 'sta', '', 'hb', '', 'pr', '', 'prc', '', 'ss', '',
      'hist', hist_push(e[8], now, 'dispatched', 'claimed', att, cap_hist))
    redis.call('HSET', KEYS[2], id, att .. ':' .. worker)
    redis.call('ZADD', KEYS[5], now + tonumber(e[6]), queue .. '/' .. id)
    emit(KEYS[4], maxlen, queue, id, att, 'queued', 'dispatched', 'claimed', worker)
    claimed = claimed + 1
    out[#out + 1] = id
    out[#out + 1] = att
    out[#out + 1] = nonce
    out[#out + 1] = e[3] or ''
    out[#out + 1] = e[4] or ''
    out[#out + 1] = e[5]
    out[#out + 1] = e[7]
  end
end

local reply = { 'ok', stop, next_at, claimed }
for _, v in ipairs(out) do reply[#reply + 1] = v end
return reply
