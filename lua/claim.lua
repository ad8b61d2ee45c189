-- claim: move up to N available queued executions to dispatched, one capacity slot each.
-- KEYS: 1 queue pending zset, 2 queue slots hash (id -> "<attempt>:<worker>"), 3 queue settings hash,
--       4 partition events stream, 5 start timer zset
-- ARGV: 1 queue, 2 execution key prefix (prefix .. id is the execution hash),
--       3 worker id, 4 N (max claims), 5 default capacity, 6 events max length,
--       7 history cap, 8 .. 7+N one fresh attempt nonce per claim
-- Reply: {'ok', stop, next_available_ms, count, then per claim:
--         id, attempt, nonce, payload, checkpoint, heartbeat_timeout_ms, deadline_at_ms,
--         resume_input ('' unless the claim continues a resumed wait)}
--        stop is 'done' (N claimed), 'empty' (nothing available), 'full' (no slot)
--        or 'paused' (the queue is paused, lua/_pause.lua: nothing claimed);
--        next_available_ms is the earliest pending score when stop is 'empty', else ''
--        {'bad_arg', name} when an argument is malformed (nothing written)
-- Prelude: _lib.lua, _claim.lua

-- The hot path, above the preludes (src/scripts.rs): one claim of a queue that runs, has
-- a free slot and whose head is a due first attempt. It writes what the path below
-- writes for it, in one call per key, and skips defining the preludes' functions. Any
-- other case (a batch, a retry, a stale hint, a full, paused or empty queue, a malformed
-- argument) reads again and takes the path below; nothing is written before that.
local function digits(v) return v and string.find(v, '^%d+$') end
if ARGV[4] == '1' and ARGV[8] and ARGV[8] ~= '' and digits(ARGV[5]) and digits(ARGV[6])
  and digits(ARGV[7]) and ARGV[7] ~= '0' then
  local s = redis.call('HMGET', KEYS[3], 'cap', 'pat')
  local capacity = tonumber(digits(s[1]) and s[1] or ARGV[5])
  if not s[2] and redis.call('HLEN', KEYS[2]) < capacity then
    local now = now_str()
    local head = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', '0', '1')
    local id = head[1]
    local e = id and redis.call('HMGET', ARGV[2] .. id, 'st', 'att', 'pl', 'cp', 'ht', 'sg',
      'dla', 'hn', 'ri', 'tp')
    if e and e[1] == 'queued' and e[2] == '0' then
      local queue, worker, tok = ARGV[1], ARGV[3], ARGV[8]
      local n = tonumber(e[8]) or 1
      redis.call('HSET', ARGV[2] .. id, 'st', 'dispatched', 'att', '1', 'tok', tok, 'wk', worker,
        'dsp', now, 'h' .. (n % tonumber(ARGV[7])), n .. '|' .. now .. '|dispatched|claimed|1',
        'hn', tostring(n + 1))
      redis.call('ZREM', KEYS[1], id)
      redis.call('HSET', KEYS[2], id, '1:' .. worker)
      redis.call('ZADD', KEYS[5], tostring(tonumber(now) + tonumber(e[6])), queue .. '/' .. id)
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'e', queue .. '|' .. id
        .. '|1|queued|dispatched|claimed|||' .. worker)
      return { 'ok', 'done', '', 1, id, '1', tok, e[3] or '', e[4] or '', e[5], e[7],
        e[9] or '', e[10] or '' }
    end
  end
end
-- (the preludes go here)

local n = uint(ARGV[4])
local default_cap = uint(ARGV[5])
if not n or n < 1 or not default_cap or not uint(ARGV[6]) or not uint(ARGV[7]) then
  return { 'bad_arg', 'limits' }
end
for i = 1, n do
  if not ARGV[7 + i] or ARGV[7 + i] == '' then return { 'bad_arg', 'nonce' } end
end

local q = { pending = KEYS[1], slots = KEYS[2], settings = KEYS[3], events = KEYS[4],
  start = KEYS[5], queue = ARGV[1], prefix = ARGV[2], worker = ARGV[3],
  default_cap = default_cap, maxlen = ARGV[6], cap = tonumber(ARGV[7]), want = n }
local reply = claim_available(q, n, function(i) return ARGV[7 + i] end, now_str())
claim_flush(q)
return reply
